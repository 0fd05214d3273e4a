"""The SQLite store: the embedded default, put together from its parts.

- :mod:`.writer`: the one database thread, ``BEGIN IMMEDIATE`` transactions, group commit;
- :mod:`.tx`: the transaction the units of work see (SQL shared with PostgreSQL comes from
  :mod:`batchops.store.sql`);
- :mod:`.fts`: the deferred full-text index, caught up here when the store is idle;
- :mod:`.checkpoint`: WAL checkpoints off the writer thread;
- :mod:`.lanes`: read connections beside the writer, for ``Tx.read_beside``;
- :mod:`.watch`: the time bound on the writer's statements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from batchops._exceptions import StoreError
from batchops.store._retry import retry_transient
from batchops.store._url import sqlite_url
from batchops.store.base import DEFAULT_STATEMENT_TIMEOUT_MS, Dialect, Tx
from batchops.store.observe import observed
from batchops.store.sqlite.checkpoint import Checkpointer
from batchops.store.sqlite.lanes import ReadConnections
from batchops.store.sqlite.tx import SQLiteTx
from batchops.store.sqlite.watch import StatementWatch
from batchops.store.sqlite.writer import Writer

__all__ = ["SQLiteStore"]

T = TypeVar("T")


class SQLiteStore:
    """A SQLite file in WAL mode, served by one dedicated thread.

    Open it with :func:`batchops.store.open_store` (which also runs migrations) or
    :meth:`open`. ``busy_timeout_ms`` is how long SQLite itself waits for another
    process's write lock before run() sees a TransientStoreError. ``read_connections``:
    at most this many read connections serve ``Tx.read_beside`` beside the writer (0:
    none, every read runs in the writer).
    """

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        read_connections: int = 4,
    ) -> None:
        if statement_timeout_ms < 0:
            raise ValueError(f"statement_timeout_ms must be >= 0, got {statement_timeout_ms}")
        self.path = path
        self.url = sqlite_url(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self._watch = StatementWatch(statement_timeout_ms / 1000)
        self._checkpointer = Checkpointer(path)
        # Tx.read_beside's read connections beside the writer (opened when first wanted).
        self._readers = ReadConnections(
            path,
            size=read_connections,
            busy_timeout_ms=busy_timeout_ms,
            limit_s=statement_timeout_ms / 1000,
        )
        self._writer = Writer(
            path,
            busy_timeout_ms=busy_timeout_ms,
            watch=self._watch,
            checkpointer=self._checkpointer,
            lanes=self._readers if read_connections > 0 else None,
        )
        self._closed = False
        self._last_run = 0.0
        self._maybe_pending = True
        self._indexer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        read_connections: int = 4,
    ) -> SQLiteStore:
        """Connect (in the database thread). Does not run migrations."""
        store = cls(
            path,
            busy_timeout_ms=busy_timeout_ms,
            statement_timeout_ms=statement_timeout_ms,
            read_connections=read_connections,
        )
        try:
            await store._call(store._writer.connect)
        except BaseException:
            store._writer.shutdown(wait=False)
            raise
        store._indexer = asyncio.get_running_loop().create_task(store._index_when_idle())
        store._checkpointer.start()
        store._watch.start()
        return store

    # While work keeps coming, indexing waits (a bulk import is not slowed by it); once the
    # store has been idle this long, pending rows are indexed in chunks of INDEX_CHUNK.
    IDLE_BEFORE_INDEXING_S = 0.5
    INDEX_CHUNK = 20_000

    async def _index_when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(self.IDLE_BEFORE_INDEXING_S / 2)
            if not self._maybe_pending:
                continue
            if loop.time() - self._last_run < self.IDLE_BEFORE_INDEXING_S:
                continue
            try:
                indexed = await self._call(
                    lambda: self._writer.run_once(
                        lambda tx: _as_sqlite(tx).index_pending(self.INDEX_CHUNK)
                    )
                )
            except (StoreError, RuntimeError):
                continue  # busy or closing: try again on the next tick
            if indexed == 0:
                self._maybe_pending = False

    async def _call(self, fn: Callable[[], T]) -> T:
        return await self._writer.call(fn)

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        """Run ``fn(tx)`` in the database thread in one transaction (see Store.run; units
        queued together commit together, see :meth:`Writer.enqueue`).

        Cancelling the awaiting task does not interrupt ``fn`` once it has started: it
        finishes (commits or rolls back) in the thread. A unit cancelled while still
        queued does not run.
        """
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        self._last_run = loop.time()
        self._maybe_pending = True
        writer = self._writer
        return await observed("sqlite", retry_transient(lambda: writer.enqueue(loop, fn), retries))

    async def close(self) -> None:
        """Close the connection and stop the threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._indexer is not None:
            self._indexer.cancel()
            with suppress(asyncio.CancelledError):
                await self._indexer
        await asyncio.to_thread(self._checkpointer.stop)
        await asyncio.to_thread(self._watch.stop)
        await self._call(self._writer.close_conn)
        self._writer.shutdown(wait=True)
        await asyncio.to_thread(self._readers.close)


def _as_sqlite(tx: Tx) -> SQLiteTx:
    assert isinstance(tx, SQLiteTx)
    return tx
