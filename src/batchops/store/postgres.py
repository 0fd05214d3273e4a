"""The PostgreSQL store: many API and worker processes on one database.

A synchronous psycopg 3 ConnectionPool plus a ThreadPoolExecutor of the same size: each
``run(fn)`` takes a connection in a worker thread, opens a transaction, runs ``fn(tx)``
(plain synchronous code) and commits, so a whole unit of work costs ONE executor hop.

Single-row inserts, and a group whose COPY clashed, use one ``INSERT … SELECT FROM
unnest(…) ON CONFLICT DO NOTHING RETURNING`` (the rows as arrays), which names the
duplicates. psycopg prepares a statement server-side after it has run
``prepare_threshold`` (5) times on a connection; every statement here has constant text,
so the hot ones get prepared.

Every group of two rows or more (``COPY_MIN_ROWS``) uses ``COPY`` instead, in a
savepoint. Measured (session 7, 4 writers, 100-row groups into the records table): 30-34k
rows/s and ~25 µs of PostgreSQL CPU a row, against 6.3-7.0k rows/s and ~200 µs with the
``INSERT … ON CONFLICT DO NOTHING RETURNING`` executemany this store used before — each
such insert pays a speculative insertion into every index; COPY inserts its rows in
multi-row batches. Two-row groups still gain (1.8k vs 1.6k rows/s); single rows lose
(0.8-0.9k vs 1.0-1.1k). COPY cannot skip a clashing row, so a clash rolls the savepoint
back and the INSERT over arrays runs instead, to name the duplicates.

Updates of many rows are ONE ``UPDATE … FROM unnest(…)`` (the new values as arrays, joined
on the key, with the version predicate): measured through ``bench/updates.py`` it doubled
batch updates against the pipelined executemany of one ``UPDATE`` per row (6.6k → 13.4k
ops/s), and it takes psycopg's pipeline, whose cancellation has corner cases (see
``_pipelined``), off the update path.

The statements that differ from SQLite's only in syntax are written once in
:mod:`batchops.store.sql` and mixed into :class:`PostgresTx`; what is here differs in
behaviour: record writes (COPY, one INSERT or UPDATE over arrays), tsvector
search, field indexes (ANALYZE after the build), advisory locks and ``SET LOCAL
statement_timeout``.

(One module past 500 lines on purpose: the pool, the transaction class and the error
mapping share one concern — what a cancelled or broken statement does to the connection
and the unit of work — and read best side by side.)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import orjson
import psycopg
import psycopg.errors
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from batchops._exceptions import (
    StoreError,
    StoreInputError,
    StoreTimeoutError,
    TransientStoreError,
)
from batchops.store._beside import Lanes
from batchops.store._pg_lanes import PoolLanes
from batchops.store._query import (
    duplicate_ids,
    field_index_name,
    final_versions,
    search_text,
)
from batchops.store._retry import retry_transient
from batchops.store.base import (
    DEFAULT_STATEMENT_TIMEOUT_MS,
    Dialect,
    DuplicateRecordError,
    EncodedRecords,
    RecordRow,
    Tx,
)
from batchops.store.observe import observed
from batchops.store.pg_search import INDEX_CHUNK, SearchSQL, index_step
from batchops.store.sql.dialect import POSTGRES
from batchops.store.sql.idempotency import IdempotencySQL, IdempotencyStatements
from batchops.store.sql.jobs import JobsSQL, JobStatements
from batchops.store.sql.keys import KeysSQL, KeyStatements
from batchops.store.sql.records import COLS, RecordsSQL, RecordStatements, field_sql
from batchops.store.sql.uploads import UploadsSQL, UploadStatements
from batchops.store.sql.webhooks import WebhooksSQL, WebhookStatements

__all__ = ["PostgresStore", "PostgresTx"]

T = TypeVar("T")

# One statement over arrays, ON CONFLICT DO NOTHING RETURNING: a clash is detected from the
# missing returned keys without aborting the transaction (a failed statement would poison
# it unless every insert paid for a savepoint); an id given twice is inserted once.
_INSERT = (
    f"INSERT INTO records ({COLS}, search_text) "
    "SELECT t, c, i, d::jsonb, v, ca, ua, da, st FROM unnest(%s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "AS u(t, c, i, d, v, ca, ua, da, st) "
    "ON CONFLICT DO NOTHING RETURNING tenant, collection, id"
)
_COPY = f"COPY records ({COLS}, search_text) FROM STDIN"
#: Groups of at least this many rows are written with COPY (see the module docstring).
COPY_MIN_ROWS = 2
# One statement for the whole group: the new values as arrays, joined on the key. The
# version predicate makes a write that raced a concurrent one change nothing (see
# Tx.update_records); the callers' reads lock their rows first (FOR UPDATE), so it only
# guards a read that forgot to.
_UPDATE = (
    "UPDATE records AS r SET data = v.data::jsonb, version = v.version, "
    "updated_at = v.updated_at, deleted_at = v.deleted_at, search_text = v.search_text, "
    "txid = pg_current_xact_id() "
    "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::bigint[]) "
    "AS v(data, version, updated_at, deleted_at, search_text, tenant, collection, id, before) "
    "WHERE r.tenant = v.tenant AND r.collection = v.collection AND r.id = v.id "
    "AND r.version = v.before"
)

# Classified once, here (see batchops._exceptions.StoreError for what each class answers).
# Retryable: the same unit of work may well succeed on another try.
_TRANSIENT = (
    psycopg.errors.SerializationFailure,  # 40001
    psycopg.errors.DeadlockDetected,  # 40P01
    psycopg.errors.LockNotAvailable,  # 55P03: lock_timeout
    psycopg.errors.AdminShutdown,  # 57P01: the server is restarting
    psycopg.errors.CrashShutdown,  # 57P02
    psycopg.errors.CannotConnectNow,  # 57P03: starting up
    psycopg.errors.TooManyConnections,  # 53300
)
# Caused by the request: a value out of range or not representable (class 22: numeric out
# of range, NUL in text, bad JSON text) or a statement too complex for the server (class
# 54: stack depth, too many arguments). Retrying sends the same thing again.
_INPUT = (psycopg.DataError, psycopg.errors.ProgramLimitExceeded)


def _translate(exc: psycopg.Error, *, timed_out: bool = False, lost: bool = False) -> StoreError:
    """THE mapping of psycopg errors (see the classes above).

    ``timed_out``: a statement of this transaction was cancelled at its time bound
    already. A cancellation that lands inside a pipelined ``executemany`` can leave the
    connection unusable ("cannot exit pipeline mode while busy"), and one that lands where
    its savepoint cannot be rolled back (mid-COPY) leaves the transaction aborted: the
    errors that follow are that timeout's, for the whole unit of work — not a lost
    connection to retry, nor a database failure.

    ``lost``: a cancelled statement takes the transaction with it (there is no savepoint
    to return to).
    """
    if isinstance(exc, psycopg.errors.QueryCanceled):  # 57014: statement_timeout
        return StoreTimeoutError(f"PostgreSQL cancelled a statement: {exc}", unit_lost=lost)
    if timed_out and isinstance(exc, psycopg.errors.InFailedSqlTransaction):  # 25P02
        return StoreTimeoutError(
            f"PostgreSQL cancelled a statement and the transaction went with it: {exc}",
            unit_lost=True,
        )
    if timed_out and isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return StoreTimeoutError(
            f"PostgreSQL cancelled a statement and the connection went with it: {exc}",
            unit_lost=True,
        )
    if isinstance(exc, _TRANSIENT):
        return TransientStoreError(f"PostgreSQL is busy or unreachable: {exc}")
    if isinstance(exc, _INPUT):
        return StoreInputError(f"PostgreSQL refused a value: {exc}")
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        # Raised by the driver itself: the connection was lost, or the pool timed out.
        return TransientStoreError(f"PostgreSQL is unreachable: {exc}")
    return StoreError(f"PostgreSQL error: {exc}")


@contextmanager
def _translating() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise _translate(exc) from exc


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class PostgresTx(RecordsSQL, SearchSQL, JobsSQL, UploadsSQL, WebhooksSQL, KeysSQL, IdempotencySQL):
    """One open PostgreSQL transaction (see :class:`batchops.store.base.Tx`)."""

    dialect: Dialect = "postgresql"
    sql_dialect = POSTGRES
    _records_sql = RecordStatements(POSTGRES)
    _jobs_sql = JobStatements(POSTGRES)
    _uploads_sql = UploadStatements(POSTGRES)
    _webhooks_sql = WebhookStatements(POSTGRES)
    _keys_sql = KeyStatements(POSTGRES)
    _idempotency_sql = IdempotencyStatements(POSTGRES)

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        statement_timeout_ms: int = 0,
        lanes: Lanes | None = None,
    ) -> None:
        self._conn = conn
        self._statement_timeout_ms = statement_timeout_ms
        # Other pooled connections for read_beside (None: a lane's own transaction).
        self._lanes = lanes
        self._cancelled = False
        # When the bound a unit set (set_statement_timeout) runs out; kept once lifted.
        self._bound_until: float | None = None
        self._savepoints = 0
        self._lost = False

    @property
    def timed_out(self) -> bool:
        """A statement of this transaction was cancelled at its time bound, or the bound
        the unit set has passed: the errors that follow are that timeout's (see
        _translate). The second half matters where psycopg never surfaces the cancel
        itself — inside a pipeline it can end in "cannot exit pipeline mode while busy"
        or in an error of psycopg's own (see _pipelined)."""
        return self._cancelled or (
            self._bound_until is not None and time.monotonic() >= self._bound_until
        )

    def _translated(self, exc: psycopg.Error) -> StoreError:
        if self._lost:
            # Whatever fails after the unit was lost fails for that reason (seen after a
            # pipeline the cancel broke: InternalError "unexpected result status").
            return StoreTimeoutError(
                f"PostgreSQL: the transaction was lost to a cancelled statement: {exc}",
                unit_lost=True,
            )
        if isinstance(exc, psycopg.errors.QueryCanceled):
            self._cancelled = True
        # A statement cancelled outside every savepoint aborts the whole transaction: the
        # unit is lost, whichever statement it was (the batch's own SET LOCAL that lifts
        # its deadline once the operations are done can be the one cancelled).
        error = _translate(exc, timed_out=self.timed_out, lost=self._savepoints == 0)
        self._lost = isinstance(error, StoreTimeoutError) and error.unit_lost
        return error

    @contextmanager
    def _translating(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise self._translated(exc) from exc

    def _execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> psycopg.Cursor[Any]:
        with self._translating():
            return self._conn.execute(sql, params)

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> psycopg.Cursor[Any]:
        # psycopg 3 pipelines executemany: one round trip for the whole group.
        with self._pipelined():
            cur = self._conn.cursor()
            cur.executemany(sql, params)
            return cur

    @contextmanager
    def _pipelined(self) -> Iterator[None]:
        """Around psycopg's pipelined calls (every executemany): its errors translated, and
        an error of psycopg's own code after this unit's bound passed taken for what it is,
        the cancel's aftermath. Measured (a 1 ms batch deadline, 1-5 row inserts, ~1 in
        2,000 units): a cancel that lands inside a pipeline can end in ``IndexError: pop
        from an empty deque`` from ``Pipeline.__exit__`` instead of QueryCanceled, and the
        connection is unusable after it — a 500 for a batch that merely ran out of time."""
        try:
            yield
        except psycopg.Error as exc:
            raise self._translated(exc) from exc
        except Exception as exc:
            if not self.timed_out:
                raise
            self._lost = True
            raise StoreTimeoutError(
                f"PostgreSQL cancelled a statement inside a pipeline: {exc!r}", unit_lost=True
            ) from exc

    def _fetch_chunk(self, sql: str, params: Sequence[Any]) -> Any:
        """An upload's chunk in binary: measured reading 1 MiB bytea chunks, 780 MB/s against
        240 MB/s as hex text (docs/benchmarks.md, "Uploads")."""
        with self._translating():
            return self._conn.execute(sql, params, binary=True).fetchone()

    # Per dialect: PostgreSQL bounds time with SET LOCAL and locks by name with advisory locks.
    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested savepoint (``conn.transaction()``): rolled back if the block raises."""
        with self._translating():
            self._savepoints += 1
            try:
                with self._conn.transaction():
                    yield
            finally:
                # Before the exit's own error is translated: a ROLLBACK TO that is itself
                # cancelled leaves no savepoint to return to.
                self._savepoints -= 1

    def set_statement_timeout(self, seconds: float | None) -> None:
        """``SET LOCAL statement_timeout``: ``seconds``, or 0 (no bound) for None. One
        round trip, so callers only ask when their bound is the nearer one."""
        if seconds is None:
            ms = 0
        else:
            ms = max(1, int(seconds * 1000))
            if self._statement_timeout_ms:
                ms = min(ms, self._statement_timeout_ms)
            self._bound_until = time.monotonic() + ms / 1000
        # SET takes no bind parameters; ms is an int.
        self._execute(f"SET LOCAL statement_timeout = {ms}")

    def lock(self, name: str) -> None:
        """An advisory lock on ``name``, held until the transaction ends."""
        self._execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))

    def try_lock(self, name: str) -> bool:
        """The advisory lock of :meth:`lock` if it is free, without waiting."""
        sql = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))"
        row = self._execute(sql, (name,)).fetchone()
        return row is not None and bool(row[0])

    # -- records: per dialect (COPY, statements over arrays, tsvector search) ---------------
    def insert_records(self, rows: Sequence[RecordRow]) -> None:
        """Insert all rows (one COPY from ``COPY_MIN_ROWS`` rows, else one INSERT over
        arrays). On DuplicateRecordError nothing of this call is left written."""
        self._insert_params(
            [
                (
                    r.tenant,
                    r.collection,
                    r.id,
                    _dumps(r.data),
                    r.version,
                    r.created_at,
                    r.updated_at,
                    r.deleted_at,
                    search_text(r.data),
                )
                for r in rows
            ]
        )

    def insert_encoded(
        self,
        tenant: str,
        collection: str,
        ids: Sequence[str],
        records: EncodedRecords,
        *,
        now: str,
    ) -> None:
        """See :meth:`Tx.insert_encoded`."""
        searches = (
            records.search
            if records.search is not None
            else [search_text(orjson.loads(text)) for text in records.json]
        )
        self._insert_params(
            [
                (tenant, collection, id_, text, 1, now, now, None, search)
                for id_, text, search in zip(ids, records.json, searches, strict=True)
            ]
        )

    def _insert_params(self, params: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows given as records-table tuples (tenant, collection, id first)."""
        if not params:
            return
        if len(params) >= COPY_MIN_ROWS and self._copy_records(params):
            return
        columns = [list(column) for column in zip(*params, strict=True)]
        inserted: list[tuple[str, str, str]] = self._execute(_INSERT, columns).fetchall()
        if len(inserted) == len(params):
            return
        mine = {(t, c, i) for t, c, i in inserted}
        duplicates = duplicate_ids(
            [(p[0], p[1], p[2]) for p in params],
            lambda tenant, collection, ids: {
                i
                for i in self.existing_ids(tenant, collection, ids)
                if (tenant, collection, i) not in mine
            },
        )
        self._execute(
            "DELETE FROM records r USING unnest(%s::text[], %s::text[], %s::text[]) "
            "AS k(tenant, collection, id) "
            "WHERE r.tenant = k.tenant AND r.collection = k.collection AND r.id = k.id",
            [[k[0] for k in inserted], [k[1] for k in inserted], [k[2] for k in inserted]],
        )
        raise DuplicateRecordError(duplicates)

    def _copy_records(self, params: Sequence[tuple[Any, ...]]) -> bool:
        """COPY the rows in a savepoint. False when an id exists already: the savepoint is
        rolled back and nothing was written."""
        try:
            with self._conn.transaction(), self._conn.cursor() as cur, cur.copy(_COPY) as copy:
                for row in params:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            return False
        except psycopg.Error as exc:
            raise self._translated(exc) from exc
        return True

    def update_records(self, rows: Sequence[RecordRow]) -> None:
        """Write data, version, updated_at, deleted_at, search_text (and txid: the search
        index takes the new text, see store.pg_search), each
        row only if it is still at the version before its new one (see Tx), with one
        statement. A row given twice ends as its last version (as if written in order)."""
        if not rows:
            return
        params = [
            (
                _dumps(r.data),
                r.version,
                r.updated_at,
                r.deleted_at,
                search_text(r.data),
                r.tenant,
                r.collection,
                r.id,
                before,
            )
            for r, before in final_versions(rows)
        ]
        columns = [list(column) for column in zip(*params, strict=True)]
        changed = self._execute(_UPDATE, columns).rowcount
        if changed != len(params):
            raise TransientStoreError(
                f"a concurrent writer changed {len(params) - changed} of {len(params)} "
                "records since they were read; the unit of work must run again"
            )

    def ensure_field_index(self, tenant: str, collection: str, path: str) -> None:
        """See :meth:`batchops.store.base.RecordsTx.ensure_field_index`. A plain CREATE INDEX (not
        CONCURRENTLY, which cannot run in a transaction): writes to records wait while it
        builds, then ANALYZE samples the table once."""
        name = field_index_name(tenant, collection, path)
        if self._execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (name,)).fetchone():
            return
        expr, scope = field_sql(POSTGRES, tenant, collection, path)
        # A build scans the whole collection: not bound by the per-statement limit.
        self.set_statement_timeout(None)
        self._execute(f"CREATE INDEX IF NOT EXISTS {name} ON records (({expr})) WHERE {scope}")
        # Statistics on the new expression: without them (e.g. right after a bulk load) the
        # planner estimated a handful of rows for the collection and scanned it by primary key.
        self._execute("ANALYZE records")


