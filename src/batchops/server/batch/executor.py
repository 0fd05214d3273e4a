"""Runs a planned batch: one store transaction, one hop into the database thread.

(One module on purpose, past 500 lines: the run loop, its savepoints, runs and multi-row
groups, atomicity-group replays and the deadline are one state machine over one
transaction.)

How a batch runs (the *why* of each piece):

- The whole batch is ONE ``Store.run(fn)``: ``fn`` is synchronous and walks the operations
  in input order inside one transaction, because an awaited database call costs a thread hop
  (~100-190 µs here) and a commit per operation is ~10x slower than one per batch.
- A plan of runs of plain creates (``BatchPlan.runs``) is written one multi-row insert
  per run inside one savepoint (:func:`write_runs`); anything that stops a run undoes
  them all and the operations run one by one as below, in the same transaction.
- Every operation is checked and run by the records service
  (:mod:`batchops.server.records.service`), the same functions REST calls, so a batch
  answers each operation as REST does. Consecutive creates, reads, updates, replaces or
  (soft) deletes of one collection that do not reference each other run as ONE multi-row
  statement (reads and writes) through its ``*_many`` functions.
- ``continue_on_error`` without ``atomic``: each unit runs in a savepoint, so a failed
  operation undoes only its own writes and the batch goes on.
- ``atomic``: no savepoints; the first failure raises out of ``fn`` and the store rolls the
  transaction back. Every other operation answers 424 ``ROLLED_BACK``.
- ``atomicity_group``: when an operation of group G fails, the run is rolled back to the
  batch's outer savepoint and replayed with G marked failed (its members answer 424
  ``ROLLED_BACK``, the failing one its own error). Replays only happen on failure and at
  most once per group, and keep the whole thing in one transaction.
- References (``${a.body.id}``) are resolved just before the operation runs.
- ``parallel`` > 1: the independent reads (read, list, search with no ``depends_on`` and
  no reference) run first, at most ``parallel`` at once, on other connections and in the
  transaction (``Tx.read_beside``); the walk then takes their outcomes in input order as
  if it had just run them, so failures, stops and rollbacks are settled exactly as in
  order. Run first, they read the data as committed before the batch's writes; a read
  that depends on a write runs in order and sees it.
- ``timeout_ms`` is checked between operations (a single statement is not interrupted);
  operations not started by the deadline answer 504 ``TIMEOUT``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from batchops._exceptions import (
    APIError,
    FailedDependencyError,
    StoreError,
    StoreInputError,
    StoreTimeoutError,
)
from batchops.server import _ids
from batchops.server.batch.model import BatchOptions, BatchPlan, PlannedOp
from batchops.server.batch.refs import resolve
from batchops.server.records import service
from batchops.server.records.schemas import validate_collection, validate_record_id
from batchops.store.base import Tx

__all__ = [
    "AtomicBatchFailed",
    "Created",
    "OpOutcome",
    "Result",
    "RunState",
    "atomic_failure_outcomes",
    "lift_deadline",
    "options_deadline",
    "run_plan",
    "summarize",
    "timed_out_outcomes",
    "validate_plan",
    "write_runs",
]

Counted = Literal["succeeded", "failed", "skipped"]

_OK_STATUS = {"create": 201}
# Consecutive operations of one of these types on one collection (without references,
# dependencies, groups or parameters) run as one multi-row statement of the records
# service's ``*_many`` function.
_GROUPED = frozenset({"create", "read", "update", "replace", "delete"})


@dataclass(slots=True)
class OpOutcome:
    """The result of one operation, before it is rendered for the wire."""

    index: int
    name: str | None
    type: str
    status: int
    body: Any = None
    error: APIError | None = None
    counted: Counted = "succeeded"

    def to_wire(self) -> dict[str, Any]:
        """The ``results[]`` entry of the response."""
        out: dict[str, Any] = {"index": self.index}
        if self.name is not None:
            out["id"] = self.name
        out["type"] = self.type
        out["status"] = self.status
        if self.error is not None:
            out["error"] = self.error.to_envelope()["error"]
        else:
            out["body"] = self.body
        return out


class _StopAt(Exception):
    """Item ``position`` of a multi-row group failed and the batch stops at failures."""

    def __init__(self, position: int) -> None:
        self.position = position


class _GroupFailed(Exception):
    def __init__(self, group: str, index: int, error: APIError) -> None:
        self.group, self.index, self.error = group, index, error


class AtomicBatchFailed(Exception):
    """Raised out of ``fn`` so the store rolls an atomic batch back."""

    def __init__(self, index: int, error: APIError) -> None:
        super().__init__(error.message)
        self.index, self.error = index, error


@dataclass(slots=True)
class RunState:
    """The progress of one run of a plan. ``run_range`` may be called for consecutive
    slices (NDJSON streaming commits slice by slice); :meth:`snapshot` / :meth:`restore`
    let a slice be retried after a transient store error."""

    plan: BatchPlan
    tenant: str
    deadline: float | None
    doomed: dict[str, tuple[int, APIError]] = field(default_factory=dict)
    #: When the plan has atomicity groups: the id each create without one gets, kept
    #: across the replays of :func:`run_plan` so a replay creates the same records (an
    #: error kept from the first attempt may name one). None: ids are generated freely.
    new_ids: dict[int, str] | None = None
    outcomes: list[OpOutcome | None] = field(default_factory=list)
    results_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped: bool = False
    # The transaction of the slice being run (set by run_range).
    tx: Any = None

    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.outcomes:
            self.outcomes = [None] * len(self.plan.ops)
        self.names = self.plan.names_by_index()

    def snapshot(self) -> tuple[list[OpOutcome | None], dict[str, dict[str, Any]], bool]:
        """What :meth:`restore` needs to undo a rolled-back slice."""
        return list(self.outcomes), dict(self.results_by_name), self.stopped

    def restore(
        self, saved: tuple[list[OpOutcome | None], dict[str, dict[str, Any]], bool]
    ) -> None:
        """Forget everything done since :meth:`snapshot`."""
        outcomes, names, stopped = saved
        self.outcomes, self.results_by_name, self.stopped = list(outcomes), dict(names), stopped

    def finished(self) -> list[OpOutcome]:
        """Every outcome, once every operation has one."""
        return [o if o is not None else _never(i) for i, o in enumerate(self.outcomes)]

    def run_range(self, tx: Tx, start: int, stop: int) -> None:
        """Run operations ``start..stop-1`` in input order inside ``tx``."""
        self.tx = tx
        plan, options = self.plan, self.plan.options
        if options.timeout_ms is not None and self.deadline is not None:
            # The batch's own timeout bounds a statement already running, too (the check
            # between operations cannot). The server's default limit needs no statement.
            tx.set_statement_timeout(max(0.001, self.deadline - time.monotonic()))
        outcomes = self.outcomes
        results_by_name = self.results_by_name
        ran = self._read_first(tx, start, stop) if options.parallel > 1 else _NOTHING_RAN
        i = start
        while i < stop:
            op = plan.ops[i]
            if self.stopped:
                if outcomes[i] is None:  # a timeout may have answered it already
                    outcomes[i] = _skipped(
                        op, i, "SKIPPED", "not run: an earlier operation failed", self.names.get(i)
                    )
                i += 1
                continue
            if self.deadline is not None and time.monotonic() > self.deadline:
                timeout = APIError(
                    "not run: the batch reached its timeout_ms", code="TIMEOUT", status=504
                )
                if options.atomic:
                    raise AtomicBatchFailed(i, timeout)
                for j in range(i, len(plan.ops)):
                    # A read that ran first (parallel) answers what it got.
                    outcomes[j] = ran.get(j) or _error(
                        plan.ops[j], j, timeout, counted="skipped", name=self.names.get(j)
                    )
                self.stopped = True
                return
            if isinstance(op, APIError):
                outcome = _error(op, i, op, counted="failed", name=self.names.get(i))
                self._settle(outcome, None)
                outcomes[i] = outcome
                self.stopped = not options.continue_on_error
                i += 1
                continue
            blocked = self._blocked(op, outcomes)
            if blocked is not None:
                outcomes[i] = blocked
                if op.atomicity_group and op.atomicity_group not in self.doomed:
                    assert blocked.error is not None
                    raise _GroupFailed(op.atomicity_group, i, blocked.error)
                self.stopped = not options.continue_on_error
                i += 1
                continue
            done = ran.get(i) if ran else None
            end = i + 1 if done is not None else self._group_end(i, stop)
            if done is not None:
                group_outcomes = [done]
            elif end > i + 1:
                group_outcomes = self._run_many(i, end)
            else:
                group_outcomes = [self._run_one(op, results_by_name)]
            for outcome in group_outcomes:
                outcomes[outcome.index] = outcome
                source = plan.ops[outcome.index]
                assert isinstance(source, PlannedOp)
                self._settle(outcome, source)
                if source.name is not None:
                    results_by_name[source.name] = {"status": outcome.status, "body": outcome.body}
                if outcome.counted != "succeeded" and not options.continue_on_error:
                    self.stopped = True
            # Fewer outcomes than operations: the group stopped at a failure.
            i = group_outcomes[-1].index + 1 if group_outcomes else end

    # -- parallel reads ----------------------------------------------------------------------

    def _read_first(self, tx: Tx, start: int, stop: int) -> Mapping[int, OpOutcome]:
        """``options.parallel`` > 1: run the independent reads of ``start..stop-1`` now,
        before any operation of the range, at most ``parallel`` at once
        (:meth:`~batchops.store.base.TxBase.read_beside`: on other connections, and in
        ``tx``). Their outcomes, by index, for ``run_range`` to take in input order as if
        it had just run them: failures, stops, atomic rollbacks and names are settled
        there, exactly as for an operation run in order.

        Independent: a read, list or search with no ``depends_on`` and no reference (and
        no atomicity group). Run first, each reads the data as committed before the
        range's writes, wherever it runs — the rule docs/batch.md states. Consecutive
        plain reads of one collection stay one multi-row read, as in order."""
        if self.stopped or (self.deadline is not None and time.monotonic() > self.deadline):
            return _NOTHING_RAN
        ops = self.plan.ops
        units: list[list[PlannedOp]] = []
        i = start
        while i < stop:
            op = ops[i]
            if not _independent_read(op):
                i += 1
                continue
            end = self._group_end(i, stop)
            units.append([o for o in ops[i:end] if isinstance(o, PlannedOp)])
            i = end
        if not units:
            return _NOTHING_RAN
        # Statements on other connections are bounded like run_range bounds tx's.
        bound = self.deadline if self.plan.options.timeout_ms is not None else None
        done = tx.read_beside(
            [partial(self._read_unit, unit) for unit in units],
            width=self.plan.options.parallel,
            deadline=bound,
        )
        return {outcome.index: outcome for outcomes in done for outcome in outcomes}

    def _read_unit(self, ops: list[PlannedOp], tx: Tx) -> list[OpOutcome]:
        """One unit of :meth:`_read_first` in ``tx`` (the batch's, or another
        connection's): its outcomes, every failure an outcome as in order. A store error
        that is not the operation's own (a lost connection) is raised: on another
        connection the read then runs again in the batch's transaction."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            timeout = APIError(
                "not run: the batch reached its timeout_ms", code="TIMEOUT", status=504
            )
            return [_error(op, op.index, timeout, counted="skipped") for op in ops]
        if len(ops) == 1:
            return [self._run_one(ops[0], {}, tx)]
        first = ops[0]
        try:
            with self._savepoint() if tx is self.tx else _NO_SAVEPOINT:
                many = service.read_many(
                    tx, self.tenant, first.collection, [op.record_id or "" for op in ops]
                )
        except (APIError, *_OP_STORE_ERRORS) as exc:
            if tx is self.tx and _lost(exc):
                raise
            return [self._run_one(op, {}, tx) for op in ops]  # each its precise answer
        return [
            _error(op, op.index, value, counted="failed")
            if isinstance(value, APIError)
            else OpOutcome(op.index, op.name, op.type, 200, body=value)
            for op, value in zip(ops, many, strict=True)
        ]

    # -- helpers ---------------------------------------------------------------------------

    def _settle(self, outcome: OpOutcome, op: PlannedOp | None) -> None:
        """Turn a failure into a rollback where atomicity asks for one."""
        if outcome.counted == "succeeded" or outcome.error is None:
            return
        if self.plan.options.atomic:
            raise AtomicBatchFailed(outcome.index, outcome.error)
        group = op.atomicity_group if op is not None else None
        if group is not None and group not in self.doomed:
            raise _GroupFailed(group, outcome.index, outcome.error)

    def _blocked(self, op: PlannedOp, outcomes: list[OpOutcome | None]) -> OpOutcome | None:
        group = op.atomicity_group
        if group is not None and group in self.doomed:
            failed_index, error = self.doomed[group]
            if failed_index == op.index:
                return _error(op, op.index, error, counted="failed")
            rolled = APIError(
                f"rolled back: operation {failed_index} of atomicity group {group!r} failed",
                code="ROLLED_BACK",
                status=424,
                details={"failed_index": failed_index, "atomicity_group": group},
            )
            return _error(op, op.index, rolled, counted="failed")
        for dep in op.depends_on:
            previous = outcomes[dep]
            if previous is not None and previous.counted != "succeeded":
                return _error(
                    op,
                    op.index,
                    FailedDependencyError(
                        f"not run: operation {dep} it depends on did not succeed",
                        details={"depends_on": dep},
                    ),
                    counted="skipped",
                )
        return None

    def _groupable(self, op: PlannedOp | APIError, first: PlannedOp) -> bool:
        return (
            isinstance(op, PlannedOp)
            and op.type == first.type
            and op.collection == first.collection
            and not op.has_references
            and not op.depends_on
            and op.atomicity_group is None
            and not op.params  # e.g. a read that includes deleted records: one by one
        )

    def _group_end(self, start: int, stop: int) -> int:
        first = self.plan.ops[start]
        if not isinstance(first, PlannedOp) or first.type not in _GROUPED:
            return start + 1
        if not self._groupable(first, first):
            return start + 1
        end = start + 1
        while end < stop and self._groupable(self.plan.ops[end], first):
            end += 1
        return end

    def _run_many(self, start: int, end: int) -> list[OpOutcome]:
        """Run ``ops[start:end]`` as one multi-row statement. Returns fewer outcomes than
        operations when ``continue_on_error`` is false and one fails: the operations after
        it must not run (``run_range`` marks them skipped)."""
        batch = [op for op in self.plan.ops[start:end] if isinstance(op, PlannedOp)]
        while True:
            try:
                outcomes = self._run_group(batch)
            except _StopAt as stop:
                batch = batch[: stop.position + 1]  # rolled back: run up to the failure only
                continue
            return outcomes

    def _run_group(self, batch: list[PlannedOp]) -> list[OpOutcome]:
        first = batch[0]
        many: list[dict[str, Any] | APIError]
        stop_early = not self.plan.options.continue_on_error and not self.plan.options.atomic
        try:
            with self._savepoint():
                if first.type == "create":
                    many = service.create_many(
                        self.tx,
                        self.tenant,
                        first.collection,
                        [(op.record_id, op.data) for op in batch],
                        new_ids=self._new_ids(batch),
                    )
                elif first.type == "read":
                    many = service.read_many(
                        self.tx, self.tenant, first.collection, [op.record_id or "" for op in batch]
                    )
                elif first.type == "delete":  # soft: a hard delete has params, runs alone
                    many = service.delete_many(
                        self.tx,
                        self.tenant,
                        first.collection,
                        [(op.record_id or "", op.if_match) for op in batch],
                    )
                else:
                    many = service.update_many(
                        self.tx,
                        self.tenant,
                        first.collection,
                        [(op.record_id or "", op.data, op.if_match) for op in batch],
                        whole=first.type == "replace",
                    )
                if stop_early:
                    failed = next(
                        (k for k, value in enumerate(many) if isinstance(value, APIError)), None
                    )
                    if failed is not None and failed < len(many) - 1:
                        raise _StopAt(failed)  # leaving the savepoint rolls the group back
        except (APIError, *_OP_STORE_ERRORS) as exc:
            if _lost(exc):
                raise
            if self.plan.options.atomic:
                raise AtomicBatchFailed(first.index, _as_api_error(exc)) from exc
            # A race or a collection-level fault: fall back to one savepoint per operation
            # so each one gets its own precise answer.
            outcomes: list[OpOutcome] = []
            for op in batch:
                outcomes.append(self._run_one(op, {}))
                if stop_early and outcomes[-1].counted != "succeeded":
                    break
            return outcomes
        status = _OK_STATUS.get(first.type, 200)
        return [
            _error(op, op.index, value, counted="failed")
            if isinstance(value, APIError)
            else OpOutcome(op.index, op.name, op.type, status, body=value)
            for op, value in zip(batch, many, strict=True)
        ]

    def _run_one(
        self, op: PlannedOp, results_by_name: dict[str, dict[str, Any]], tx: Tx | None = None
    ) -> OpOutcome:
        """Run ``op`` in the batch's transaction, or, for a read that runs first, in
        ``tx`` (another connection's read-only transaction: no savepoint needed, and a
        statement that takes that transaction with it is this operation's failure only)."""
        here = tx is None or tx is self.tx
        try:
            target = _resolved(op, results_by_name) if op.has_references else op
            new_ids = self._new_ids([target]) if target.type == "create" else None
            with self._savepoint() if here else _NO_SAVEPOINT:
                body = service.perform(
                    self.tx if tx is None else tx,
                    self.tenant,
                    target.type,
                    target.collection,
                    record_id=target.record_id,
                    data=target.data,
                    query=target.query,
                    params=target.params,
                    if_match=target.if_match,
                    new_id=new_ids[0] if new_ids else None,
                )
        except (APIError, *_OP_STORE_ERRORS) as exc:
            if here and _lost(exc):
                raise
            return _error(op, op.index, _as_api_error(exc), counted="failed")
        return OpOutcome(op.index, op.name, op.type, _OK_STATUS.get(op.type, 200), body=body)

    def _new_ids(self, creates: list[PlannedOp]) -> list[str] | None:
        """The ids of the creates without one (see ``new_ids``), or None: generate."""
        if self.new_ids is None:
            return None
        return [
            self.new_ids.setdefault(op.index, _ids.new_record_id())
            for op in creates
            if op.record_id is None
        ]

    def _savepoint(self) -> Any:
        if self.plan.options.atomic:
            return _NO_SAVEPOINT
        return self.tx.savepoint()


