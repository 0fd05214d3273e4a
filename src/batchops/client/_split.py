"""Split a stream of operations into requests within the server's limits.

Why not the engine's :func:`~batchops.engine.chunked`: its rule (close a chunk when the
next item does not fit) may cut between an operation and a later one that refers to it
(``${name…}``, ``depends_on``) or shares its ``atomicity_group``, and the server resolves
those only within one request. This splitter applies the same count + bytes rule, but
when a cut is due it cuts at the *latest point no later operation is tied back across*,
carrying the tied tail into the next request. Only when a tied group cannot fit one
request at all (or an operation names one that is not earlier in its request) is the
operation refused, with a 400 result naming it; it is never sent.

How many operations a request may hold is read from a :class:`ChunkLimit` each time an
operation is added, so a limit that moves while the stream is being split (an adaptive
size, a rate limit learned from a 429) applies to the next request cut.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchops.client._ops import op_links, op_name
from batchops.engine import AdaptiveChunkSize, Clock

__all__ = [
    "ENVELOPE_BYTES",
    "Chunk",
    "ChunkLimit",
    "PendingOp",
    "Splitter",
    "asplit_ops",
    "pending_op",
    "refusal",
    "split_ops",
]

#: Bytes kept free in every request for ``{"operations":[…],"options":{…}}``.
ENVELOPE_BYTES = 512


@dataclass(slots=True)
class PendingOp:
    """One input operation, encoded once, with what ties it to other operations."""

    index: int
    name: str | None
    links: frozenset[str]
    group: str | None
    data: bytes


@dataclass(slots=True)
class Chunk:
    """The operations of one request (in input order), and ops refused client-side."""

    number: int
    ops: list[PendingOp]
    refused: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: The chunk-size policy's generation when this chunk was cut (see ChunkLimit).
    generation: int = 0


class ChunkLimit:
    """Operations per request for one batch call: hard caps, and an optional policy.

    ``cap`` is the hard bound (the server's operations per request, a fixed
    ``chunk_size``, and lowered for good by :meth:`lower_cap`, e.g. to a per-minute
    operation budget a 429 revealed). ``sizing``, when given, steers the size under the
    cap (AIMD on request duration); the cap always wins. ``fixed``: the cuts must not
    depend on what answers said (a resumable run names request n by its number), so
    :meth:`lower_cap` does nothing.
    """

    __slots__ = ("cap", "fixed", "sizing")

    def __init__(
        self, cap: int, sizing: AdaptiveChunkSize | None = None, *, fixed: bool = False
    ) -> None:
        self.cap = cap
        self.sizing = sizing
        self.fixed = fixed

    def __call__(self) -> int:
        """The operations the next request may hold, now."""
        if self.sizing is None:
            return self.cap
        return min(self.cap, self.sizing.size)

    @property
    def generation(self) -> int:
        """The sizing policy's generation (0 without one): stamped on each chunk cut."""
        return 0 if self.sizing is None else self.sizing.generation

    @property
    def clock(self) -> Clock | None:
        """Where request durations are read: the policy's clock, ``None`` without one."""
        return None if self.sizing is None else self.sizing.clock

    def lower_cap(self, cap: int) -> None:
        """Never cut a request of more than ``cap`` operations from now on (unless
        ``fixed``)."""
        if not self.fixed:
            self.cap = max(1, min(self.cap, cap))

    def answered(self, status: int, duration_s: float, generation: int) -> None:
        """A request of a chunk cut in ``generation`` got ``status`` after ``duration_s``."""
        if self.sizing is None:
            return
        if status in (429, 503):
            self.sizing.overloaded(generation)
        elif status < 400:
            self.sizing.observe(duration_s, generation)

    def timed_out(self, generation: int) -> None:
        """A request of a chunk cut in ``generation`` got no answer in time."""
        if self.sizing is not None:
            self.sizing.overloaded(generation)


def refusal(status: int, code: str, message: str, **details: Any) -> dict[str, Any]:
    """A wire result for an operation the client refused to send."""
    return {"status": status, "error": {"code": code, "message": message, "details": details}}


