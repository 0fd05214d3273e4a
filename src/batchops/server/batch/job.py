"""Async batches: ``POST /v1/batch`` with ``Prefer: respond-async`` becomes a ``batch`` job
(the batch capability's job kind, registered with the job scheduler at app start).

Submission (after the batch is planned, so a malformed batch is still rejected at once
with 400/413) is ONE transaction: the job, its input (the request body, ``job_results``
seq 0) and, with an ``Idempotency-Key``, the key's stored answer (the 202 with the job: a
retry finds the same job). The runner plans the stored body again and runs it with the
SAME batch service as a synchronous batch (:func:`batchops.server.batch.service.run_whole`),
in ONE transaction that also stores the response (seq 1) and the job's counters, so the
results commit with the writes they describe or not at all: a batch (at most
``max_batch_operations``, 1,000 by default) is one unit, and ``processed`` goes from 0 to
``total`` when it commits. A failed atomic batch (or one whose transaction a timed-out
statement took with it) is rolled back and its response (the failing operation's error,
the others ``424 ROLLED_BACK``; or every operation's 504) stored in a transaction of its
own. ``GET /v1/jobs/{id}/results`` answers the response.

A top-level ``notification_webhook`` (``{url, events?, secret}``) is allowed only on an
async batch (:func:`notification_webhook`): its row is inserted in the submission's
transaction and the job's end queues the delivery like any job's. It is taken out of the
stored input, so its secret is kept in one place only (the ``webhooks`` row).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import orjson
from starlette.responses import Response

from batchops._exceptions import APIError, InvalidBatchRequestError
from batchops.server import _ids
from batchops.server.auth import Caller
from batchops.server.batch import service
from batchops.server.batch.executor import options_deadline
from batchops.server.batch.idempotency import Claim
from batchops.server.batch.model import BatchPlan
from batchops.server.batch.planner import plan_batch
from batchops.server.batch.response import Answer
from batchops.server.jobs.runner import JobContext, JobKind, queued
from batchops.server.jobs.schemas import job_body, job_not_found
from batchops.server.webhooks.schemas import (
    NOTIFICATION_WEBHOOK,
    WebhookSpec,
    check_notification_target,
    job_webhook_row,
    parse_notification_webhook_field,
)
from batchops.store.base import JobRow, Store, Tx

if TYPE_CHECKING:
    from batchops.server.deps import Services

__all__ = [
    "KINDS",
    "batch_results",
    "notification_webhook",
    "prefers_async",
    "refresh_replay",
    "run_batch_job",
    "submit_batch",
]

# Decoding members to Raw keeps every other member's bytes exactly as sent (no float or
# big-integer round trip) when the webhook is taken out of the stored input.
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])


def prefers_async(prefer: str | None) -> bool:
    """True when a ``Prefer`` header asks for ``respond-async`` (RFC 7240)."""
    if not prefer:
        return False
    return any(
        part.split(";", 1)[0].strip().lower() == "respond-async" for part in prefer.split(",")
    )


async def notification_webhook(
    svc: Services, plan: BatchPlan, *, run_async: bool
) -> WebhookSpec | None:
    """The batch's checked ``notification_webhook``, or None when it has none.

    400 ``INVALID_BATCH_REQUEST`` (path ``notification_webhook``) on a batch that is not
    ``run_async``: a synchronous batch makes no job, so nothing would ever call the webhook,
    and a silently ignored webhook is worse than a refusal. Then the rules of every
    ``notification_webhook`` (422 naming ``notification_webhook.<field>``, and the target
    must be public unless ``allow_private_webhooks``)."""
    if plan.notification_webhook is None:
        return None
    if not run_async:
        raise InvalidBatchRequestError(
            "'notification_webhook' needs 'Prefer: respond-async': a synchronous batch "
            "makes no job and its answer is the notification",
            details={"path": NOTIFICATION_WEBHOOK},
        )
    spec = parse_notification_webhook_field(plan.notification_webhook)
    assert spec is not None
    await check_notification_target(spec, allow_private=svc.settings.allow_private_webhooks)
    return spec


def _without_webhook(body: bytes) -> bytes:
    members = _MEMBERS.decode(body)
    members.pop(NOTIFICATION_WEBHOOK, None)
    return msgspec.json.encode(members)


async def submit_batch(
    svc: Services,
    caller: Caller,
    body: bytes,
    plan: BatchPlan,
    batch_id: str,
    claim: Claim | None,
    headers: dict[str, str],
    hook: WebhookSpec | None = None,
) -> Response:
    """Queue the planned batch as a job, with its ``hook`` (see
    :func:`notification_webhook`); the 202 answer."""
    job = JobRow(
        id=_ids.new_record_id(),
        tenant=caller.tenant,
        type="batch",
        state="queued",
        collection=None,
        options={
            "batch_id": batch_id,
            "operations": plan.count,
            "atomic": plan.options.atomic,
        },
        created_at=_ids.now_iso(),
        total=plan.count,
        revision=1,
    )
    answer = orjson.dumps(job_body(job))
    stored = body if hook is None else _without_webhook(body)

    def submit(tx: Tx) -> None:
        if claim is not None:
            claim.hold(tx)
        tx.insert_job(job)
        if hook is not None:
            tx.insert_webhook(job_webhook_row(hook, job))
        tx.insert_job_results(job.id, [(0, stored)])
        if claim is not None:
            claim.finish(tx, 202, answer)

    await svc.store.run(submit, retries=3)
    if claim is not None:
        claim.settled = True
    queued(svc.jobs, job)
    return Response(
        answer,
        status_code=202,
        media_type="application/json",
        headers={**headers, "Location": f"/v1/jobs/{job.id}"},
    )


async def refresh_replay(svc: Services, caller: Caller, replay: Response) -> Response:
    """A replayed answer to an ``Idempotency-Key``: when it is the 202 of an async batch,
    answer the job as it is now (same id) rather than as it was when queued."""
    if replay.status_code != 202:
        return replay
    try:
        stored = orjson.loads(bytes(replay.body))
        job_id = stored["id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return replay
    job = await svc.store.run(lambda tx: tx.get_job(job_id, tenant=caller.tenant))
    if job is None:
        raise job_not_found(job_id)
    return Response(
        orjson.dumps(job_body(job)),
        status_code=202,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true", "Location": f"/v1/jobs/{job_id}"},
    )


class _CancelledBeforeRun(Exception):
    """Raised from the batch's transaction when the job's cancel came before it ran."""


async def run_batch_job(ctx: JobContext) -> None:
    """The ``batch`` job (see the module docstring)."""
    job_id = ctx.id
    job = ctx.job
    if job.checkpoint == 0:  # not run yet (checkpoint 1: its results are committed)
        raw = await ctx.store.run(lambda tx: tx.get_job_result(job_id, 0))
        if raw is None:
            await ctx.fail("INPUT_MISSING", "the batch is gone")
            return
        try:
            plan = plan_batch(raw, max_operations=ctx.settings.max_batch_operations)
        except APIError as exc:
            await ctx.finish("failed", exc.to_envelope()["error"])
            return
        job = await ctx.start()

        owned: list[JobRow] = []  # the job as this transaction's guard locked it

        def guard(tx: Tx) -> None:
            mine = ctx.own(tx)
            if mine.cancel_requested:
                raise _CancelledBeforeRun
            owned[:] = [mine]

        def keep(tx: Tx, answer: Answer) -> None:
            # The synchronous route's own answer, stored as the job's results (seq 1) with
            # its counters in the transaction that commits the batch's writes.
            stored = b'{"status":%d,"response":%b}' % (answer.status, answer.data)
            tx.insert_job_results(job_id, [(1, stored)])
            counts = answer.counts
            # Checkpoint 1: the results are committed (from 0: nothing was).
            ctx.checkpoint(
                tx,
                owned[0],
                1,
                processed=counts["total"],
                succeeded=counts["succeeded"],
                failed=counts["failed"] + counts["skipped"],
            )

        try:
            await service.run_whole(
                ctx.store,
                job.tenant,
                plan,
                batch_id=str(job.options.get("batch_id") or job_id),
                started=time.perf_counter(),
                deadline=options_deadline(plan.options, ctx.settings.batch_timeout_ms),
                guard=guard,
                keep=keep,
                retries=max(3, plan.options.max_retries),
            )
        except _CancelledBeforeRun:
            ctx.notify()
            await ctx.finish("cancelled")
            return
        ctx.notify()
    await ctx.finish("succeeded")


def batch_results(raw: bytes) -> tuple[int, bytes]:
    """(the synchronous answer's status, its JSON) from a stored result row."""
    stored = orjson.loads(raw)
    return int(stored["status"]), orjson.dumps(stored["response"])


async def batch_job_results(store: Store, job: JobRow) -> Response | None:
    """A finished ``batch`` job's results (``GET /v1/jobs/{id}/results``): the answer the
    synchronous ``POST /v1/batch`` would have given, its status in ``Batch-Status``; None
    for a batch cancelled before it ran."""
    stored = await store.run(lambda tx: tx.get_job_result(job.id, 1))
    if stored is None:
        return None
    status, data = batch_results(stored)
    return Response(
        data,
        media_type="application/json",
        headers={"Batch-Status": str(status), "X-Batch-Id": str(job.options.get("batch_id"))},
    )


KINDS = {"batch": JobKind(run=run_batch_job, results=batch_job_results)}
"""The job kind of async batches, registered by the app at start."""
