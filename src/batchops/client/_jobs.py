"""Bulk jobs from the client side: imports, bulk updates/deletes, async batches, and
reading jobs and following their events.

Built on the SDK's one HTTP layer (:class:`~batchops.client._transport.Transport`) and its
error mapping: an error answer raises the matching :class:`~batchops.APIError`. ``Jobs``
is the blocking facade (``Client.jobs``): one bridge line per method, no logic.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from batchops._exceptions import ConnectionFailedError
from batchops._results import BatchResult
from batchops.client._batch import BatchRunner, batch_answer_result
from batchops.client._facade import Facade, blocking, handing, iterating
from batchops.client._transport import Reply

__all__ = [
    "CONTENT_TYPES",
    "AsyncBatchJob",
    "AsyncJobs",
    "BatchJob",
    "JobEvent",
    "JobFailure",
    "Jobs",
    "NotificationWebhook",
]

CONTENT_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson", "json": "application/json"}

JobEvent = dict[str, Any]
"""One server-sent event: ``{"id": str, "event": "progress"|"complete"|"error", "data": job}``."""


@dataclass(frozen=True, slots=True)
class NotificationWebhook:
    """A job's own webhook: the server POSTs ``url`` a summary of the job, signed with
    ``secret`` (16–256 characters, yours to choose and keep: the receiver checks the
    ``X-Batchops-Signature`` with it), when the job ends.

    ``events``: some of ``"job.succeeded"``, ``"job.failed"``, ``"job.cancelled"``
    (default: all). The server checks every field (422 naming it) and refuses a target
    that is not public (422 ``WEBHOOK_TARGET_NOT_ALLOWED``). See docs/jobs.md, Webhooks.
    """

    url: str
    secret: str = field(repr=False)
    events: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.events, str):
            raise TypeError(
                f"events must be a sequence of event names, not the str {self.events!r}"
            )
        if self.events is not None:
            object.__setattr__(self, "events", tuple(self.events))  # frozen: no list inside


@dataclass(frozen=True, slots=True)
class JobFailure:
    """One row a job could not apply (``GET /v1/jobs/{id}/failures``): its 1-based
    ``row`` among the input's data rows, why (``code``, ``message``), and ``input``, the
    row as text (a CSV line without the header, or JSON; an id for a bulk delete)."""

    row: int
    code: str
    message: str
    input: str


def _webhook_json(hook: NotificationWebhook) -> dict[str, Any]:
    """The wire form ``{"url", "secret", "events"?}`` (no ``events``: the server's default)."""
    out: dict[str, Any] = {"url": hook.url, "secret": hook.secret}
    if hook.events is not None:
        out["events"] = list(hook.events)
    return out


def _ok(reply: Reply) -> Any:
    if reply.status >= 400:
        raise reply.error()
    return reply.json()


def format_of(path: Path, explicit: str | None) -> str:
    """The import format: ``explicit``, else from the file name (``.csv``, ``.ndjson``/
    ``.jsonl``, ``.json``)."""
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".ndjson", ".jsonl"):
        return "ndjson"
    if suffix == ".json":
        return "json"
    return "csv"