class Splitter:
    """Feed operations with :meth:`add`; it yields full chunks, :meth:`rest` the last."""

    __slots__ = (
        "_bytes",
        "_closed_groups",
        "_groups",
        "_limit",
        "_max_bytes",
        "_minref",
        "_names",
        "_number",
        "_ops",
        "_refused",
    )

    def __init__(self, max_ops: int | ChunkLimit, max_bytes: int) -> None:
        self._limit = max_ops if isinstance(max_ops, ChunkLimit) else ChunkLimit(max_ops)
        self._max_bytes = max_bytes - ENVELOPE_BYTES
        self._ops: list[PendingOp] = []
        self._bytes = 0
        # For each op in the open chunk: the earliest position it is tied to (itself if
        # none). A cut at c is safe iff every op at or after c has minref >= c.
        self._minref: list[int] = []
        self._names: dict[str, int] = {}
        self._groups: dict[str, int] = {}
        # Groups already sent: a later member would split the group's all-or-nothing.
        self._closed_groups: set[str] = set()
        self._refused: list[tuple[int, dict[str, Any]]] = []
        self._number = 0

    def add(self, op: PendingOp) -> Iterator[Chunk]:
        """Add one operation; yield the chunk(s) it closes."""
        size = len(op.data) + 1  # +1: the comma between operations
        if size > self._max_bytes:
            limit = self._max_bytes + ENVELOPE_BYTES
            self._refused.append(
                (
                    op.index,
                    refusal(
                        413,
                        "BATCH_TOO_LARGE",
                        f"operation {op.index} alone is {len(op.data)} bytes, over the "
                        f"{limit}-byte request limit; it was not sent",
                        limit=limit,
                        actual=len(op.data),
                        unit="bytes",
                    ),
                )
            )
            return
        while self._ops and (
            len(self._ops) + 1 > self._limit() or self._bytes + size > self._max_bytes
        ):
            ties = self._ties(op)
            cut = self._safe_cut(min(ties, default=len(self._ops)))
            if cut == 0:
                # The open chunk and this op are one tied group bigger than a request.
                yield self._flush(len(self._ops))
                self._refuse_tied(op)
                return
            yield self._flush(cut)
        missing = [n for n in op.links if n not in self._names]
        if missing:
            self._refuse_unresolved(op, sorted(missing)[0])
            return
        if op.group is not None and op.group in self._closed_groups:
            self._refuse_tied(op)
            return
        position = len(self._ops)
        ties = self._ties(op)
        self._ops.append(op)
        self._minref.append(min(ties, default=position))
        self._bytes += size
        if op.name is not None:
            self._names[op.name] = position
        if op.group is not None and op.group not in self._groups:
            self._groups[op.group] = position

    def rest(self) -> Chunk | None:
        """The last chunk (also carries refusals that came after the last full chunk)."""
        if self._ops or self._refused:
            return self._flush(len(self._ops))
        return None

    def _ties(self, op: PendingOp) -> list[int]:
        ties = [self._names[n] for n in op.links if n in self._names]
        if op.group is not None and op.group in self._groups:
            ties.append(self._groups[op.group])
        return ties

    def _safe_cut(self, new_minref: int) -> int:
        n = len(self._ops)
        low = new_minref
        cut = n
        while cut > 0 and low < cut:
            cut -= 1
            low = min(low, self._minref[cut])
        return cut

    def _flush(self, cut: int) -> Chunk:
        chunk = Chunk(self._number, self._ops[:cut], self._refused, self._limit.generation)
        self._number += 1
        self._refused = []
        self._closed_groups.update(g for g, pos in self._groups.items() if pos < cut)
        tail = self._ops[cut:]
        tail_minref = [m - cut for m in self._minref[cut:]]
        self._ops, self._minref, self._bytes = [], [], 0
        self._names, self._groups = {}, {}
        for position, (op, minref) in enumerate(zip(tail, tail_minref, strict=True)):
            self._ops.append(op)
            self._minref.append(minref)
            self._bytes += len(op.data) + 1
            if op.name is not None:
                self._names[op.name] = position
            if op.group is not None and op.group not in self._groups:
                self._groups[op.group] = position
        return chunk

    def _refuse_tied(self, op: PendingOp) -> None:
        what = f"operation {op.index}" + (f" ({op.name!r})" if op.name else "")
        self._refused.append(
            (
                op.index,
                refusal(
                    400,
                    "REFERENCE_ACROSS_REQUESTS",
                    f"{what} is tied (references, depends_on or atomicity_group) to a group "
                    f"of operations larger than one request ({self._limit()} operations / "
                    "the byte limit); it was not sent. Split the group, or send it as its "
                    "own smaller batch",
                    index=op.index,
                ),
            )
        )

    def _refuse_unresolved(self, op: PendingOp, name: str) -> None:
        what = f"operation {op.index}" + (f" ({op.name!r})" if op.name else "")
        self._refused.append(
            (
                op.index,
                refusal(
                    400,
                    "REFERENCE_ACROSS_REQUESTS",
                    f"{what} refers to {name!r}, which is not an earlier operation of its "
                    "request: the name is unknown, comes later, was refused, or went in an "
                    "earlier request because the batch was split at the size limit; it was "
                    "not sent",
                    index=op.index,
                    reference=name,
                ),
            )
        )


def pending_op(index: int, op: Mapping[str, Any]) -> PendingOp:
    """Input operation ``index``, checked to be a dict and encoded once."""
    if not isinstance(op, Mapping):
        raise TypeError(
            f"operation {index} is a {type(op).__name__}; an operation is a dict in either "
            "dialect of POST /v1/batch, e.g. {'type': 'read', 'collection': 'people', "
            "'id': 'r1'} (see docs/batch.md)"
        )
    data = orjson.dumps(op)
    links, group = op_links(op, data)
    return PendingOp(index, op_name(op), links, group, data)


def split_ops(operations: Iterable[Mapping[str, Any]], splitter: Splitter) -> Iterator[Chunk]:
    """The requests ``splitter`` makes of ``operations``, lazily."""
    for index, op in enumerate(operations):
        yield from splitter.add(pending_op(index, op))
    last = splitter.rest()
    if last is not None:
        yield last


async def asplit_ops(
    operations: AsyncIterable[Mapping[str, Any]], splitter: Splitter
) -> AsyncIterator[Chunk]:
    """:func:`split_ops` for an async iterable."""
    index = 0
    async for op in operations:
        for chunk in splitter.add(pending_op(index, op)):
            yield chunk
        index += 1
    last = splitter.rest()
    if last is not None:
        yield last
