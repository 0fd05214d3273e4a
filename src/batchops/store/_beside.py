"""Reads beside a transaction: read-only functions run at once on other connections.

:meth:`batchops.store.base.TxBase.read_beside` is how a unit of work (a batch) runs
independent reads concurrently without leaving its one hop into the database thread:

- The transaction's own thread takes part: it runs reads in its own transaction, so
  ``width`` counts it (``width=4``: this connection and at most 3 others).
- The others are *lanes*: another connection of the store, each in a read-only
  transaction of its own (committed data only), driven by a helper thread. A lane is taken
  without waiting (:meth:`Lanes.take` answers None at once when none is free): a thread
  that holds a pooled connection must never wait for another one, or batches doing the
  same could hold every connection of the pool and wait on each other for ever. Whatever
  no lane took, the transaction's thread runs itself.
- A read whose run on a lane raised — anything: a lost connection, a search the lane
  cannot answer exactly (SQLite's full-text index behind the committed rows) — is given
  back and run again in the transaction (reads can run twice); that lane stops. A read
  answers its own errors (a 404, a timed-out statement) by returning them: the callers'
  functions decide what is theirs.
- The transaction's thread waits only for reads a lane has *started* (bounded by the
  statement time bound), never for a lane to come free.

Results are in the order of ``reads``. Which connection ran a read, the read can tell by
the transaction it was given.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from batchops.store.base import Tx

__all__ = ["HelperThreads", "Lane", "Lanes", "read_beside"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


class Lane(Protocol):
    """Another connection, in a read-only transaction of its own, for one helper."""

    def run(self, read: Callable[[Tx], T]) -> T:
        """``read(tx)`` in this lane's transaction (raises what it raises; the lane is
        usable again after a read whose statement failed)."""
        ...

    def close(self) -> None:
        """End the transaction and give the connection back (never raises)."""
        ...


class Lanes(Protocol):
    """A store's supply of lanes and of helper threads to drive them."""

    def take(self, deadline: float | None) -> Lane | None:
        """A lane now, or None at once when no connection is free. ``deadline``
        (``time.monotonic()``) bounds its statements, as ``set_statement_timeout`` would."""
        ...

    def spawn(self, work: Callable[[], None]) -> bool:
        """Start ``work`` on a helper thread; False when the store is closing."""
        ...


class HelperThreads:
    """The helper threads that drive a store's lanes (``spawn``), both stores'
    :class:`Lanes` build on it; ``close_helpers`` stops them (helpers not started yet never
    start)."""

    def __init__(self, threads: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=name)

    def spawn(self, work: Callable[[], None]) -> bool:
        """Run ``work`` on a helper thread; False once closed."""
        try:
            self._executor.submit(work)
        except RuntimeError:  # shut down: the store is closing
            return False
        return True

    def close_helpers(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class _Share:
    """The reads of one call, handed out in order to the transaction's thread and the
    lanes' helpers."""

    def __init__(self, count: int) -> None:
        self.results: list[Any] = [None] * count
        self._count = count
        self._next = 0
        self._given_back: deque[int] = deque()
        self._on_lanes = 0
        self._closed = False
        self._cond = threading.Condition()

    def wanted(self) -> bool:
        """Whether a helper starting now would find a read to run."""
        with self._cond:
            return not self._closed and self._next < self._count

    def take_for_lane(self) -> int | None:
        with self._cond:
            if self._closed or self._next >= self._count:
                return None
            index = self._next
            self._next += 1
            self._on_lanes += 1
            return index

    def settle(self, index: int, value: object) -> None:
        with self._cond:
            self.results[index] = value
            self._on_lanes -= 1
            self._cond.notify_all()

    def give_back(self, index: int) -> None:
        with self._cond:
            self._given_back.append(index)
            self._on_lanes -= 1
            self._cond.notify_all()

    def take_for_transaction(self) -> int | None:
        """The next read for the transaction's thread: one given back, else the next
        one; None once every read has its result. Waits only for reads a lane runs."""
        with self._cond:
            while True:
                if self._given_back:
                    return self._given_back.popleft()
                if self._next < self._count:
                    index = self._next
                    self._next += 1
                    return index
                if self._on_lanes == 0:
                    return None
                self._cond.wait()

    def close(self) -> None:
        """No more reads for the lanes (their late helpers stop at once)."""
        with self._cond:
            self._closed = True


def read_beside(
    tx: Tx,
    reads: Sequence[Callable[[Tx], T]],
    *,
    width: int,
    deadline: float | None,
    lanes: Lanes | None,
) -> list[T]:
    """Run ``reads`` at most ``width`` at once: in ``tx`` and on up to ``width - 1``
    lanes (see the module docstring). Results in the order of ``reads``."""
    count = len(reads)
    if lanes is None or width <= 1 or count <= 1:
        return [read(tx) for read in reads]
    share = _Share(count)

    def helper() -> None:
        _help(share, reads, lanes, deadline)

    for _ in range(min(width - 1, count - 1)):
        if not lanes.spawn(helper):
            break
    try:
        while (index := share.take_for_transaction()) is not None:
            share.results[index] = reads[index](tx)
    finally:
        share.close()
    return share.results


def _help(
    share: _Share, reads: Sequence[Callable[[Tx], Any]], lanes: Lanes, deadline: float | None
) -> None:
    """A helper thread: take a lane (or stop), run reads on it until none is left."""
    if not share.wanted():
        return
    try:
        lane = lanes.take(deadline)
    except Exception:
        logger.debug("no lane: taking one failed", exc_info=True)
        return
    if lane is None:
        return
    try:
        while (index := share.take_for_lane()) is not None:
            try:
                value = lane.run(reads[index])
            except BaseException:
                share.give_back(index)
                logger.debug("read %d given back to the transaction", index, exc_info=True)
                return
            share.settle(index, value)
    finally:
        lane.close()
