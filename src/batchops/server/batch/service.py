"""The batch service: a planned batch run once, answered three ways.

``POST /v1/batch`` (:mod:`batchops.server.batch.endpoint`) and the ``batch`` job
(:mod:`batchops.server.batch.job`) both come here, so what a batch means is decided in
one place:

- **Plan once** (:func:`plan`): the all-creates lane's plan when the body is plain creates
  (see :mod:`batchops.server.batch.creates`), else the general plan.
- **Run whole** (:func:`run_whole`): one transaction; the synchronous answer and the job.
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
from dataclasses import dataclass
from typing import Any

import orjson

from batchops._exceptions import (
    APIError,
    InternalServerError,
    StoreError,
    StoreTimeoutError,
    api_error_from_envelope,
)
from batchops.server.batch.creates import (
    CreatePlan,
    LaneBail,
    plan_creates,
    render_creates,
    run_creates,
)
from batchops.server.batch.executor import (
    AtomicBatchFailed,
    OpOutcome,
    RunState,
    atomic_failure_outcomes,
    lift_deadline,
    options_deadline,
    run_plan,
    timed_out_outcomes,
)
from batchops.server.batch.idempotency import Claim, meta_line, ndjson_lines, release_soon
from batchops.server.batch.model import BatchPlan, PlannedOp
from batchops.server.batch.planner import plan_batch
from batchops.server.batch.response import batch_payload, batch_status
from batchops.store.base import Store, Tx

__all__ = [
    "STREAM_SLICE",
    "Answer",
    "Guard",
    "Keep",
    "Planned",
    "keeper",
    "plan",
    "run_lane",
    "run_whole",
    "stream",
]

logger = logging.getLogger(__name__)

# Non-atomic NDJSON streams commit this many operations per transaction, so each line
# sent is already durable.
STREAM_SLICE = 50

Guard = Callable[[Tx], None]
"""First thing in every transaction run for the batch; raises to write nothing."""

Keep = Callable[[Tx, "Answer"], None]
"""Stores the answer in the transaction that commits what it describes."""


@dataclass(slots=True)
class Planned:
    """A batch planned once: ``lane`` for plain creates, else ``plan``."""

    body: bytes
    lane: CreatePlan | None
    plan: BatchPlan | None

    @property
    def count(self) -> int:
        """How many operations the batch holds."""
        if self.plan is not None:
            return len(self.plan.ops)
        return self.lane.count if self.lane is not None else 0

    def general(self, max_operations: int) -> BatchPlan:
        """The general plan (planned now if the batch was planned for the lane)."""
        if self.plan is None:
            self.plan = plan_batch(self.body, max_operations=max_operations)
        return self.plan


@dataclass(slots=True)
class Answer:
    """A batch's answer: its status and JSON, its counts (``meta``'s ``total``,
    ``succeeded``, ``failed``, ``skipped``), and whether its writes committed."""

    status: int
    data: bytes
    counts: dict[str, int]
    committed: bool = True
    #: The answer before it was encoded (the general path's; the lane splices ``data``
    #: straight from the stored texts and has none).
    payload: dict[str, Any] | None = None


def _counts(meta: dict[str, Any]) -> dict[str, int]:
    return {name: meta[name] for name in ("total", "succeeded", "failed", "skipped")}


def _all_created(n: int) -> dict[str, int]:
    return {"total": n, "succeeded": n, "failed": 0, "skipped": 0}


def plan(body: bytes, *, max_operations: int, lane: bool = True) -> Planned:
    """Plan ``body`` (400/413 for what is not a batch): for the all-creates lane when
    ``lane`` and the body is plain creates, else for the general path."""
    creates = plan_creates(body, max_operations=max_operations) if lane else None
    if creates is not None:
        return Planned(body, creates, None)
    return Planned(body, None, plan_batch(body, max_operations=max_operations))


async def run_lane(
    store: Store,
    tenant: str,
    planned: Planned,
    *,
    batch_id: str,
    started: float,
    default_timeout_ms: int | None,
    max_operations: int,
    guard: Guard | None = None,
    keep: Keep | None = None,
) -> Answer:
    """Run an all-creates batch; if the lane bails (its transaction rolled back), run the
    same batch on the general path with the same deadline."""
    lane = planned.lane
    assert lane is not None
    deadline = options_deadline(lane.options, default_timeout_ms)

    def run(tx: Tx) -> tuple[list[Any], bytes | None]:
        if guard is not None:
            guard(tx)
        groups = run_creates(tx, tenant, lane, deadline=deadline)
        if keep is None:
            return groups, None
        # The kept answer commits with the records it describes.
        data = render_creates(batch_id, lane, groups, (time.perf_counter() - started) * 1000)
        keep(tx, Answer(200, data, _all_created(lane.count)))
        return groups, data

    try:
        groups, data = await store.run(run, retries=lane.options.max_retries)
    except LaneBail:
        return await run_whole(
            store,
            tenant,
            planned.general(max_operations),
            batch_id=batch_id,
            started=started,
            deadline=deadline,
            guard=guard,
            keep=keep,
        )
    if data is None:
        # Rendered after the hop: the database thread is the serial section.
        data = render_creates(batch_id, lane, groups, (time.perf_counter() - started) * 1000)
    return Answer(200, data, _all_created(lane.count))


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
    kept: list[Answer] = []

    def finish(tx: Tx, outcomes: list[OpOutcome]) -> None:
        assert keep is not None
        payload = batch_payload(batch_id, plan, outcomes, started, committed=True)
        answer = Answer(
            batch_status(outcomes), orjson.dumps(payload), _counts(payload["meta"]), True, payload
        )
        keep(tx, answer)
        kept[:] = [answer]

    def run(tx: Tx) -> list[OpOutcome]:
        if guard is not None:
            guard(tx)
        return run_plan(
            tx, tenant, plan, deadline=deadline, finish=finish if keep is not None else None
        )

    try:
        # Without a keeper the answer is built after the hop: the database thread is the
        # serial section of a batch, so it does only the database work.
        outcomes = await store.run(
            run, retries=plan.options.max_retries if retries is None else retries
        )
    except (AtomicBatchFailed, StoreTimeoutError) as failed:
        if isinstance(failed, StoreTimeoutError):
            if not failed.unit_lost:
                raise
            # Nothing committed and nothing to blame on one operation: every one of them
            # answers its TIMEOUT, as those the deadline left unstarted do.
            outcomes = timed_out_outcomes(plan)
            status = batch_status(outcomes)
        else:
            outcomes = atomic_failure_outcomes(plan, failed)
            status = failed.error.status_code
        payload = batch_payload(batch_id, plan, outcomes, started, committed=False)
        answer = Answer(status, orjson.dumps(payload), _counts(payload["meta"]), False, payload)
        if keep is not None:
            await _keep_apart(store, guard, keep, answer)
        return answer
    if kept:
        return kept[0]
    payload = batch_payload(batch_id, plan, outcomes, started, committed=True)
    return Answer(
        batch_status(outcomes), orjson.dumps(payload), _counts(payload["meta"]), True, payload
    )


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
            answer = await run_whole(
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
            assert answer.payload is not None  # run_whole's answers carry theirs
            yield ndjson_lines(answer.payload, answer.status)
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
        outcomes = state.finished()
        status = batch_status(outcomes)
        payload = batch_payload(batch_id, plan, outcomes, started, committed=True)
        if claim is not None:
            answer = Answer(status, orjson.dumps(payload), _counts(payload["meta"]), True, payload)
            await _keep_apart(store, claim.hold, keeper(claim), answer)
            claim.settled = True
        yield orjson.dumps(meta_line(payload, status)) + b"\n"
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
    return lambda tx, answer: claim.finish(tx, answer.status, answer.data)


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
