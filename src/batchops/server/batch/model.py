"""The internal model of a planned batch: what the planner produces and the executor runs.

Both wire dialects (REST: ``method`` + ``path`` + ``body``; typed: ``type`` + ``collection``)
normalise to one :class:`PlannedOp`. Strings anywhere in ``collection``, ``record_id``,
``data``, ``query`` or ``params`` may still hold ``${name.path}`` references; the executor
resolves them (``batchops.server.batch.refs.resolve``) just before the operation runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import orjson

from batchops._exceptions import APIError
from batchops.server.records.service import PreparedCreates

__all__ = ["BatchOptions", "BatchPlan", "OpType", "PlannedOp"]

OpType: TypeAlias = Literal[
    "create", "read", "update", "replace", "delete", "restore", "search", "list"
]


@dataclass(slots=True)
class BatchOptions:
    """``options`` of a batch request (defaults are the wire defaults)."""

    atomic: bool = False
    continue_on_error: bool = True
    parallel: int = 1
    timeout_ms: int | None = None
    suppress_success: bool = False
    validate_only: bool = False
    max_retries: int = 0


@dataclass(slots=True)
class PlannedOp:
    """One operation, normalised from either dialect.

    ``params`` by type:

    - create: ``{}`` (``record_id`` is the optional explicit id, ``data`` the record data)
    - read: ``{"include_deleted": ...}`` (``{}`` when absent, null or false)
    - restore: ``{}``
    - update / replace: ``{}`` (``data`` is the merge patch / the new data)
    - delete: ``{"hard": ...}`` (``{}`` when absent)
    - list: ``{"filters", "limit", "cursor"}``
    - search: ``{"filters", "limit"}`` (``query`` is the text)

    Filters, limits, cursors and flags are as sent (None when absent; a query string's
    ``true``/``false`` read as booleans): the records service judges them and applies the
    defaults, as it does for REST.

    ``if_match`` is the expected version (optimistic concurrency), None if not given.
    """

    index: int
    type: OpType
    collection: str
    name: str | None = None
    record_id: str | None = None
    data: Any = None
    query: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    if_match: int | None = None
    depends_on: tuple[int, ...] = ()
    references: tuple[int, ...] = ()
    atomicity_group: str | None = None
    has_references: bool = False


class BatchPlan:
    """A validated batch. ``ops[i]`` is either a runnable :class:`PlannedOp` or the
    :class:`APIError` that operation ``i`` answers with without running (for example a path
    outside ``/v1/collections/``). Operations that depend on an invalid one get 424.
    ``notification_webhook`` is the request's member as sent (None when absent): only an
    async batch may have one, which the route checks (it knows the ``Prefer`` header).

    ``runs``: for a batch of plain creates (no references, dependencies or atomicity
    groups; names are fine), its creates already checked and encoded, one
    :class:`~batchops.server.records.service.PreparedCreates` per run of consecutive
    creates of one collection. The executor writes each run with one multi-row insert and
    the response is built from the encoded texts, so such a plan holds no per-operation
    objects: ``ops`` is made from the texts only when something reads it (a run that
    could not be written whole, a stream).
    """

    __slots__ = ("_ops", "cost", "names", "notification_webhook", "options", "runs")

    def __init__(
        self,
        ops: list[PlannedOp | APIError] | None,
        options: BatchOptions,
        names: dict[str, int],
        cost: dict[str, int],
        notification_webhook: Any = None,
        *,
        runs: list[PreparedCreates] | None = None,
    ) -> None:
        assert ops is not None or runs is not None, "a plan holds operations or runs"
        self._ops = ops
        self.options = options
        self.names = names
        self.cost = cost
        self.notification_webhook = notification_webhook
        self.runs = runs

    def names_by_index(self) -> dict[int, str]:
        """The operations' names, by operation index (``names`` turned round)."""
        return {index: name for name, index in self.names.items()}

    @property
    def count(self) -> int:
        """How many operations the batch holds."""
        return self.cost["operations"]

    @property
    def ops(self) -> list[PlannedOp | APIError]:
        """One entry per operation (made from ``runs`` at the first read, for a plan of
        runs)."""
        if self._ops is None:
            assert self.runs is not None
            self._ops = list(_ops_of_runs(self.runs, self.names_by_index()))
        return self._ops


def _ops_of_runs(runs: list[PreparedCreates], by_index: dict[int, str]) -> Iterator[PlannedOp]:
    """The creates of ``runs`` as planned operations (named by ``by_index``), their data
    decoded from the texts (what was encoded from it: the same values)."""
    index = 0
    for run in runs:
        given = run.given
        for position, text in enumerate(run.json):
            yield PlannedOp(
                index,
                "create",
                run.collection,
                by_index.get(index),
                given[position] if given is not None else None,
                orjson.loads(text),
            )
            index += 1
