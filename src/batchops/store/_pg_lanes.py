"""The lanes of the PostgreSQL store (see :mod:`batchops.store._beside`): pooled
connections, taken without waiting, each in a ``READ ONLY`` transaction.

Why the store's own pool and not a pool of its own for reads: a lane only uses a
connection nobody else holds at that moment (it never waits), so the reads of a batch use
the pool's idle capacity and nothing more; the server opens no connections beyond
``db_pool_size``, which is what an operator sizes PostgreSQL's ``max_connections`` by. A
busy server simply runs its batches' reads in order, as with ``parallel: 1``. A pool of
its own would hold idle connections in every process and compete for the same cores.

A lane's transaction is ``BEGIN READ ONLY`` (READ COMMITTED: each statement sees what was
committed when it started), bounded by the batch's deadline with ``SET LOCAL
statement_timeout`` (the connection's own ``statement_timeout`` — the store's limit —
bounds it otherwise). A read whose statement fails leaves the transaction aborted; the
lane rolls it back and opens a new one for its next read, without a savepoint per read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from batchops.store._beside import HelperThreads, Lane

if TYPE_CHECKING:
    from batchops.store.base import Tx

__all__ = ["PoolLanes"]

T = TypeVar("T")

#: How long a lane waits for a pooled connection: as good as not at all (psycopg_pool
#: refuses a timeout of 0 even when a connection is ready).
TAKE_TIMEOUT_S = 0.002

_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


class PoolLanes(HelperThreads):
    """Lanes over ``pool``; ``make_tx(conn)`` wraps a connection in the store's
    transaction class; helper threads: ``threads`` at most."""

    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        make_tx: Callable[[psycopg.Connection[Any]], Tx],
        *,
        threads: int,
    ) -> None:
        super().__init__(threads, "batchops-pg-read")
        self._pool = pool
        self._make_tx = make_tx

    def take(self, deadline: float | None) -> Lane | None:
        """A pooled connection if one is free right now (see ``TAKE_TIMEOUT_S``)."""
        try:
            conn = self._pool.getconn(timeout=TAKE_TIMEOUT_S)
        except psycopg.Error:  # PoolTimeout, PoolClosed: none free, or closing
            return None
        return _PoolLane(self._pool, conn, self._make_tx, deadline)

    def close(self) -> None:
        """Stop the helper threads (helpers not started yet never start)."""
        self.close_helpers()


class _PoolLane:
    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        conn: psycopg.Connection[Any],
        make_tx: Callable[[psycopg.Connection[Any]], Tx],
        deadline: float | None,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._make_tx = make_tx
        self._deadline = deadline
        self._tx: Tx | None = None

    def run(self, read: Callable[[Tx], T]) -> T:
        tx = self._tx
        if tx is None:
            try:
                self._conn.execute("BEGIN READ ONLY")
            except psycopg.Error:
                self._end()
                raise
            tx = self._tx = self._make_tx(self._conn)
            if self._deadline is not None:
                tx.set_statement_timeout(max(0.001, self._deadline - time.monotonic()))
        try:
            return read(tx)
        finally:
            # A failed statement aborted the transaction (or the connection is gone):
            # the next read gets a new one.
            if self._conn.info.transaction_status != TransactionStatus.INTRANS:
                self._end()

    def _end(self) -> None:
        self._tx = None
        if self._conn.info.transaction_status in _OPEN:
            with suppress(psycopg.Error):
                self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._end()
        # A broken connection is discarded by the pool, which opens a new one.
        with suppress(Exception):
            self._pool.putconn(self._conn)
