"""The batch service: a planned batch run once, answered three ways.

``POST /v1/batch`` (:mod:`batchops.server.batch.endpoint`) and the ``batch`` job
(:mod:`batchops.server.batch.job`) both come here, so what a batch means is decided in
one place:

- **Plan once** (:func:`~batchops.server.batch.planner.plan_batch`): a batch of plain
  creates as runs of creates, checked and encoded on the event loop (see
  :class:`~batchops.server.batch.model.BatchPlan`), any other as one planned operation
  each.
- **Run whole** (:func:`run_whole`): one transaction; the synchronous answer and the job.
  Runs are written with one multi-row insert each and answered from the stored JSON
  texts; a run that cannot be written whole is undone and its operations run one by one,
  in the same transaction (:func:`~batchops.server.batch.executor.run_plan`).
  The answer is built here (:mod:`batchops.server.batch.response`), and, when a caller
  must keep it (an Idempotency-Key, a job's results), stored by its ``keep`` in the
  transaction that commits the writes it describes. An atomic batch that fails and a
  transaction a timed-out statement took with it are answered here too (and kept in a
  transaction of their own, since the batch's own rolled back).
- **Run streamed** (:func:`stream`): slice by slice, one line per operation as its slice
  commits, resumable after an interruption (see :mod:`batchops.server.batch.idempotency`).

``guard`` and ``keep`` are how a caller takes part in each transaction: ``guard(tx)`` runs
first (an Idempotency-Key's fencing check, a job's ownership check) and may raise to write
nothing; ``keep(tx, answer)`` stores the answer. The deadline is the batch's
``timeout_ms`` (or the server's default), taken when the batch starts running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from batchops._exceptions import (
    APIError,
    InternalServerError,
    StoreError,
    StoreTimeoutError,
    api_error_from_envelope,
)
from batchops.server.batch.executor import (
    AtomicBatchFailed,
    OpOutcome,
    Result,
    RunState,
    atomic_failure_outcomes,
    lift_deadline,
    options_deadline,
    run_plan,
    timed_out_outcomes,
    validate_plan,
)
from batchops.server.batch.idempotency import Claim, meta_line, ndjson_lines, release_soon
from batchops.server.batch.model import BatchPlan, PlannedOp
from batchops.server.batch.response import Answer, answer, batch_payload
from batchops.server.observability import metrics, tracing
from batchops.store.base import Store, Tx

__all__ = [
    "STREAM_SLICE",
    "Answer",
    "Guard",
    "Keep",
    "keeper",
    "run_whole",
    "stream",
    "validated",
]

logger = logging.getLogger(__name__)

# Non-atomic NDJSON streams commit this many operations per transaction, so each line
# sent is already durable.
STREAM_SLICE = 50

Guard = Callable[[Tx], None]
"""First thing in every transaction run for the batch; raises to write nothing."""

Keep = Callable[[Tx, "Answer"], None]
"""Stores the answer in the transaction that commits what it describes."""


def validated(batch_id: str, plan: BatchPlan, started: float) -> Answer:
    """The answer of a ``validate_only`` batch: every check of every operation, nothing
    written; 200 when none failed, else 207."""
    payload = batch_payload(batch_id, plan, validate_plan(plan), started, committed=False)
    status = 200 if payload["meta"]["failed"] == 0 else 207
    return Answer(status, orjson.dumps(payload), payload)


async def run_whole(
    store: Store,
    tenant: str,
    plan: BatchPlan,
    *,
    batch_id: str,
    started: float,
    deadline: float | None,
    guard: Guard | None = None,
    keep: Keep | None = None,
    retries: int | None = None,
) -> Answer:
    """Run ``plan`` in one transaction and answer it (see the module docstring)."""
    with tracing.span("batch", _span_attributes(batch_id, plan, "whole")):
        done = await _run_whole(
            store,
            tenant,
            plan,
            batch_id=batch_id,
            started=started,
            deadline=deadline,
            guard=guard,
            keep=keep,
            retries=retries,
        )
    _observe("whole", plan, started, done)
    return done


def _span_attributes(batch_id: str, plan: BatchPlan, mode: str) -> dict[str, str | int] | None:
    if not tracing.enabled():
        return None
    return {
        "batchops.batch_id": batch_id,
        "batchops.batch.operations": plan.count,
        "batchops.batch.mode": mode,
    }


def _observe(mode: str, plan: BatchPlan, started: float, done: Answer) -> None:
    """The batch's metrics: its size, its time and how each type's operations ended."""
    metrics.observe_batch(
        mode, plan.count, time.perf_counter() - started, done.payload["meta"]["by_type"]
    )


async def _run_whole(
    store: Store,
    tenant: str,
    plan: BatchPlan,
    *,
    batch_id: str,
    started: float,
    deadline: float | None,
    guard: Guard | None,
    keep: Keep | None,
    retries: int | None,
) -> Answer:
    kept: list[Answer] = []

    def finish(tx: Tx, result: Result) -> None:
        assert keep is not None
        kept[:] = [answer(batch_id, plan, result, started, committed=True)]
        keep(tx, kept[0])

    def run(tx: Tx) -> Result:
        if guard is not None:
            guard(tx)
        return run_plan(
            tx, tenant, plan, deadline=deadline, finish=finish if keep is not None else None
        )

    try:
        # Without a keeper the answer is built after the hop: the database thread is the
        # serial section of a batch, so it does only the database work.
        result = await store.run(
            run, retries=plan.options.max_retries if retries is None else retries
        )
    except (AtomicBatchFailed, StoreTimeoutError) as failed:
        if isinstance(failed, StoreTimeoutError):
            if not failed.unit_lost:
                raise
            # Nothing committed and nothing to blame on one operation: every one of them
            # answers its TIMEOUT, as those the deadline left unstarted do.
            outcomes, status = timed_out_outcomes(plan), None
        else:
            # The failing operation's status is the batch's: nothing of it was applied.
            outcomes, status = atomic_failure_outcomes(plan, failed), failed.error.status_code
        rolled_back = answer(batch_id, plan, outcomes, started, committed=False, status=status)
        if keep is not None:
            await _keep_apart(store, guard, keep, rolled_back)
        return rolled_back
    if kept:
        return kept[0]
    return answer(batch_id, plan, result, started, committed=True)


async def stream(
    store: Store,
    tenant: str,
    plan: BatchPlan,
    *,
    batch_id: str,
    started: float,
    default_timeout_ms: int | None,
    claim: Claim | None,
) -> AsyncIterator[bytes]:
    """One JSON line per operation as its slice commits, then the meta line.

    Atomic batches and batches with atomicity groups need the whole batch in one
    transaction, so their lines come after that one commit. With an Idempotency-Key, each
    slice's transaction also stores the slice's results as the key's progress, so that a
    retry after an interrupted stream resumes after the last committed slice (see
    :mod:`batchops.server.batch.idempotency`); the lines of the slices an earlier run
    committed are sent first, as they were. The claim is settled or released here,
    however the stream ends."""
    try:
        deadline = options_deadline(plan.options, default_timeout_ms)
        needs_one_tx = plan.options.atomic or any(
            isinstance(op, PlannedOp) and op.atomicity_group for op in plan.ops
        )
        if needs_one_tx:
            whole = await run_whole(
                store,
                tenant,
                plan,
                batch_id=batch_id,
                started=started,
                deadline=deadline,
                guard=claim.hold if claim is not None else None,
                keep=keeper(claim),
            )
            if claim is not None:
                claim.settled = True
            yield ndjson_lines(whole.payload, whole.status)
            return
        state = RunState(plan, tenant, deadline)
        n = len(plan.ops)
        resume_at = _resume(state, claim.progress) if claim is not None else 0
        if resume_at:
            yield _lines(plan, state.outcomes[:resume_at])
        for start in range(resume_at, n, STREAM_SLICE):
            stop = min(n, start + STREAM_SLICE)
            saved = state.snapshot()

            def run_slice(
                tx: Tx,
                start: int = start,
                stop: int = stop,
                saved: tuple[Any, Any, bool] = saved,
            ) -> None:
                state.restore(saved)
                if claim is not None:
                    claim.hold(tx)
                state.run_range(tx, start, stop)
                if claim is not None:
                    lift_deadline(tx, plan)
                    claim.save_progress(tx, start, _progress_part(state, start, stop))

            try:
                # One span a slice (a span held across the stream's yields would be the
                # current span of whatever the event loop ran meanwhile).
                with tracing.span("batch slice", _span_attributes(batch_id, plan, "stream")):
                    await store.run(run_slice, retries=plan.options.max_retries)
            except StoreTimeoutError as exc:
                if not exc.unit_lost:
                    raise
                # This slice rolled back whole: it and every later operation answer
                # TIMEOUT (what earlier slices committed stays, and is said so).
                state.restore(saved)
                for outcome in timed_out_outcomes(plan, start):
                    state.outcomes[outcome.index] = outcome
                state.stopped = True
                yield _lines(plan, state.outcomes[start:])
                break
            yield _lines(plan, state.outcomes[start:stop])
        done = answer(batch_id, plan, state.finished(), started, committed=True)
        if claim is not None:
            await _keep_apart(store, claim.hold, keeper(claim), done)
            claim.settled = True
        _observe("stream", plan, started, done)
        yield orjson.dumps(meta_line(done.payload, done.status)) + b"\n"
    except (APIError, StoreError) as exc:
        # The 200 went out before the first transaction ran: a failure can only be said
        # in the stream, as its last line (the client sees no meta line, and the key is
        # given up below). Raised, it would break the chunked response off instead.
        error = exc if isinstance(exc, APIError) else exc.to_api_error()
        yield orjson.dumps(error.to_envelope()) + b"\n"
    except Exception:
        logger.exception("a streamed batch failed")
        yield orjson.dumps(InternalServerError("internal server error").to_envelope()) + b"\n"
    finally:
        # Every other exit (an error above, a client that went away: the response is
        # cancelled, and no await may run here) gives the key up for a retry.
        release_soon(claim, store)


async def _keep_apart(store: Store, guard: Guard | None, keep: Keep | None, answer: Answer) -> None:
    """Keep ``answer`` in a transaction of its own (guarded like the batch's): for answers
    whose writes committed slice by slice, or rolled back."""

    def run(tx: Tx) -> None:
        if guard is not None:
            guard(tx)
        if keep is not None:
            keep(tx, answer)

    await store.run(run, retries=3)


def keeper(claim: Claim | None) -> Keep | None:
    """The ``keep`` of an Idempotency-Key's claim: the answer is the key's stored one."""
    if claim is None:
        return None
    return lambda tx, kept: claim.finish(tx, kept.status, kept.data)


def _lines(plan: BatchPlan, outcomes: list[OpOutcome | None]) -> bytes:
    suppress = plan.options.suppress_success
    return b"".join(
        orjson.dumps(outcome.to_wire()) + b"\n"
        for outcome in outcomes
        if outcome is not None and not (suppress and outcome.counted == "succeeded")
    )


def _progress_part(state: RunState, start: int, stop: int) -> bytes:
    """Operations ``start..stop-1``'s outcomes (and whether the run stopped), as stored
    for a resumed stream."""
    return orjson.dumps(
        {
            "stopped": state.stopped,
            "outcomes": [
                {
                    "index": o.index,
                    "name": o.name,
                    "type": o.type,
                    "status": o.status,
                    "body": o.body,
                    "error": o.error.to_envelope() if o.error is not None else None,
                    "counted": o.counted,
                }
                for o in state.outcomes[start:stop]
                if o is not None
            ],
        }
    )


def _resume(state: RunState, parts: list[bytes]) -> int:
    """Put the outcomes an interrupted run committed back into ``state``; the index of
    the first operation still to run."""
    resume_at = 0
    for raw in parts:
        part = orjson.loads(raw)
        for o in part["outcomes"]:
            error = o["error"]
            outcome = OpOutcome(
                o["index"],
                o["name"],
                o["type"],
                o["status"],
                body=o["body"],
                error=api_error_from_envelope(o["status"], error) if error is not None else None,
                counted=o["counted"],
            )
            state.outcomes[outcome.index] = outcome
            if outcome.name is not None:
                state.results_by_name[outcome.name] = {
                    "status": outcome.status,
                    "body": outcome.body,
                }
            resume_at = max(resume_at, outcome.index + 1)
        state.stopped = part["stopped"]
    return resume_at
