"""The statement watch of the SQLite store: the time bound on the writer's statements
(see :class:`StatementWatch` for why a thread and not a progress handler)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["StatementWatch"]


class StatementWatch:
    """Cancels the writer's statement once its unit of work runs past its time bound.

    Why not a progress handler: that calls back into Python every N SQLite instructions,
    and each call-back must win the GIL from the event loop (the hand-off that made
    ``executemany`` ~100x slower, see ``ROWS_PER_STATEMENT`` in :mod:`.tx`). Here the
    writer only stores its unit's deadline (an attribute write at each start and end), and
    a thread of its own wakes every ``POLL_S`` — or at a nearer deadline a unit asked for —
    and calls ``sqlite3_interrupt`` (thread-safe) if that same unit is still running past
    it. A lock makes "same unit" exact: the writer cannot move to the next unit while the
    watch decides. The interrupted statement fails with SQLITE_INTERRUPT (→
    StoreTimeoutError) and the unit is rolled back like any failed unit.

    The bound covers a unit's own work, not its wait in the queue, and never a COMMIT
    (the unit ends before it).
    """

    POLL_S = 0.25

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._cond = threading.Condition()
        self._conn: sqlite3.Connection | None = None
        self._deadline: float | None = None
        self._serial = 0
        self._suspended = 0
        self._stopped = False
        #: The running unit's statement was interrupted (an error it raises is a timeout).
        self.fired = False
        self._thread = threading.Thread(
            target=self._loop, name="batchops-sqlite-watch", daemon=True
        )

    def start(self) -> None:
        """Start watching (the store has connected)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (blocking)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    @contextmanager
    def unit(self, conn: sqlite3.Connection) -> Iterator[None]:
        """The writer runs one unit of work inside this block."""
        with self._cond:
            self._conn = conn
            self._serial += 1
            self._suspended = 0
            self.fired = False
            self._deadline = time.monotonic() + self.limit_s if self.limit_s > 0 else None
        try:
            yield
        finally:
            with self._cond:
                self._deadline = None
                self._conn = None

    def narrow(self, deadline: float | None) -> None:
        """The running unit's bound: the nearer of ``deadline`` and the limit; None lifts
        it for the rest of the unit."""
        with self._cond:
            if self._conn is None:
                return
            if deadline is None:
                self._deadline = None
                return
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
                self._cond.notify()  # it may be nearer than the next poll

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No bound inside this block (within the running unit)."""
        with self._cond:
            self._suspended += 1
        try:
            yield
        finally:
            with self._cond:
                self._suspended = max(0, self._suspended - 1)

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                deadline = self._deadline
                now = time.monotonic()
                if (
                    deadline is not None
                    and now >= deadline
                    and not self._suspended
                    and self._conn is not None
                ):
                    self._conn.interrupt()
                    self.fired = True
                    self._deadline = None  # once per unit
                    continue
                wait = self.POLL_S if deadline is None else min(self.POLL_S, deadline - now)
                self._cond.wait(max(wait, 0.001))
