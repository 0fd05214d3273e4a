"""The lanes of the SQLite store (see :mod:`batchops.store._beside`): read connections
beside the writer.

WAL lets readers run while the writer writes: each reader sees the database as last
committed when its read transaction began. A lane is one of at most ``size`` read
connections (``query_only``, opened lazily the first time one is wanted and kept), taken
without waiting, in a deferred ``BEGIN`` … ``ROLLBACK`` read transaction: one snapshot
for the reads it runs. Each connection has a :class:`StatementWatch` of its own, so the
store's statement limit and the batch's deadline bound its statements as they bound the
writer's.

The deferred full-text index (:mod:`.fts`): a read connection cannot catch the index up.
A search on a lane whose snapshot holds committed rows the index has not reached raises
:class:`~batchops.store.sqlite.fts.IndexBehind` instead of answering from a partial
index, and the search is run again in the writer, which catches the index up first:
search answers are the same wherever they run. (The store indexes pending rows once it
is idle, so lanes answer searches again soon after a bulk write.)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import ExitStack, suppress
from typing import TYPE_CHECKING, TypeVar

from batchops.store._beside import HelperThreads, Lane
from batchops.store.sqlite.tx import SQLiteTx
from batchops.store.sqlite.watch import StatementWatch

if TYPE_CHECKING:
    from batchops.store.base import Tx

__all__ = ["ReadConnections"]

T = TypeVar("T")


class _Reader:
    """One read connection and the watch that bounds its statements."""

    def __init__(self, path: str, *, busy_timeout_ms: int, limit_s: float) -> None:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self.watch = StatementWatch(limit_s)
        self.watch.start()

    def close(self) -> None:
        self.watch.stop()
        with suppress(sqlite3.Error):
            self.conn.close()


class ReadConnections(HelperThreads):
    """Up to ``size`` read connections of the file at ``path``, and helper threads."""

    def __init__(self, path: str, *, size: int, busy_timeout_ms: int, limit_s: float) -> None:
        self.path = path
        self.size = size
        self._busy_timeout_ms = busy_timeout_ms
        self._limit_s = limit_s
        self._free: list[_Reader] = []
        self._opened = 0
        self._closed = False
        self._lock = threading.Lock()
        super().__init__(size, "batchops-sqlite-read")

    def take(self, deadline: float | None) -> Lane | None:
        """A free read connection, or a new one while fewer than ``size`` are open;
        None at once otherwise."""
        with self._lock:
            if self._closed:
                return None
            if self._free:
                return _ReadLane(self, self._free.pop(), deadline)
            if self._opened >= self.size:
                return None
            self._opened += 1
        try:
            reader = _Reader(
                self.path, busy_timeout_ms=self._busy_timeout_ms, limit_s=self._limit_s
            )
        except sqlite3.Error:
            with self._lock:
                self._opened -= 1
            return None
        return _ReadLane(self, reader, deadline)

    def give_back(self, reader: _Reader) -> None:
        """A lane is done with ``reader``."""
        with self._lock:
            if not self._closed:
                self._free.append(reader)
                return
            self._opened -= 1
        reader.close()

    def close(self) -> None:
        """Stop the helpers and close every read connection (blocking)."""
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
            self._opened -= len(free)
        self.close_helpers()
        for reader in free:
            reader.close()


class _ReadLane:
    def __init__(self, owner: ReadConnections, reader: _Reader, deadline: float | None) -> None:
        self._owner = owner
        self._reader = reader
        self._deadline = deadline
        self._stack: ExitStack | None = None

    def run(self, read: Callable[[Tx], T]) -> T:
        conn, watch = self._reader.conn, self._reader.watch
        if self._stack is None:
            stack = ExitStack()
            stack.enter_context(watch.unit(conn))
            try:
                conn.execute("BEGIN")
            except BaseException:
                stack.close()
                raise
            self._stack = stack
            if self._deadline is not None:
                watch.narrow(self._deadline)
        try:
            return read(SQLiteTx(conn, watch, read_only=True))
        finally:
            if not conn.in_transaction:
                self._end()

    def _end(self) -> None:
        stack, self._stack = self._stack, None
        conn = self._reader.conn
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if stack is not None:
            stack.close()

    def close(self) -> None:
        self._end()
        self._owner.give_back(self._reader)