class AsyncJobs:
    """``client.jobs``: imports, bulk jobs, async batches and the job routes of a server."""

    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner
        self._transport = runner.transport

    async def create_import(
        self,
        file: str | Path,
        *,
        collection: str,
        format: str | None = None,
        mapping: Mapping[str, Any] | None = None,
        upsert_key: str | None = None,
        lenient: bool = False,
        dry_run: bool = False,
        chunk_size: int | None = None,
        notification_webhook: NotificationWebhook | None = None,
    ) -> dict[str, Any]:
        """Upload ``file`` (streamed from disk); returns the queued job.

        ``notification_webhook``: be called (signed) when the job ends, instead of polling.
        """
        path = Path(file)
        fmt = format_of(path, format)
        params = {"collection": collection, "format": fmt}
        if mapping is not None:
            params["mapping"] = json.dumps(mapping)
        if upsert_key:
            params["upsert_key"] = upsert_key
        if lenient:
            params["validation"] = "lenient"
        if dry_run:
            params["dry_run"] = "true"
        if chunk_size:
            params["chunk_size"] = str(chunk_size)
        if notification_webhook is not None:
            params["notification_webhook"] = json.dumps(_webhook_json(notification_webhook))
        reply = await self._transport.upload(
            "/v1/imports", path, content_type=CONTENT_TYPES[fmt], params=params
        )
        job: dict[str, Any] = _ok(reply)
        return job

    async def create_batch(
        self,
        operations: Iterable[Mapping[str, Any]],
        *,
        atomic: bool = False,
        continue_on_error: bool = True,
        parallel: int | None = None,
        idempotency_key: str | None = None,
        notification_webhook: NotificationWebhook | None = None,
    ) -> dict[str, Any]:
        """An async batch (``POST /v1/batch`` with ``Prefer: respond-async``): the queued
        ``batch`` job, at once. Its answer, once it has ended: :meth:`results` — the JSON the
        synchronous request would have answered.

        The operations go in ONE request (at most the server's limits; a bigger batch
        raises :class:`~batchops.BatchTooLargeError` before sending). It is retried with
        one ``Idempotency-Key`` (``idempotency_key``, default a random one), so a retry
        answers the same job. ``notification_webhook``: be called when the job ends.
        """
        return await self._runner.submit(
            operations,
            atomic=atomic,
            continue_on_error=continue_on_error,
            parallel=parallel,
            idempotency_key=idempotency_key,
            notification_webhook=(
                None if notification_webhook is None else _webhook_json(notification_webhook)
            ),
        )

    async def submit_batch(
        self,
        operations: Iterable[Mapping[str, Any]],
        *,
        atomic: bool = False,
        continue_on_error: bool = True,
        parallel: int | None = None,
        idempotency_key: str | None = None,
        notification_webhook: NotificationWebhook | None = None,
    ) -> AsyncBatchJob:
        """:meth:`create_batch`, handed back as an :class:`AsyncBatchJob`: ``await
        job.results()`` waits for it and gives its answer as a :class:`~batchops.BatchResult`.
        """
        job = await self.create_batch(
            operations,
            atomic=atomic,
            continue_on_error=continue_on_error,
            parallel=parallel,
            idempotency_key=idempotency_key,
            notification_webhook=notification_webhook,
        )
        return AsyncBatchJob(self, job)

    async def get(self, job_id: str) -> dict[str, Any]:
        """A job's state and progress."""
        job: dict[str, Any] = _ok(await self._transport.request("GET", f"/v1/jobs/{quote(job_id)}"))
        return job

    async def iter(
        self, *, state: str | None = None, type: str | None = None, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        """Every job of the caller, newest first, ``page_size`` (1-1000) fetched at a time:
        the pages of ``GET /v1/jobs`` followed through their ``next_cursor`` (each job
        once, even while new ones are queued). Filter by ``state`` and ``type``."""
        cursor: str | None = None
        while True:
            params = {"state": state, "type": type, "limit": str(page_size), "cursor": cursor}
            query = urlencode({k: v for k, v in params.items() if v})
            page = _ok(await self._transport.request("GET", f"/v1/jobs?{query}"))
            for job in page["jobs"]:
                yield job
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def list(
        self, *, state: str | None = None, type: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The caller's jobs, newest first: all of them (every page, see :meth:`iter`), or
        the first ``limit``."""
        jobs: list[dict[str, Any]] = []
        if limit is not None and limit < 1:
            return jobs
        size = 1000 if limit is None else min(limit, 1000)
        async for job in self.iter(state=state, type=type, page_size=size):
            jobs.append(job)
            if limit is not None and len(jobs) >= limit:
                break
        return jobs

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop at its next chunk boundary."""
        job: dict[str, Any] = _ok(
            await self._transport.request("POST", f"/v1/jobs/{quote(job_id)}/cancel")
        )
        return job

    async def failures(self, job_id: str) -> AsyncIterator[JobFailure]:
        """The rows the job could not apply, in row order, as :class:`JobFailure` values,
        read as the server streams them (a job's failures are never held whole)."""
        async for line in self._transport.lines(
            f"/v1/jobs/{quote(job_id)}/failures?format=ndjson",
            headers={"Accept": "application/x-ndjson"},
        ):
            if line.strip():
                raw = orjson.loads(line)
                yield JobFailure(
                    int(raw["row"]), str(raw["code"]), str(raw["message"]), str(raw["input"])
                )

    async def failures_file(self, job_id: str, *, format: str = "ndjson") -> bytes:
        """The failed rows as the server's download: NDJSON (one JobFailure object a line)
        or CSV (``row,code,message,input``) bytes, to save or hand on as they are."""
        reply = await self._transport.request(
            "GET", f"/v1/jobs/{quote(job_id)}/failures?format={quote(format)}"
        )
        _ok(reply)
        return reply.data

    async def retry_failures(self, job_id: str) -> dict[str, Any]:
        """Import a finished import's failed rows again: the new, queued import job (same
        collection and options; ``options.retry_of`` names ``job_id``). ConflictError
        ``NO_FAILURES``, ``JOB_NOT_FINISHED``, ``NOT_AN_IMPORT`` when there is nothing to
        retry (docs/jobs.md, "Retrying failed rows")."""
        job: dict[str, Any] = _ok(
            await self._transport.request("POST", f"/v1/jobs/{quote(job_id)}/retry-failures")
        )
        return job

    async def wait(self, job_id: str) -> dict[str, Any]:
        """The job once it has ended (succeeded, failed or cancelled), followed through
        its events (:meth:`events`), not by polling."""
        job: dict[str, Any] | None = None
        async for event in self.events(job_id):
            job = event["data"]
        if job is None or job.get("state") in ("queued", "running"):
            job = await self.get(job_id)  # (the stream ended early: ask)
        return job

    async def batch_results(self, job_id: str) -> BatchResult[Any]:
        """An async batch's answer, once its job has ended (waited for, see :meth:`wait`),
        as a :class:`~batchops.BatchResult` in input order: the Success (the operation's
        body) or Failure (its APIError) of each operation, as a synchronous ``batch``
        gives them. :meth:`results` has the raw JSON."""
        await self.wait(job_id)
        return batch_answer_result(await self.results(job_id))

    async def results(self, job_id: str) -> dict[str, Any]:
        """What a finished ``batch`` job (the synchronous batch answer) or bulk job (counts
        and ids) did. A job still running raises ConflictError ``JOB_NOT_FINISHED``."""
        out: dict[str, Any] = _ok(
            await self._transport.request("GET", f"/v1/jobs/{quote(job_id)}/results")
        )
        return out

    async def bulk_update(
        self,
        collection: str,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        *,
        dry_run: bool = False,
        limit: int | None = None,
        chunk_size: int | None = None,
        notification_webhook: NotificationWebhook | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/bulk/update``: the answer (``matched``, ``updated``, ``ids``) when the
        server ran it inline, else the queued ``bulk_update`` job (it has ``"state"``).

        With a ``notification_webhook`` it is always the job, however few records match:
        the server calls the webhook when the job ends."""
        body = {"collection": collection, "filter": filter, "update": update, "dry_run": dry_run}
        return await self._bulk("update", body, limit, chunk_size, notification_webhook)

    async def bulk_delete(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        soft: bool = True,
        dry_run: bool = False,
        limit: int | None = None,
        chunk_size: int | None = None,
        notification_webhook: NotificationWebhook | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/bulk/delete`` by ``filter`` or ``ids``: the answer (``matched``,
        ``deleted``, ``ids``, ``not_found``) when inline, else the queued job (always the
        job with a ``notification_webhook``, as for :meth:`bulk_update`)."""
        body: dict[str, Any] = {"collection": collection, "soft": soft, "dry_run": dry_run}
        if filter is not None:
            body["filter"] = filter
        if ids is not None:
            body["ids"] = list(ids)
        return await self._bulk("delete", body, limit, chunk_size, notification_webhook)

    async def _bulk(
        self,
        kind: str,
        body: dict[str, Any],
        limit: int | None,
        chunk_size: int | None,
        hook: NotificationWebhook | None,
    ) -> dict[str, Any]:
        if limit is not None:
            body["limit"] = limit
        if chunk_size is not None:
            body["chunk_size"] = chunk_size
        if hook is not None:
            body["notification_webhook"] = _webhook_json(hook)
        out: dict[str, Any] = _ok(
            await self._transport.request("POST", f"/v1/bulk/{kind}", body=orjson.dumps(body))
        )
        return out

    async def events(self, job_id: str, *, reconnects: int = 5) -> AsyncIterator[JobEvent]:
        """The job's events until its final one; a dropped stream is reopened with
        ``Last-Event-ID`` (up to ``reconnects`` times), so no event is seen twice."""
        last: str | None = None
        attempts = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = last
            current: dict[str, Any] = {}
            try:
                async for raw in self._transport.lines(
                    f"/v1/jobs/{quote(job_id)}/events", headers=headers
                ):
                    line = raw.decode().rstrip("\r\n")
                    if line:
                        name, _, value = line.partition(":")
                        current[name] = value.strip()
                        continue
                    if "event" in current:
                        last = current.get("id", last)
                        event = {
                            "id": current.get("id"),
                            "event": current["event"],
                            "data": orjson.loads(current.get("data", "null")),
                        }
                        yield event
                        if event["event"] in ("complete", "error"):
                            return
                    current = {}
                return  # the server ended the stream: the job is over
            except ConnectionFailedError:
                attempts += 1
                if attempts > reconnects:
                    raise


class AsyncBatchJob:
    """An async batch's job (:meth:`AsyncJobs.submit_batch`): ``id``, ``job`` (the job as
    queued), :meth:`wait` and :meth:`results`."""

    __slots__ = ("_jobs", "id", "job")

    def __init__(self, jobs: AsyncJobs, job: dict[str, Any]) -> None:
        self._jobs = jobs
        self.job = job
        self.id: str = job["id"]

    def __repr__(self) -> str:
        return f"<AsyncBatchJob {self.id}>"

    async def wait(self) -> dict[str, Any]:
        """The job once it has ended (:meth:`AsyncJobs.wait`)."""
        return await self._jobs.wait(self.id)

    async def results(self) -> BatchResult[Any]:
        """The batch's answer once the job has ended (:meth:`AsyncJobs.batch_results`)."""
        return await self._jobs.batch_results(self.id)


class BatchJob(Facade[AsyncBatchJob]):
    """The blocking :class:`AsyncBatchJob` (``Client.jobs.submit_batch``)."""

    __slots__ = ()

    @property
    def id(self) -> str:
        """The job's id."""
        return self._async.id

    @property
    def job(self) -> dict[str, Any]:
        """The job as queued."""
        return self._async.job

    def __repr__(self) -> str:
        return f"<BatchJob {self.id}>"

    wait = blocking(AsyncBatchJob.wait)
    results = blocking(AsyncBatchJob.results)


class Jobs(Facade[AsyncJobs]):
    """``Client.jobs``: the blocking :class:`AsyncJobs` (same methods; ``iter``,
    ``failures`` and ``events`` are plain iterators, ``submit_batch`` hands back a
    :class:`BatchJob`)."""

    __slots__ = ()

    create_import = blocking(AsyncJobs.create_import)
    create_batch = blocking(AsyncJobs.create_batch)
    submit_batch = handing(AsyncJobs.submit_batch, BatchJob)
    bulk_update = blocking(AsyncJobs.bulk_update)
    bulk_delete = blocking(AsyncJobs.bulk_delete)
    get = blocking(AsyncJobs.get)
    iter = iterating(AsyncJobs.iter)
    list = blocking(AsyncJobs.list)
    cancel = blocking(AsyncJobs.cancel)
    failures = iterating(AsyncJobs.failures)
    failures_file = blocking(AsyncJobs.failures_file)
    retry_failures = blocking(AsyncJobs.retry_failures)
    wait = blocking(AsyncJobs.wait)
    results = blocking(AsyncJobs.results)
    batch_results = blocking(AsyncJobs.batch_results)
    events = iterating(AsyncJobs.events)
