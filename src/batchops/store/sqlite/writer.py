"""The writer of the SQLite store: one thread, one connection, group commit.

One dedicated thread owns one connection, and a whole unit of work (``fn(tx)``) runs there in
ONE executor hop inside ``BEGIN IMMEDIATE … COMMIT`` (units that queue up meanwhile share
one, a savepoint each: group commit, see :meth:`Writer.enqueue`). An awaited aiosqlite
statement costs ~85-190 µs on this machine, so per-statement hops would dominate a
100-operation batch.
``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never fails half-way with
"database is locked" on its first write; a busy database surfaces at BEGIN, where the whole
``fn`` can be retried safely.

This thread is the serial section of every SQLite write: nothing may be added to it per
unit or per row without measuring.

Reads serialise behind writes on the one thread, except the reads a unit hands to
``Tx.read_beside``: those may run on read connections beside it (WAL allows concurrent
readers; see :mod:`.lanes`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from batchops._exceptions import StoreError
from batchops.store._beside import Lanes
from batchops.store._query import search_text
from batchops.store.base import Tx
from batchops.store.sqlite.checkpoint import WAL_SAFETY_PAGES, WAL_SIZE_LIMIT_BYTES, Checkpointer
from batchops.store.sqlite.errors import translating
from batchops.store.sqlite.tx import SQLiteTx
from batchops.store.sqlite.watch import StatementWatch

__all__ = ["Writer"]

T = TypeVar("T")


class Writer:
    """The database thread of one SQLite file and the units of work queued for it."""

    # At most this many units commit together, so one commit never waits on a long queue.
    GROUP_MAX = 16

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int,
        watch: StatementWatch,
        checkpointer: Checkpointer,
        lanes: Lanes | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._watch = watch
        self._checkpointer = checkpointer
        self._lanes = lanes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchops-sqlite")
        self._conn: sqlite3.Connection | None = None
        # Units of work waiting for the database thread (group commit, see enqueue()).
        self._queue: deque[_Unit[Any]] = deque()
        self._queue_lock = threading.Lock()
        self._draining = False

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in the database thread (outside any transaction)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def connect(self) -> None:
        """Open the connection (in the database thread)."""
        with translating():
            # isolation_level=None: the sqlite3 module must not open transactions behind
            # our back; the writer issues BEGIN IMMEDIATE / COMMIT itself.
            conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=256)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                # Pending rows get their search text when indexed, off the insert path.
                conn.create_function(
                    "batchops_search_text",
                    1,
                    lambda data: search_text(orjson.loads(data)),
                    deterministic=True,
                )
                conn.execute("PRAGMA synchronous = NORMAL")
                # Checkpoints run in a thread of their own (Checkpointer); the writer's
                # own automatic checkpoint is only a safety net for a WAL that grows
                # past WAL_SAFETY_PAGES because the checkpointer cannot keep up.
                conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_SAFETY_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                conn.execute("PRAGMA foreign_keys = ON")
            except BaseException:
                conn.close()
                raise
        self._conn = conn

    def run_once(self, fn: Callable[[Tx], T]) -> T:
        """In the database thread: ``fn`` in a transaction of its own."""
        with self._transaction() as conn, self._watch.unit(conn), translating(conn, self._watch):
            # translating: rows are read from a cursor after the statement that made it,
            # so an error while reading them (an interrupt) surfaces here, untranslated.
            return fn(SQLiteTx(conn, self._watch, lanes=self._lanes))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``, then COMMIT when the block ends, ROLLBACK if it raises."""
        conn = self._conn
        if conn is None:
            raise StoreError("the store is closed")
        with translating():
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            with translating():
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        self._checkpointer.wake()

    def enqueue(self, loop: asyncio.AbstractEventLoop, fn: Callable[[Tx], T]) -> Awaitable[T]:
        """Queue ``fn`` for the database thread; its result (or exception) arrives on
        ``loop`` after the commit.

        Group commit: units that queue up while the thread is busy run together in ONE
        transaction, each in its own savepoint, and commit together (a commit was ~40% of
        the database thread's time for a 100-create batch). A unit that raises is rolled
        back to its savepoint and gets its exception; the others are unaffected. A failed
        BEGIN or COMMIT fails every unit of the group, as it would have failed each alone.
        """
        unit: _Unit[T] = _Unit(fn, loop, loop.create_future())
        with self._queue_lock:
            self._queue.append(unit)
            start = not self._draining
            self._draining = True
        if start:
            try:
                self._executor.submit(self._drain)
            except RuntimeError:  # the executor is shut down: the store is closing
                with self._queue_lock:
                    self._draining = False
                raise StoreError("the store is closed") from None
        return unit.future

    def _drain(self) -> None:
        """In the database thread: run queued units, a group per transaction, until none
        is left."""
        while True:
            with self._queue_lock:
                group = [
                    self._queue.popleft() for _ in range(min(self.GROUP_MAX, len(self._queue)))
                ]
                if not group:
                    self._draining = False
                    return
            units = [u for u in group if not u.future.cancelled()]
            if units:
                self._run_group(units)

    def _run_group(self, units: list[_Unit[Any]]) -> None:
        outcomes: list[tuple[bool, Any]]
        if len(units) == 1:
            try:
                outcomes = [(True, self.run_once(units[0].fn))]
            except BaseException as exc:  # delivered to the caller, re-raised there
                outcomes = [(False, exc)]
        else:
            try:
                outcomes = self._run_together(units)
            except _GroupLost as lost:
                # One unit's failure took the shared transaction with it (an interrupted
                # write): what the others did is gone too, through no fault of theirs.
                # They run again, each in a transaction of its own.
                outcomes = []
                for position, unit in enumerate(units):
                    if position == lost.position:
                        outcomes.append((False, lost.error))
                        continue
                    try:
                        outcomes.append((True, self.run_once(unit.fn)))
                    except BaseException as exc:
                        outcomes.append((False, exc))
            except BaseException as exc:
                outcomes = [(False, exc)] * len(units)
        # One wake-up per event loop for the whole group.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for unit, outcome in zip(units, outcomes, strict=True):
            by_loop.setdefault(unit.loop, []).append((unit.future, outcome))
        for loop, settled in by_loop.items():
            with suppress(RuntimeError):  # that event loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, settled)

    def _run_together(self, units: list[_Unit[Any]]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self._transaction() as conn:
            for position, unit in enumerate(units):
                with translating():
                    conn.execute("SAVEPOINT batchops_unit")
                try:
                    with self._watch.unit(conn), translating(conn, self._watch):
                        result = unit.fn(SQLiteTx(conn, self._watch, lanes=self._lanes))
                except BaseException as exc:
                    if not conn.in_transaction:
                        raise _GroupLost(position, exc) from exc
                    with translating():
                        conn.execute("ROLLBACK TO batchops_unit")
                        conn.execute("RELEASE batchops_unit")
                    outcomes.append((False, exc))
                    continue
                with translating():
                    conn.execute("RELEASE batchops_unit")
                outcomes.append((True, result))
        return outcomes

    def close_conn(self) -> None:
        """In the database thread: close the connection, leaving the file whole."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                # Cheap (usually a no-op); keeps query-planner statistics fresh.
                conn.execute("PRAGMA optimize")
            with suppress(sqlite3.Error):
                # Leave the database file whole and the WAL empty.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the database thread."""
        self._executor.shutdown(wait=wait)


class _GroupLost(Exception):
    """Unit ``position`` of a group commit failed in a way that rolled the whole shared
    transaction back (SQLite does when it interrupts a write), with ``error``."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(f"unit {position} lost the group's transaction")
        self.position = position
        self.error = error


@dataclass(slots=True)
class _Unit(Generic[T]):
    """A queued ``Store.run`` call: its function and where its answer goes."""

    fn: Callable[[Tx], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]


def _settle(settled: list[tuple[asyncio.Future[Any], tuple[bool, Any]]]) -> None:
    """On the callers' loop: hand each unit's result or exception to its awaiting task."""
    for future, (ok, value) in settled:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