# What an independent read may be (see RunState._read_first): these types only.
_READS = frozenset({"read", "list", "search"})
_NOTHING_RAN: Mapping[int, OpOutcome] = {}


def _independent_read(op: PlannedOp | APIError) -> bool:
    """A read, list or search that waits for no earlier operation (``depends_on`` holds
    every operation it names, references included) and belongs to no atomicity group."""
    return (
        isinstance(op, PlannedOp)
        and op.type in _READS
        and not op.depends_on
        and op.atomicity_group is None
    )


# Store errors that belong to one operation: the database refused a value of it, or one
# of its statements ran past the time bound. Its savepoint (or, atomic, the whole
# transaction) is rolled back and the operation answers the error; anything else from the
# store (busy, broken) fails the whole batch.
_OP_STORE_ERRORS = (StoreInputError, StoreTimeoutError)


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` took the whole transaction with it: then it is the batch's error,
    never one operation's (there is no savepoint left to return to)."""
    return isinstance(exc, StoreTimeoutError) and exc.unit_lost


def _as_api_error(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    assert isinstance(exc, StoreError)
    return exc.to_api_error()


class _NoSavepoint:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SAVEPOINT = _NoSavepoint()


def _never(index: int) -> OpOutcome:
    raise AssertionError(f"operation {index} got no outcome")


def _error(
    op: PlannedOp | APIError,
    index: int,
    error: APIError,
    *,
    counted: Counted,
    name: str | None = None,
) -> OpOutcome:
    if isinstance(op, PlannedOp):
        return OpOutcome(index, op.name, op.type, error.status_code, error=error, counted=counted)
    # An operation the planner could not route has no type; its name comes from the plan.
    return OpOutcome(index, name, "invalid", error.status_code, error=error, counted=counted)


def _skipped(
    op: PlannedOp | APIError, index: int, code: str, message: str, name: str | None
) -> OpOutcome:
    return _error(op, index, APIError(message, code=code, status=424), counted="skipped", name=name)


def _resolved(op: PlannedOp, results_by_name: Mapping[str, Mapping[str, Any]]) -> PlannedOp:
    return PlannedOp(
        index=op.index,
        type=op.type,
        collection=resolve(op.collection, results_by_name),
        name=op.name,
        record_id=resolve(op.record_id, results_by_name),
        data=resolve(op.data, results_by_name),
        query=resolve(op.query, results_by_name),
        params=resolve(op.params, results_by_name),
        if_match=op.if_match,
        depends_on=op.depends_on,
        references=op.references,
        atomicity_group=op.atomicity_group,
        has_references=False,
    )


@dataclass(slots=True)
class Created:
    """The result of a plan of runs (see :class:`~batchops.server.batch.model.BatchPlan`)
    that was written whole: every operation created its record, run ``i`` of the plan's
    runs as ``runs[i]``."""

    runs: list[service.NewRecords]


Result = list[OpOutcome] | Created
"""What :func:`run_plan` answers: an outcome per operation, or, for a plan of runs
written whole, :class:`Created`."""


def run_plan(
    tx: Tx,
    tenant: str,
    plan: BatchPlan,
    *,
    deadline: float | None,
    finish: Callable[[Tx, Result], None] | None = None,
) -> Result:
    """Run the whole ``plan`` in ``tx`` (call inside ``Store.run``). ``finish`` runs last in
    the same transaction (the idempotency record is written there, so it commits with the
    data or not at all).

    A plan of runs is written run by run (:func:`write_runs`); when one cannot be written
    whole, nothing of them stays and the operations run one by one below, each answering
    its own outcome, in the same transaction.

    Raises :class:`AtomicBatchFailed` for a failed atomic batch (the store rolls back).
    """
    result: Result | None = None
    if plan.runs is not None:
        result = write_runs(tx, tenant, plan, deadline=deadline)
    if result is None:
        result = _run_ops(tx, tenant, plan, deadline)
    if finish is not None:
        lift_deadline(tx, plan)
        finish(tx, result)
    return result


def _run_ops(tx: Tx, tenant: str, plan: BatchPlan, deadline: float | None) -> list[OpOutcome]:
    """Every operation of ``plan`` in order, atomicity groups replayed as they fail."""
    doomed: dict[str, tuple[int, APIError]] = {}
    has_groups = not plan.options.atomic and any(
        isinstance(op, PlannedOp) and op.atomicity_group for op in plan.ops
    )
    new_ids: dict[int, str] | None = {} if has_groups else None
    while True:
        state = RunState(plan, tenant, deadline, doomed, new_ids=new_ids)
        try:
            if has_groups:
                with tx.savepoint():
                    state.run_range(tx, 0, len(plan.ops))
            else:
                state.run_range(tx, 0, len(plan.ops))
            return state.finished()
        except _GroupFailed as failed:
            doomed[failed.group] = (failed.index, failed.error)


class _Rewind(Exception):
    """Leaves the runs' savepoint, rolling back what they wrote."""


def write_runs(tx: Tx, tenant: str, plan: BatchPlan, *, deadline: float | None) -> Created | None:
    """Write each of ``plan.runs`` with one multi-row insert
    (:func:`~batchops.server.records.service.create_prepared`), inside one savepoint.

    Succeeds whole or writes nothing: at the first problem (an id that exists, a value
    the database refuses, the deadline passing) the savepoint is rolled back and the
    answer is None, for the operations to be run one by one, which answers each precisely.
    A failing batch of creates pays for two tries; the batch that succeeds, the one bulk
    loads send, pays for one cheap one.
    """
    assert plan.runs is not None
    if deadline is not None:
        if time.monotonic() > deadline:
            return None
        if plan.options.timeout_ms is not None:  # as run_range bounds its statements
            tx.set_statement_timeout(max(0.001, deadline - time.monotonic()))
    try:
        with tx.savepoint():
            created = [service.create_prepared(tx, tenant, run) for run in plan.runs]
            if deadline is not None and time.monotonic() > deadline:
                raise _Rewind
    except (_Rewind, APIError, *_OP_STORE_ERRORS) as exc:
        if _lost(exc):
            raise
        return None
    return Created(created)


def lift_deadline(tx: Tx, plan: BatchPlan) -> None:
    """Call after the operations, before the bookkeeping that commits with them (an
    Idempotency-Key's stored answer, a stream's progress): ``timeout_ms`` bounds the
    operations, and a deadline already past would otherwise cancel that bookkeeping and
    fail the whole batch (a 504 envelope, or a 500 on SQLite) instead of answering the
    operations it timed out."""
    if plan.options.timeout_ms is not None:
        tx.set_statement_timeout(None)


def atomic_failure_outcomes(plan: BatchPlan, failed: AtomicBatchFailed) -> list[OpOutcome]:
    """The answer of a rolled-back atomic batch: the failing operation's own error, every
    other operation 424 ``ROLLED_BACK``."""
    rolled = APIError(
        f"rolled back: operation {failed.index} of this atomic batch failed",
        code="ROLLED_BACK",
        status=424,
        details={"failed_index": failed.index},
    )
    names = plan.names_by_index()
    return [
        _error(
            op,
            i,
            failed.error if i == failed.index else rolled,
            counted="failed",
            name=names.get(i),
        )
        for i, op in enumerate(plan.ops)
    ]


def timed_out_outcomes(plan: BatchPlan, start: int = 0) -> list[OpOutcome]:
    """The answer of operations ``start..`` of a batch whose transaction a cancelled
    statement took with it (SQLite rolls a transaction back when it interrupts a write):
    none of them was committed, each answers 504 ``TIMEOUT``, as an operation the
    deadline left unstarted does."""
    timeout = APIError(
        "not run: the batch ran past its time bound and none of these operations was committed",
        code="TIMEOUT",
        status=504,
    )
    names = plan.names_by_index()
    return [
        _error(op, i, timeout, counted="skipped", name=names.get(i))
        for i, op in enumerate(plan.ops)
        if i >= start
    ]


def validate_plan(plan: BatchPlan) -> list[OpOutcome]:
    """``validate_only``: check every operation without touching the database.

    Runs the records service's checks (collection names, ids, data, filters, page sizes,
    flags, cursors, queries) on every operation that does not wait for a reference.
    """
    outcomes: list[OpOutcome] = []
    failed: set[int] = set()
    names = plan.names_by_index()
    for i, op in enumerate(plan.ops):
        if isinstance(op, APIError):
            outcomes.append(_error(op, i, op, counted="failed", name=names.get(i)))
            failed.add(i)
            continue
        bad_dep = next((d for d in op.depends_on if d in failed), None)
        if bad_dep is not None:
            outcomes.append(
                _error(
                    op,
                    i,
                    FailedDependencyError(
                        f"would not run: operation {bad_dep} it depends on is invalid",
                        details={"depends_on": bad_dep},
                    ),
                    counted="skipped",
                )
            )
            failed.add(i)
            continue
        try:
            _validate_static(op)
        except APIError as exc:
            outcomes.append(_error(op, i, exc, counted="failed"))
            failed.add(i)
            continue
        outcomes.append(
            OpOutcome(i, op.name, op.type, 200, body={"valid": True, "would_run": True})
        )
    return outcomes


def _validate_static(op: PlannedOp) -> None:
    """The records service's own checks (:func:`~batchops.server.records.service.check`);
    an operation that waits for a reference has only its plain names judged now, the rest
    when it runs."""
    if not op.has_references:
        service.check(
            op.type,
            op.collection,
            record_id=op.record_id,
            data=op.data,
            query=op.query,
            params=op.params,
        )
        return
    if "${" not in op.collection:
        validate_collection(op.collection)
    if op.record_id is not None and "${" not in op.record_id:
        validate_record_id(op.record_id)


def summarize(outcomes: list[OpOutcome], plan: BatchPlan, duration_ms: float) -> dict[str, Any]:
    """The ``meta`` object of the response."""
    by_type: dict[str, dict[str, int]] = {}
    for o in outcomes:
        counts = by_type.get(o.type)
        if counts is None:
            counts = by_type[o.type] = {"total": 0, "succeeded": 0, "failed": 0, "skipped": 0}
        counts["total"] += 1
        counts[o.counted] += 1
    succeeded = sum(counts["succeeded"] for counts in by_type.values())
    skipped = sum(counts["skipped"] for counts in by_type.values())
    return {
        "total": len(outcomes),
        "succeeded": succeeded,
        "failed": len(outcomes) - succeeded - skipped,
        "skipped": skipped,
        "duration_ms": round(duration_ms, 3),
        "by_type": by_type,
        "cost": plan.cost,
    }


def options_deadline(options: BatchOptions, default_timeout_ms: int | None) -> float | None:
    """The monotonic deadline for a batch starting now."""
    timeout_ms = options.timeout_ms or default_timeout_ms
    return time.monotonic() + timeout_ms / 1000 if timeout_ms else None
