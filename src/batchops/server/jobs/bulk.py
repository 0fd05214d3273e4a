"""Bulk update and delete: ``POST /v1/bulk/update`` and ``POST /v1/bulk/delete``.

A request selects live records of one collection — by ``filter`` (equality on dot paths,
the semantics of list filters) or, for delete, by ``ids`` — and changes them through the
operations layer (:func:`~batchops.server.records.service.update_where`,
``delete_where``, ``delete_ids``). At most ``Settings.bulk_inline_max`` matches are handled
inline, in ONE transaction, and answered at once (200); more become a job (202). A
request with a ``notification_webhook`` always becomes a job, however small: the webhook
reports a job's end, and an inline answer has no job to report on.

A job walks the selection **in id order** in chunks. Each chunk is ONE transaction that
changes its records, stores the chunk's ids as a result row (``job_results`` seq n, with
``after``: the last id it covered) and advances the job's counters and ``checkpoint`` (=
n, the seq of the last committed chunk). A resumed job reads ``after`` from its last
committed chunk and goes on above it, so a committed chunk is never touched again: no
version is bumped twice, whatever the merge patch. Records created while a job runs with
ids above its position may be included when they match (ids are time-ordered).
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from batchops._exceptions import InvalidRequestError, ValidationError
from batchops.server import _ids
from batchops.server.jobs.schemas import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE
from batchops.server.jobs.webhooks import (
    NOTIFICATION_WEBHOOK,
    WebhookSpec,
    job_webhook_row,
    parse_notification_webhook_field,
)
from batchops.server.limits import INT64_MAX, whole_number
from batchops.server.records import service
from batchops.server.records.schemas import (
    encode_data,
    validate_collection,
    validate_data,
    validate_filters,
)
from batchops.store.base import JobFailureRow, JobRow, Tx

if TYPE_CHECKING:
    from batchops.server.jobs.runner import JobRunner

__all__ = [
    "BULK_TYPES",
    "MAX_IDS",
    "BulkOptions",
    "bulk_results",
    "run_bulk_job",
    "submit_bulk",
]

BULK_TYPES = ("bulk_update", "bulk_delete")
MAX_IDS = 10_000
"""Most ``ids`` one bulk delete may name."""

Operation = Literal["update", "delete"]
_COMMON_TAIL = ("dry_run", "limit", "chunk_size", NOTIFICATION_WEBHOOK)
_FIELDS: dict[str, tuple[str, ...]] = {
    "update": ("collection", "filter", "update", *_COMMON_TAIL),
    "delete": ("collection", "filter", "ids", "soft", *_COMMON_TAIL),
}


@dataclass(frozen=True, slots=True)
class BulkOptions:
    """What a bulk request does, as stored in ``jobs.options`` (the ids of a delete by ids
    are stored apart, as the job's input row)."""

    operation: Operation
    filter: dict[str, Any] | None = None
    update: dict[str, Any] | None = None
    by_ids: bool = False
    soft: bool = True
    dry_run: bool = False
    limit: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def to_dict(self) -> dict[str, Any]:
        """The stored (and shown) form."""
        out: dict[str, Any] = {"operation": self.operation}
        if self.by_ids:
            out["by_ids"] = True
        else:
            out["filter"] = self.filter
        if self.operation == "update":
            out["update"] = self.update
        else:
            out["soft"] = self.soft
        out.update(dry_run=self.dry_run, limit=self.limit, chunk_size=self.chunk_size)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BulkOptions:
        """Back from the stored form (trusted: it was checked at submission)."""
        return cls(
            operation=raw["operation"],
            filter=raw.get("filter"),
            update=raw.get("update"),
            by_ids=bool(raw.get("by_ids", False)),
            soft=bool(raw.get("soft", True)),
            dry_run=bool(raw["dry_run"]),
            limit=raw.get("limit"),
            chunk_size=int(raw["chunk_size"]),
        )


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ValidationError(f"{name!r} must be true or false", details={"path": name})
    return value


def _int(body: dict[str, Any], name: str, low: int, high: int | None) -> int | None:
    raw = body.get(name)
    if raw is None:
        return None
    value = whole_number(raw)  # 100.0 is 100 (JSON has one number type)
    if value is None or value < low:
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValidationError(f"{name!r} must be an integer {bound}", details={"path": name})
    if high is not None and value > high:
        raise ValidationError(
            f"{name!r} must be an integer from {low} to {high}", details={"path": name}
        )
    return value


def parse_request(
    operation: Operation, body: Any
) -> tuple[str, BulkOptions, list[str] | None, WebhookSpec | None]:
    """Check a request body: (collection, options, sorted unique ids or None, the
    ``notification_webhook`` or None). Shape faults are 400, bad values 422, each naming
    the field (``details.path``). The webhook's target addresses are not checked here
    (that needs DNS: :func:`~batchops.server.jobs.webhooks.check_notification_target`)."""
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", details={"path": ""})
    allowed = _FIELDS[operation]
    for name in body:
        if name not in allowed:
            raise InvalidRequestError(
                f"unknown field {name!r}; allowed: {', '.join(allowed)}", details={"path": name}
            )
    if "collection" not in body:
        raise InvalidRequestError("missing field 'collection'", details={"path": "collection"})
    collection = body["collection"]
    validate_collection(collection)
    ids: list[str] | None = None
    filters: dict[str, Any] | None = None
    if operation == "delete" and "ids" in body:
        if "filter" in body:
            raise InvalidRequestError(
                "give either 'filter' or 'ids', not both", details={"path": "ids"}
            )
        raw_ids = body["ids"]
        if not isinstance(raw_ids, list) or not raw_ids:
            raise ValidationError(
                "'ids' must be a non-empty array of record ids", details={"path": "ids"}
            )
        if len(raw_ids) > MAX_IDS:
            raise ValidationError(
                f"'ids' may name at most {MAX_IDS} records; use a filter for more",
                details={"path": "ids", "limit": MAX_IDS, "actual": len(raw_ids)},
            )
        for position, record_id in enumerate(raw_ids):
            if not isinstance(record_id, str) or not record_id:
                raise ValidationError(
                    "each id must be a non-empty string", details={"path": f"ids[{position}]"}
                )
        ids = sorted(set(raw_ids))
    else:
        if "filter" not in body:
            need = "'filter' or 'ids'" if operation == "delete" else "'filter'"
            raise InvalidRequestError(
                f"missing field {need} (use {{}} to select every record)",
                details={"path": "filter"},
            )
        if body["filter"] is None:
            raise ValidationError(
                "'filter' must be an object (use {} to select every record)",
                details={"path": "filter"},
            )
        filters = validate_filters(body["filter"], path="filter")
    update: dict[str, Any] | None = None
    if operation == "update":
        if "update" not in body:
            raise InvalidRequestError("missing field 'update'", details={"path": "update"})
        update = body["update"]
        try:
            validate_data(update)
        except ValidationError as exc:
            raise ValidationError(
                "'update' must be a JSON object (an RFC 7386 merge patch)",
                details={"path": "update"},
            ) from exc
        # What the records API refuses (a NUL, an integer past 64 bits, nesting past 128
        # levels) is a 422 now, naming the value: a job would store the patch and crash
        # on it (INTERNAL_ERROR), or fail to store it (a 500 past 64 bits).
        encode_data(update, path="update")
    options = BulkOptions(
        operation=operation,
        filter=filters,
        update=update,
        by_ids=ids is not None,
        soft=_bool(body, "soft", True),
        dry_run=_bool(body, "dry_run", False),
        limit=_int(body, "limit", 1, INT64_MAX),
        chunk_size=_int(body, "chunk_size", 1, MAX_CHUNK_SIZE) or DEFAULT_CHUNK_SIZE,
    )
    # Kept out of BulkOptions: those are stored in jobs.options and shown back, and the
    # webhook's secret must never be.
    hook = parse_notification_webhook_field(body.get(NOTIFICATION_WEBHOOK))
    return collection, options, ids, hook


# -- inline ---------------------------------------------------------------------------------


def _answer(
    collection: str, options: BulkOptions, ids: list[str], not_found: list[str]
) -> dict[str, Any]:
    """The body of an inline answer (and of a finished job's results)."""
    written = 0 if options.dry_run else len(ids)
    out: dict[str, Any] = {
        "operation": options.operation,
        "collection": collection,
        "dry_run": options.dry_run,
        "matched": len(ids),
    }
    if options.operation == "update":
        out["updated"] = written
        out["ids"] = ids
    else:
        out["deleted"] = written
        out["soft"] = options.soft
        out["ids"] = ids
        out["not_found"] = not_found
    return out


def _apply(
    tx: Tx,
    tenant: str,
    collection: str,
    options: BulkOptions,
    *,
    limit: int,
    after: str | None = None,
    ids: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Change up to ``limit`` records (above ``after`` in id order, or among ``ids``):
    (affected ids, ids not found)."""
    if ids is not None:
        return service.delete_ids(
            tx,
            tenant,
            collection,
            ids,
            limit=limit,
            hard=not options.soft,
            dry_run=options.dry_run,
        )
    if options.operation == "update":
        changed = service.update_where(
            tx,
            tenant,
            collection,
            filters=options.filter,
            patch=options.update,
            limit=limit,
            after_id=after,
            dry_run=options.dry_run,
        )
    else:
        changed = service.delete_where(
            tx,
            tenant,
            collection,
            filters=options.filter,
            limit=limit,
            after_id=after,
            hard=not options.soft,
            dry_run=options.dry_run,
        )
    return changed, []


def submit_bulk(
    tx: Tx,
    tenant: str,
    collection: str,
    options: BulkOptions,
    ids: list[str] | None,
    *,
    inline_max: int,
    hook: WebhookSpec | None = None,
) -> tuple[dict[str, Any], JobRow | None]:
    """ONE transaction: count the selection; apply it at once when it is at most
    ``inline_max`` records and there is no ``hook`` (the answer, None), else queue a job
    with its ``hook`` (None, the job)."""
    if ids is not None:
        matched = len(ids) if options.limit is None else min(len(ids), options.limit)
        inline = len(ids) <= inline_max
    else:
        matched = service.count_where(tx, tenant, collection, filters=options.filter)
        if options.limit is not None:
            matched = min(matched, options.limit)
        inline = matched <= inline_max
    if inline and hook is None:
        cap = options.limit if options.limit is not None else max(len(ids or []), inline_max)
        changed, missing = _apply(tx, tenant, collection, options, limit=cap, ids=ids)
        return _answer(collection, options, changed, missing), None
    job = JobRow(
        id=_ids.new_record_id(),
        tenant=tenant,
        type=f"bulk_{options.operation}",
        state="queued",
        collection=collection,
        options=options.to_dict(),
        created_at=_ids.now_iso(),
        total=matched,
        revision=1,
    )
    tx.insert_job(job)
    if hook is not None:  # same transaction: no job without its webhook, nor the reverse
        tx.insert_webhook(job_webhook_row(hook, job))
    if ids is not None:
        tx.insert_job_results(job.id, [(0, orjson.dumps(ids))])
    return {}, job


# -- as a job -------------------------------------------------------------------------------


def _chunk(
    runner: JobRunner, tx: Tx, job_id: str, options: BulkOptions, ids: list[str] | None
) -> tuple[JobRow, bool]:
    """ONE transaction: the next chunk's records, its result row and failures, the job's
    counters and checkpoint. Returns (the job, whether the selection is exhausted); a job
    whose cancel was requested comes back unchanged."""
    job = runner._own(tx, job_id)
    if job.cancel_requested:  # the caller finishes it as cancelled, at this chunk boundary
        return job, True
    assert job.collection is not None
    after: str | None = None
    if job.checkpoint:
        previous = tx.get_job_result(job_id, job.checkpoint)
        assert previous is not None, "a bulk job's checkpoint names its last result row"
        after = orjson.loads(previous)["after"]
    remaining = options.limit - job.succeeded if options.limit is not None else None
    size = options.chunk_size if remaining is None else min(options.chunk_size, remaining)
    rows: dict[str, int] = {}  # id -> its 1-based row among the sorted ids (for failures)
    if ids is not None:
        first = bisect.bisect_right(ids, after) if after is not None else 0
        pending = ids[first : first + options.chunk_size]
        rows = {record_id: first + n + 1 for n, record_id in enumerate(pending)}
        changed, missing = (
            _apply(tx, job.tenant, job.collection, options, limit=size, ids=pending)
            if size > 0
            else ([], [])
        )
        covered = sorted([*changed, *missing])
        done = len(pending) < options.chunk_size or len(covered) < len(pending)
    else:
        changed, missing = _apply(tx, job.tenant, job.collection, options, limit=size, after=after)
        covered = changed
        done = size == 0 or (
            len(changed) < size
            # Rows are locked as they are read, and one changed meanwhile so that it no
            # longer matches is left out: a short chunk ends the job only if nothing
            # matching is left after it.
            and not service.matching_ids(
                tx,
                job.tenant,
                job.collection,
                filters=options.filter,
                after_id=changed[-1] if changed else after,
                limit=1,
            )
        )
    if remaining is not None and len(changed) >= remaining:
        done = True
    seq = job.checkpoint + 1
    body = {"after": covered[-1] if covered else after, "ids": changed, "not_found": missing}
    tx.insert_job_results(job_id, [(seq, orjson.dumps(body))])
    if missing and ids is not None:
        tx.insert_job_failures(
            [
                JobFailureRow(
                    job_id,
                    rows[record_id],
                    record_id,
                    "NOT_FOUND",
                    f"no live record {record_id!r} in collection {job.collection!r}",
                )
                for record_id in missing
            ]
        )
    job.checkpoint = seq
    job.processed += len(changed) + len(missing)
    job.succeeded += len(changed)
    job.failed += len(missing)
    if done:
        job.total = job.processed
    job.revision += 1
    tx.save_job(job)
    return job, done


async def run_bulk_job(runner: JobRunner, job: JobRow) -> None:
    """The ``bulk_update`` / ``bulk_delete`` job (see the module docstring)."""
    options = BulkOptions.from_dict(job.options)
    ids: list[str] | None = None
    job_id = job.id
    if options.by_ids:
        raw = await runner.store.run(lambda tx: tx.get_job_result(job_id, 0))
        ids = orjson.loads(raw) if raw is not None else []
    if job.started_at is None:

        def started(tx: Tx, j: JobRow) -> None:
            j.started_at = _ids.now_iso()

        await runner._update(job_id, started)
    while True:
        job, done = await runner.store.run(
            lambda tx: _chunk(runner, tx, job_id, options, ids), retries=3
        )
        runner.events.notify()
        if job.cancel_requested:
            await runner._finish(job_id, "cancelled")
            return
        if runner.after_chunk is not None:
            await runner.after_chunk(job)
        if done:
            break
    await runner._finish(job_id, "succeeded")


async def bulk_results(store: Any, job: JobRow) -> AsyncIterator[bytes]:
    """A bulk job's results, streamed: the inline answer's shape, ``ids`` in id order."""
    options = BulkOptions.from_dict(job.options)
    assert job.collection is not None
    head = _answer(job.collection, options, [], [])
    head["matched"] = job.succeeded
    head[options.operation + "d"] = 0 if options.dry_run else job.succeeded
    head.pop("ids")
    not_found = head.pop("not_found", None)
    yield orjson.dumps(head)[:-1] + b',"ids":['
    for key in ("ids", "not_found"):
        if key == "not_found":
            if not_found is None:
                break
            yield b'],"not_found":['
        after, first = 0, True
        while True:
            page: list[tuple[int, bytes]] = await store.run(
                lambda tx, a=after: tx.list_job_results(job.id, after_seq=a, limit=100)
            )
            if not page:
                break
            for _, raw in page:
                values = orjson.loads(raw)[key]
                if values:
                    yield (b"" if first else b",") + orjson.dumps(values)[1:-1]
                    first = False
            after = page[-1][0]
    yield b"]}"