def _configure(conn: psycopg.Connection[Any]) -> None:
    # orjson decodes jsonb columns (psycopg's default is the stdlib json module).
    set_json_loads(orjson.loads, conn)


def default_pool_size() -> int:
    """The pool size when none is given: twice the cores plus one (the database work of a
    unit waits on the network and on PostgreSQL as much as it runs here), at least 4 and
    at most 32.

    >>> 4 <= default_pool_size() <= 32
    True
    """
    return max(4, min(32, 2 * (os.cpu_count() or 1) + 1))


class PostgresStore:
    """PostgreSQL through a pool of ``pool_size`` connections and as many threads
    (:func:`default_pool_size` when None).

    Open it with :func:`batchops.store.open_store` (which also runs migrations) or
    :meth:`open`.
    """

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int | None = None,
        connect_timeout_s: float = 10.0,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    ) -> None:
        if pool_size is None:
            pool_size = default_pool_size()
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if statement_timeout_ms < 0:
            raise ValueError(f"statement_timeout_ms must be >= 0, got {statement_timeout_ms}")
        self.url = url
        self.pool_size = pool_size
        self.statement_timeout_ms = statement_timeout_ms
        self._connect_timeout_s = connect_timeout_s
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=pool_size,
            max_size=pool_size,
            open=False,
            # autocommit: conn.transaction() is then the only thing that opens
            # transactions, and nested ones become savepoints.
            # The server's own statement_timeout bounds every statement of every
            # connection at no cost per transaction (0: no bound).
            kwargs={
                "autocommit": True,
                "options": f"-c statement_timeout={statement_timeout_ms}",
            },
            configure=_configure,
            timeout=connect_timeout_s,
            name="batchops",
        )
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="batchops-pg")
        # read_beside's other connections: the pool's idle ones (see store._pg_lanes).
        self._lanes = PoolLanes(
            self._pool,
            lambda conn: PostgresTx(conn, statement_timeout_ms),
            threads=max(1, pool_size - 1),
        )
        self._closed = False
        self._indexer: asyncio.Task[None] | None = None
        self._last_run = 0.0  # loop time of the last run(): the indexer waits for a pause

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int | None = None,
        connect_timeout_s: float = 10.0,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        index_search: bool = True,
    ) -> PostgresStore:
        """Open the pool and wait for its connections, and start the search indexer unless
        ``index_search`` is False. Does not run migrations."""
        store = cls(
            url,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            statement_timeout_ms=statement_timeout_ms,
        )
        try:
            await store._call(store._open_pool)
        except BaseException:
            await store.close()
            raise
        if index_search:
            store._indexer = asyncio.get_running_loop().create_task(store._index_search())
        return store

    # The search index's background indexer (see store.pg_search). Its lag never changes
    # what a search finds, only how many rows a search evaluates on the fly, so it keeps
    # out of the way of writes as SQLite's deferred index does: a step runs once this
    # process has been idle for IDLE_BEFORE_INDEXING_S, or when the last step is
    # MAX_INDEX_LAG_S old whatever the load; steps follow each other at once while they
    # find full chunks. Measured on a 100k-row import (docs/benchmarks.md, Imports).
    INDEX_INTERVAL_S = 0.25
    IDLE_BEFORE_INDEXING_S = 0.5
    MAX_INDEX_LAG_S = 5.0

    async def _index_search(self) -> None:
        loop = asyncio.get_running_loop()
        last_step = loop.time()
        while not self._closed:
            await asyncio.sleep(self.INDEX_INTERVAL_S)
            now = loop.time()
            busy = now - self._last_run < self.IDLE_BEFORE_INDEXING_S
            if busy and now - last_step < self.MAX_INDEX_LAG_S:
                continue
            indexed: int | None = INDEX_CHUNK
            while indexed == INDEX_CHUNK and not self._closed:
                try:
                    indexed = await self.index_search()
                except (StoreError, RuntimeError):
                    break  # busy, failing over or closing: try again on the next tick
            last_step = loop.time()

    async def index_search(self) -> int | None:
        """Run one step of the search indexer now; how many rows it indexed (None: another
        process's indexer was at work). Searches never need it: see store.pg_search."""
        return await self._call(self._index_step)

    def _index_step(self) -> int | None:
        with _translating(), self._pool.connection() as conn:
            return index_step(conn)

    def _open_pool(self) -> None:
        with _translating():
            self._pool.open(wait=True, timeout=self._connect_timeout_s)

    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def _run_once(self, fn: Callable[[Tx], T]) -> T:
        tx: PostgresTx | None = None
        try:
            with self._pool.connection() as conn, conn.transaction():
                tx = PostgresTx(conn, self.statement_timeout_ms, self._lanes)
                return fn(tx)
        except psycopg.Error as exc:  # at COMMIT or ROLLBACK, after fn
            raise _translate(exc, timed_out=tx is not None and tx.timed_out, lost=True) from exc
        except TransientStoreError as exc:
            if tx is not None and tx.timed_out:  # the aftermath of a cancelled statement
                raise StoreTimeoutError(str(exc), unit_lost=True) from exc
            raise

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        """Run ``fn(tx)`` in a pool thread in one transaction (see Store.run).

        Cancelling the awaiting task does not interrupt ``fn``: it finishes (commits or
        rolls back) in its thread.
        """
        if self._closed:
            raise StoreError("the store is closed")
        self._last_run = asyncio.get_running_loop().time()
        return await observed(
            "postgresql", retry_transient(lambda: self._call(lambda: self._run_once(fn)), retries)
        )

    async def close(self) -> None:
        """Close the pool and stop the threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._indexer is not None:
            self._indexer.cancel()
            with suppress(asyncio.CancelledError):
                await self._indexer
        await asyncio.to_thread(self._pool.close)
        self._executor.shutdown(wait=True)
        await asyncio.to_thread(self._lanes.close)
