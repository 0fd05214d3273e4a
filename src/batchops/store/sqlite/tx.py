"""The SQLite store: the embedded default.

One dedicated thread owns one connection, and a whole unit of work (``fn(tx)``) runs there in
ONE executor hop inside ``BEGIN IMMEDIATE … COMMIT`` (units that queue up meanwhile share
one, a savepoint each: group commit, see :meth:`SQLiteStore.run`). An awaited aiosqlite
statement costs ~85-190 µs on this machine, so per-statement hops would dominate a
100-operation batch.
``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never fails half-way with
"database is locked" on its first write; a busy database surfaces at BEGIN, where the whole
``fn`` can be retried safely.

Not done yet: reads serialise behind writes on the one thread. WAL allows concurrent
readers, so a second thread with its own read-only connection could serve read-only units
of work later.

The FTS5 index ``records_fts`` (external content over ``records.search_text``) is
maintained by explicit statements rather than triggers (measured on a 100k-row insert in
groups of 100: ~144k rows/s vs ~40k rows/s with an AFTER INSERT trigger), and *deferred*:
indexing cost ~40 µs of a ~64 µs create in a 100-op batch, so inserts do not index at all.
``fts_watermark.indexed_rowid`` says how far the index goes; every row above it is pending.

- insert: no FTS work and no search text (new rows get rowids above the watermark; their
  ``search_text`` is computed from ``data`` when they are indexed);
- update / hard delete: index maintenance only for rows at or below the watermark;
  a hard delete lowers the watermark when it removes the highest rowids, so a reused rowid
  can never hide below it;
- search: first indexes every pending row, in the same transaction (read-your-writes);
- idle: :class:`SQLiteStore` indexes pending rows in chunks when no work has come for a
  moment, so a search after a big import rarely pays for the whole catch-up.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any, Generic, TypeVar

import orjson

from batchops._exceptions import (
    StoreError,
    StoreInputError,
    StoreTimeoutError,
    TransientStoreError,
)
from batchops.store._jobs_sqlite import SQLiteJobsMixin
from batchops.store._query import (
    FilterPath,
    duplicate_ids,
    ids_by_collection,
    parse_filters,
    search_text,
    search_tokens,
)
from batchops.store._retry import retry_transient
from batchops.store._shared import SharedSQL
from batchops.store._url import sqlite_url
from batchops.store._webhooks import WebhooksSQL
from batchops.store.base import (
    DEFAULT_STATEMENT_TIMEOUT_MS,
    Dialect,
    DuplicateRecordError,
    EncodedRecords,
    IdempotencyRow,
    RecordRow,
    Tx,
)

__all__ = ["SQLiteStore", "SQLiteTx"]

T = TypeVar("T")

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

_COLS = "tenant, collection, id, data, version, created_at, updated_at, deleted_at"
_R_COLS = ", ".join(f"r.{c.strip()}" for c in _COLS.split(","))

# ``id IN (SELECT value FROM json_each(?))`` binds any number of ids as ONE parameter, so
# the statement text is constant (the sqlite3 statement cache hits) and there is no limit
# on the number of host parameters.
_IDS = "tenant = ? AND collection = ? AND id IN (SELECT value FROM json_each(?))"

_INSERT = f"INSERT INTO records ({_COLS}, search_text) VALUES"
_FTS_ADD = "INSERT INTO records_fts (rowid, search_text) VALUES"
_WATERMARK = "SELECT indexed_rowid FROM fts_watermark WHERE id = 1"
_TEXT_CATCH_UP = (
    "UPDATE records SET search_text = batchops_search_text(data) WHERE rowid > ? AND rowid <= ?"
)
_FTS_CATCH_UP = (
    "INSERT INTO records_fts (rowid, search_text) SELECT rowid, search_text FROM records "
    "WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
)
_FTS_REMOVE = "INSERT INTO records_fts (records_fts, rowid, search_text) VALUES"
_UPDATE = (
    "UPDATE records SET data = v.column1, version = v.column2, updated_at = v.column3, "
    "deleted_at = v.column4, search_text = v.column5 FROM (VALUES"
)
# The version predicate: see Tx.update_records (SQLite's write lock makes a miss
# impossible today; the check keeps the contract the same on both backends).
_UPDATE_TAIL = (
    ") AS v WHERE records.tenant = v.column6 AND records.collection = v.column7 "
    "AND records.id = v.column8 AND records.version = v.column9"
)
# Multi-row statements, not executemany: the sqlite3 module releases the GIL around every
# sqlite3_step, i.e. once per row of an executemany, and must win it back each time. With the
# event loop busy in the other thread that hand-off waits up to the switch interval (5 ms):
# measured, 100-row groups with a busy Python thread beside them ran at ~900 rows/s with
# executemany and ~65k rows/s as one multi-row INSERT (~110k vs ~200k rows/s when idle).
# 500 rows x 9 columns stays well under SQLite's 32,766 host parameters.
_ROWS_PER_STATEMENT = 500
_ROW_9 = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_ROW_2 = "(?, ?)"
_ROW_DELETE = "('delete', ?, ?)"
_IDEM_COLS = "tenant, key, fingerprint, state, created_at, status_code, response, owner"


_SQLITE_INTERRUPT = 9
_SQLITE_TOOBIG = 18
_SQLITE_RANGE = 25
# Messages of SQLITE_ERROR that a request's own shape causes (a statement too big or too
# deep for SQLite's limits): retrying sends the same statement again.
_INPUT_MESSAGES = (
    "expression tree is too large",
    "too many sql variables",
    "parser stack overflow",
    "pattern too complex",
    "too many terms",
    "string or blob too big",
    "too many columns",
)


def _translate(
    exc: BaseException, conn: sqlite3.Connection | None = None, *, interrupted: bool = False
) -> StoreError:
    """THE mapping of sqlite3 errors (see batchops._exceptions.StoreError for what each
    class answers): busy/locked → transient; interrupted (the statement time bound) →
    timeout; limits a request's own size or values hit → input; the rest → StoreError.

    An interrupted write rolls SQLite's whole transaction back (sqlite3_interrupt's
    contract): the timeout then says ``unit_lost``, judged by ``conn`` when it is known,
    and assumed when it is not. ``interrupted``: the statement watch interrupted the
    statement that failed, whatever SQLite's message (an interrupt inside a virtual
    table's constructor says "vtable constructor failed")."""
    if isinstance(exc, OverflowError):  # a Python int that SQLite's INTEGER cannot bind
        return StoreInputError(f"SQLite cannot take a value: {exc}")
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    message = str(exc)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in message:
        return TransientStoreError(f"SQLite database is busy: {message}")
    if interrupted or primary == _SQLITE_INTERRUPT or message == "interrupted":
        lost = conn is None or not conn.in_transaction
        return StoreTimeoutError(
            f"SQLite interrupted a statement at its time bound: {message}", unit_lost=lost
        )
    lowered = message.lower()
    if (
        primary in (_SQLITE_TOOBIG, _SQLITE_RANGE)
        or isinstance(exc, sqlite3.DataError)
        or any(m in lowered for m in _INPUT_MESSAGES)
    ):
        return StoreInputError(f"SQLite refused a value: {message}")
    return StoreError(f"SQLite error: {message}")


@contextmanager
def _translating(
    conn: sqlite3.Connection | None = None, watch: _StatementWatch | None = None
) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OverflowError) as exc:
        interrupted = watch is not None and watch.fired
        raise _translate(exc, conn, interrupted=interrupted) from exc


def _dumps(value: Any) -> str:
    # str, not bytes: sqlite3 stores bytes as a BLOB, which SQLite's JSON functions reject.
    return orjson.dumps(value).decode()


def _record(row: Sequence[Any]) -> RecordRow:
    return RecordRow(row[0], row[1], row[2], orjson.loads(row[3]), row[4], row[5], row[6], row[7])


def _filter_sql(f: FilterPath, prefix: str = "") -> tuple[str, list[Any]]:
    """SQL for one equality filter. ``json_type`` keeps JSON types apart: ``true`` matches
    JSON true only (not 1), ``"1"`` matches the string only, numbers compare as numbers
    (1 equals 1.0), and ``None`` matches an explicit null (not a missing key)."""
    path = f.sqlite_path()
    data = f"{prefix}data"
    value = f.value
    if value is None:
        return f"json_type({data}, ?) = 'null'", [path]
    if isinstance(value, bool):
        return f"json_type({data}, ?) = ?", [path, "true" if value else "false"]
    kinds = "'integer', 'real'" if isinstance(value, int | float) else "'text'"
    return (
        f"json_type({data}, ?) IN ({kinds}) AND json_extract({data}, ?) = ?",
        [path, path, value],
    )


@lru_cache(maxsize=128)
def _values_sql(head: str, row: str, count: int, tail: str) -> str:
    """``head`` + ``count`` copies of ``row`` (e.g. ``(?, ?)``) + ``tail``."""
    return f"{head} {', '.join([row] * count)} {tail}"


@lru_cache(maxsize=64)
def _insert_shared_sql(count: int) -> str:
    """An INSERT of ``count`` rows whose tenant, collection, version, created_at, updated_at
    and deleted_at are parameters 1-6, bound once; row i's id and data are 7+2i, 8+2i."""
    rows = ", ".join(
        f"(?1, ?2, ?{7 + 2 * i}, ?{8 + 2 * i}, ?3, ?4, ?5, ?6, '')" for i in range(count)
    )
    return f"{_INSERT} {rows}"


def _flat(rows: Iterable[Sequence[Any]]) -> list[Any]:
    return [value for row in rows for value in row]


def _ids_json(ids: Sequence[str]) -> str:
    return orjson.dumps(list(ids)).decode()


_Keys = Callable[[], Sequence[tuple[str, str, str]]]
"""The (tenant, collection, id) keys of the rows an insert writes, built only on a clash."""


class _Clash(Exception):
    """A UNIQUE violation inside insert_records (private: becomes DuplicateRecordError)."""


class SQLiteTx(SQLiteJobsMixin, WebhooksSQL, SharedSQL):
    """One open SQLite transaction (see :class:`batchops.store.base.Tx`)."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, watch: _StatementWatch | None = None) -> None:
        self._conn = conn
        self._savepoints = 0
        self._watch = watch

    def _translating(self) -> AbstractContextManager[None]:
        return _translating(self._conn, self._watch)

    def _translated(self, exc: BaseException) -> StoreError:
        fired = self._watch is not None and self._watch.fired
        return _translate(exc, self._conn, interrupted=fired)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._translating():
            return self._conn.execute(sql, params)

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        with self._translating():
            return self._conn.executemany(sql, params)

    def _execute_rows(
        self, head: str, row: str, rows: Sequence[Sequence[Any]], tail: str = ""
    ) -> int:
        """Run ``head row, row, … tail`` over ``rows`` in multi-row statements (see
        ``_ROWS_PER_STATEMENT``); returns the rows changed. Errors are not translated."""
        changed = 0
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            part = rows[start : start + _ROWS_PER_STATEMENT]
            sql = _values_sql(head, row, len(part), tail)
            changed += self._conn.execute(sql, _flat(part)).rowcount
        return changed

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested savepoint: rolled back if the block raises, released otherwise."""
        self._savepoints += 1
        name = f"batchops_sp{self._savepoints}"
        self._execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # else an interrupted write took it all back
                self._execute(f"ROLLBACK TO {name}")
                self._execute(f"RELEASE {name}")
            raise
        self._execute(f"RELEASE {name}")

    def set_statement_timeout(self, seconds: float | None) -> None:
        """Bound (or, None, free) the rest of this unit of work (see _StatementWatch)."""
        if self._watch is not None:
            self._watch.narrow(None if seconds is None else time.monotonic() + seconds)

    def lock(self, name: str) -> None:
        """Nothing to take: the transaction holds the database's write lock."""

    # -- records ---------------------------------------------------------------------------
    def insert_records(self, rows: Sequence[RecordRow]) -> None:
        """Insert all rows (multi-row INSERTs; indexed later, see the module docstring).
        DuplicateRecordError leaves nothing written by this call."""
        if not rows:
            return
        first = rows[0]
        shared = (
            first.tenant,
            first.collection,
            first.version,
            first.created_at,
            first.updated_at,
            first.deleted_at,
        )
        if all(
            (r.tenant, r.collection, r.version, r.created_at, r.updated_at, r.deleted_at) == shared
            for r in rows
        ):
            # The common case (every create path: one collection, one timestamp): the shared
            # columns are bound once per statement, two values per row (~0.5 µs less a row).
            pairs = [value for r in rows for value in (r.id, _dumps(r.data))]
            self._insert_new(shared, pairs, lambda: [(r.tenant, r.collection, r.id) for r in rows])
            return
        params = [
            (
                r.tenant,
                r.collection,
                r.id,
                _dumps(r.data),
                r.version,
                r.created_at,
                r.updated_at,
                r.deleted_at,
                "",  # computed when the row is indexed (see the module docstring)
            )
            for r in rows
        ]
        self._insert_in_savepoint(
            lambda: self._execute_rows(_INSERT, _ROW_9, params),
            lambda: [(r.tenant, r.collection, r.id) for r in rows],
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
        """See :meth:`Tx.insert_encoded` (the search texts are not used: SQLite computes
        them when it indexes)."""
        if not ids:
            return
        pairs = list(chain.from_iterable(zip(ids, records.json, strict=True)))
        self._insert_new(
            (tenant, collection, 1, now, now, None),
            pairs,
            lambda: [(tenant, collection, id_) for id_ in ids],
        )

    def _insert_new(self, shared: tuple[Any, ...], pairs: list[Any], keys: _Keys) -> None:
        """``pairs`` = id, data, id, data…; ``shared`` the other columns of every row;
        ``keys()`` the rows' keys, only built if an id clashes."""

        step = 2 * _ROWS_PER_STATEMENT
        if len(pairs) <= step:
            # One statement needs no savepoint: SQLite undoes a statement that fails on a
            # UNIQUE constraint by itself. Two statements fewer, and two fewer GIL
            # hand-offs in the database thread, for every batch of creates.
            try:
                self._conn.execute(_insert_shared_sql(len(pairs) // 2), [*shared, *pairs])
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" not in str(exc):
                    raise self._translated(exc) from exc
                raise DuplicateRecordError(duplicate_ids(keys(), self.existing_ids)) from None
            except sqlite3.Error as exc:
                raise self._translated(exc) from exc
            return

        def write() -> None:
            for start in range(0, len(pairs), step):
                part = pairs[start : start + step]
                self._conn.execute(_insert_shared_sql(len(part) // 2), [*shared, *part])

        self._insert_in_savepoint(write, keys)

    def _insert_in_savepoint(self, write: Callable[[], object], keys: _Keys) -> None:
        """Run ``write`` in a savepoint; a UNIQUE clash rolls it back (nothing of this call
        stays written) and becomes DuplicateRecordError naming the ``keys`` that clash."""
        try:
            with self.savepoint():
                try:
                    write()
                except sqlite3.IntegrityError as exc:
                    if "UNIQUE" not in str(exc):
                        raise self._translated(exc) from exc
                    raise _Clash from None  # leaving the savepoint with it rolls it back
                except sqlite3.Error as exc:
                    raise self._translated(exc) from exc
                # No FTS work: the new rows sit above the watermark until indexed (module).
        except _Clash:
            # Now rolled back: existing_ids sees only what was there before this call.
            raise DuplicateRecordError(duplicate_ids(keys(), self.existing_ids)) from None

    def existing_ids(self, tenant: str, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` exist (soft-deleted included)."""
        if not ids:
            return set()
        cur = self._execute(
            f"SELECT id FROM records WHERE {_IDS}", (tenant, collection, _ids_json(ids))
        )
        return {row[0] for row in cur}

    def get_records(
        self,
        tenant: str,
        collection: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        for_update: bool = False,
    ) -> dict[str, RecordRow]:
        """The rows found, by id (``for_update`` needs nothing: the transaction holds the
        write lock)."""
        if not ids:
            return {}
        cur = self._execute(
            f"SELECT {_COLS} FROM records WHERE {_IDS} AND (? OR deleted_at IS NULL)",
            (tenant, collection, _ids_json(ids), include_deleted),
        )
        return {row[2]: _record(row) for row in cur}

    def _fts_entries(
        self, tenant: str, collection: str, ids: Sequence[str]
    ) -> dict[str, tuple[int, str]]:
        cur = self._execute(
            f"SELECT id, rowid, search_text FROM records WHERE {_IDS}",
            (tenant, collection, _ids_json(ids)),
        )
        return {row[0]: (row[1], row[2]) for row in cur}

    def update_records(self, rows: Sequence[RecordRow]) -> None:
        """Write data, version, updated_at, deleted_at (and re-index changed text).

        A row given twice ends as its last version (as if written in order)."""
        if not rows:
            return
        final: dict[tuple[str, str, str], tuple[RecordRow, str]] = {}
        before: dict[tuple[str, str, str], int] = {}
        for r in rows:
            key = (r.tenant, r.collection, r.id)
            final[key] = (r, search_text(r.data))
            before.setdefault(key, r.version - 1)
        watermark = self.fts_watermark()
        old: dict[tuple[str, str, str], tuple[int, str]] = {}
        for (tenant, collection), ids in ids_by_collection(rows).items():
            for id_, entry in self._fts_entries(tenant, collection, ids).items():
                old[(tenant, collection, id_)] = entry
        removed: list[tuple[int, str]] = []
        added: list[tuple[int, str]] = []
        for key, (_, text) in final.items():
            previous = old.get(key)
            # Rows above the watermark are not indexed yet; catch-up indexes their new text.
            if previous is not None and previous[0] <= watermark and previous[1] != text:
                removed.append(previous)
                added.append((previous[0], text))
        params = [
            (_dumps(r.data), r.version, r.updated_at, r.deleted_at, text, *key, before[key])
            for key, (r, text) in final.items()
        ]
        with self._translating():
            changed = self._execute_rows(_UPDATE, _ROW_9, params, _UPDATE_TAIL)
            if changed != len(params):
                # Nothing of this call may stay: the index changes below were not made yet.
                raise TransientStoreError(
                    f"a concurrent writer changed {len(params) - changed} of {len(params)} "
                    "records since they were read; the unit of work must run again"
                )
            self._execute_rows(_FTS_REMOVE, _ROW_DELETE, removed)
            self._execute_rows(_FTS_ADD, _ROW_2, added)

    def delete_records(self, tenant: str, collection: str, ids: Sequence[str]) -> int:
        """Remove rows for good; returns how many were removed."""
        if not ids:
            return 0
        watermark = self.fts_watermark()
        entries = self._fts_entries(tenant, collection, ids)
        with self._translating():
            self._execute_rows(
                _FTS_REMOVE, _ROW_DELETE, [e for e in entries.values() if e[0] <= watermark]
            )
        cur = self._execute(
            f"DELETE FROM records WHERE {_IDS}", (tenant, collection, _ids_json(ids))
        )
        # SQLite hands out max(rowid)+1: once the highest rows are gone, their rowids may be
        # reused, and a reused rowid must land above the watermark to be indexed.
        self._execute(
            "UPDATE fts_watermark SET indexed_rowid = "
            "min(indexed_rowid, (SELECT coalesce(max(rowid), 0) FROM records)) WHERE id = 1"
        )
        return cur.rowcount

    def fts_watermark(self) -> int:
        """The highest rowid the full-text index covers."""
        row = self._execute(_WATERMARK).fetchone()
        return int(row[0]) if row else 0

    def index_pending(self, limit: int | None = None) -> int:
        """Index up to ``limit`` pending rows (all when None); returns how many.

        Not bound by the statement limit: after a big import the catch-up is long, and a
        catch-up cut short would be rolled back and started again by every search."""
        watermark = self.fts_watermark()
        top = self._execute("SELECT coalesce(max(rowid), 0) FROM records").fetchone()[0]
        if top <= watermark:
            return 0
        if limit is not None:
            top = min(top, watermark + limit)
        with self._watch.suspended() if self._watch is not None else nullcontext():
            self._execute(_TEXT_CATCH_UP, (watermark, top))
            cur = self._execute(_FTS_CATCH_UP, (watermark, top))
        self._execute("UPDATE fts_watermark SET indexed_rowid = ? WHERE id = 1", (top,))
        return max(cur.rowcount, 0)

    def list_records(
        self,
        tenant: str,
        collection: str,
        *,
        filters: Mapping[str, Any],
        after_id: str | None,
        limit: int,
        for_update: bool = False,
    ) -> list[RecordRow]:
        """Live records ordered by id, after ``after_id``, matching every filter
        (``for_update``: see :meth:`get_records`)."""
        sql = [f"SELECT {_COLS} FROM records WHERE tenant = ? AND collection = ?"]
        params: list[Any] = [tenant, collection]
        sql.append("AND deleted_at IS NULL")
        if after_id is not None:
            sql.append("AND id > ?")
            params.append(after_id)
        for f in parse_filters(filters):
            clause, values = _filter_sql(f)
            sql.append(f"AND {clause}")
            params.extend(values)
        sql.append("ORDER BY id LIMIT ?")
        params.append(max(limit, 0))
        return [_record(row) for row in self._execute(" ".join(sql), params)]

    def search_records(
        self,
        tenant: str,
        collection: str,
        *,
        query: str,
        filters: Mapping[str, Any],
        limit: int,
    ) -> tuple[list[tuple[RecordRow, float]], int]:
        """FTS5 search ranked by bm25 (score = -bm25, higher is better).

        Every word of ``query`` must match; words are quoted, so FTS syntax in user input
        is just text. A query without words matches nothing. The bm25 statistics (IDF)
        are computed over the whole index, all tenants together.
        """
        tokens = search_tokens(query)
        parsed = parse_filters(filters)
        if not tokens:
            return [], 0
        self.index_pending()
        match = " ".join(f'"{t}"' for t in tokens)
        where = ["records_fts MATCH ?", "r.tenant = ?", "r.collection = ?", "r.deleted_at IS NULL"]
        params: list[Any] = [match, tenant, collection]
        for f in parsed:
            clause, values = _filter_sql(f, "r.")
            where.append(clause)
            params.extend(values)
        # bm25() cannot appear next to a window function, hence the materialised CTE.
        cte = (
            f"WITH m AS MATERIALIZED (SELECT {_R_COLS}, -bm25(records_fts) AS score "
            f"FROM records_fts JOIN records r ON r.rowid = records_fts.rowid "
            f"WHERE {' AND '.join(where)}) "
        )
        if limit <= 0:
            total = self._execute(cte + "SELECT count(*) FROM m", params).fetchone()[0]
            return [], int(total)
        rows = self._execute(
            cte + "SELECT *, count(*) OVER () FROM m ORDER BY score DESC, id LIMIT ?",
            [*params, limit],
        ).fetchall()
        total = rows[0][9] if rows else 0
        return [(_record(row), float(row[8])) for row in rows], int(total)

    # -- idempotency -----------------------------------------------------------------------
    def _idempotency_row(self, tenant: str, key: str) -> IdempotencyRow | None:
        row = self._execute(
            f"SELECT {_IDEM_COLS} FROM idempotency_keys WHERE tenant = ? AND key = ?",
            (tenant, key),
        ).fetchone()
        return IdempotencyRow(*row) if row else None

    def idempotency_claim(
        self,
        tenant: str,
        key: str,
        fingerprint: str,
        *,
        now: float,
        stale_after_s: float,
        owner: str = "",
    ) -> IdempotencyRow | None:
        """Claim ``key`` (None) or return its row; stale in-flight claims are taken over.

        Race-free because run() holds SQLite's write lock (BEGIN IMMEDIATE)."""
        current = self._idempotency_row(tenant, key)
        if current is None:
            self._execute(
                f"INSERT INTO idempotency_keys ({_IDEM_COLS}) "
                "VALUES (?, ?, ?, 'in_flight', ?, NULL, NULL, ?)",
                (tenant, key, fingerprint, now, owner or None),
            )
            return None
        return self._claim_decision(
            current, fingerprint, now=now, stale_after_s=stale_after_s, owner=owner
        )


class SQLiteStore:
    """A SQLite file in WAL mode, served by one dedicated thread.

    Open it with :func:`batchops.store.open_store` (which also runs migrations) or
    :meth:`open`. ``busy_timeout_ms`` is how long SQLite itself waits for another
    process's write lock before run() sees a TransientStoreError.
    """

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    ) -> None:
        if statement_timeout_ms < 0:
            raise ValueError(f"statement_timeout_ms must be >= 0, got {statement_timeout_ms}")
        self.path = path
        self.url = sqlite_url(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self._watch = _StatementWatch(statement_timeout_ms / 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchops-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._last_run = 0.0
        self._maybe_pending = True
        self._indexer: asyncio.Task[None] | None = None
        # Units of work waiting for the database thread (group commit, see run()).
        self._queue: deque[_Unit[Any]] = deque()
        self._queue_lock = threading.Lock()
        self._draining = False
        self._checkpointer = _Checkpointer(path)

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    ) -> SQLiteStore:
        """Connect (in the database thread). Does not run migrations."""
        store = cls(
            path, busy_timeout_ms=busy_timeout_ms, statement_timeout_ms=statement_timeout_ms
        )
        try:
            await store._call(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
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
                    lambda: self._run_once(
                        lambda tx: _as_sqlite(tx).index_pending(self.INDEX_CHUNK)
                    )
                )
            except (StoreError, RuntimeError):
                continue  # busy or closing: try again on the next tick
            if indexed == 0:
                self._maybe_pending = False

    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def _connect(self) -> None:
        with _translating():
            # isolation_level=None: the sqlite3 module must not open transactions behind
            # our back; run() issues BEGIN IMMEDIATE / COMMIT itself.
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
                # Checkpoints run in a thread of their own (_Checkpointer); the writer's
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

    def _run_once(self, fn: Callable[[Tx], T]) -> T:
        with self._transaction() as conn, self._watch.unit(conn), _translating(conn, self._watch):
            # _translating: rows are read from a cursor after the statement that made it,
            # so an error while reading them (an interrupt) surfaces here, untranslated.
            return fn(SQLiteTx(conn, self._watch))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``, then COMMIT when the block ends, ROLLBACK if it raises."""
        conn = self._conn
        if conn is None:
            raise StoreError("the store is closed")
        with _translating():
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            with _translating():
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        self._checkpointer.wake()

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        """Run ``fn(tx)`` in the database thread in one transaction (see Store.run).

        Cancelling the awaiting task does not interrupt ``fn`` once it has started: it
        finishes (commits or rolls back) in the thread. A unit cancelled while still
        queued does not run.

        Group commit: units that queue up while the thread is busy run together in ONE
        transaction, each in its own savepoint, and commit together (a commit was ~40% of
        the database thread's time for a 100-create batch). A unit that raises is rolled
        back to its savepoint and gets its exception; the others are unaffected. A failed
        BEGIN or COMMIT fails every unit of the group, as it would have failed each alone.
        """
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        self._last_run = loop.time()
        self._maybe_pending = True
        return await retry_transient(lambda: self._enqueue(loop, fn), retries)

    def _enqueue(self, loop: asyncio.AbstractEventLoop, fn: Callable[[Tx], T]) -> Awaitable[T]:
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

    # At most this many units commit together, so one commit never waits on a long queue.
    GROUP_MAX = 16

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
                outcomes = [(True, self._run_once(units[0].fn))]
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
                        outcomes.append((True, self._run_once(unit.fn)))
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
                with _translating():
                    conn.execute("SAVEPOINT batchops_unit")
                try:
                    with self._watch.unit(conn), _translating(conn, self._watch):
                        result = unit.fn(SQLiteTx(conn, self._watch))
                except BaseException as exc:
                    if not conn.in_transaction:
                        raise _GroupLost(position, exc) from exc
                    with _translating():
                        conn.execute("ROLLBACK TO batchops_unit")
                        conn.execute("RELEASE batchops_unit")
                    outcomes.append((False, exc))
                    continue
                with _translating():
                    conn.execute("RELEASE batchops_unit")
                outcomes.append((True, result))
        return outcomes

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                # Cheap (usually a no-op); keeps query-planner statistics fresh.
                conn.execute("PRAGMA optimize")
            with suppress(sqlite3.Error):
                # Leave the database file whole and the WAL empty.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    async def close(self) -> None:
        """Close the connection and stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._indexer is not None:
            self._indexer.cancel()
            with suppress(asyncio.CancelledError):
                await self._indexer
        await asyncio.to_thread(self._checkpointer.stop)
        await asyncio.to_thread(self._watch.stop)
        await self._call(self._close_conn)
        self._executor.shutdown(wait=True)


WAL_SAFETY_PAGES = 16_384
"""The writer checkpoints by itself only past this many WAL pages (64 MB of 4 KB pages)."""

WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
"""A WAL file larger than this is truncated back to it when the WAL restarts."""


class _Checkpointer:
    """Copies the WAL back into the database file from a thread of its own.

    Why: SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold,
    on the writer thread, which is the serial section of every write. Measured here with
    100k-row loads of 2,500-row transactions: ~570k rows/s with the automatic checkpoint,
    ~840k with PASSIVE checkpoints from another thread (the copying then runs on the other
    core). A PASSIVE checkpoint never blocks the writer. Under a sustained load the WAL
    may not restart (it restarts when a write begins after a complete checkpoint), so the
    writer keeps an automatic checkpoint at WAL_SAFETY_PAGES as a bound.
    """

    INTERVAL_S = 0.05  # at most this often

    def __init__(self, path: str) -> None:
        self.path = path
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="batchops-sqlite-checkpoint", daemon=True
        )

    def start(self) -> None:
        """Start the thread (the database must exist: the store has connected)."""
        self._thread.start()

    def wake(self) -> None:
        """Something was committed: checkpoint soon."""
        self._dirty.set()

    def stop(self) -> None:
        """Stop the thread (blocking; the store's close() runs it off the event loop)."""
        self._stop.set()
        self._dirty.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            while True:
                self._dirty.wait()
                if self._stop.is_set():
                    return
                self._dirty.clear()
                with suppress(sqlite3.Error):  # busy or closing: the next commit retries
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if self._stop.wait(self.INTERVAL_S):
                    return
        finally:
            conn.close()


class _StatementWatch:
    """Cancels the writer's statement once its unit of work runs past its time bound.

    Why not a progress handler: that calls back into Python every N SQLite instructions,
    and each call-back must win the GIL from the event loop (the hand-off that made
    ``executemany`` ~100x slower, see ``_ROWS_PER_STATEMENT``). Here the writer only
    stores its unit's deadline (an attribute write at each start and end), and a thread of
    its own wakes every ``POLL_S`` — or at a nearer deadline a unit asked for — and calls
    ``sqlite3_interrupt`` (thread-safe) if that same unit is still running past it. A
    lock makes "same unit" exact: the writer cannot move to the next unit while the
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


class _GroupLost(Exception):
    """Unit ``position`` of a group commit failed in a way that rolled the whole shared
    transaction back (SQLite does when it interrupts a write), with ``error``."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(f"unit {position} lost the group's transaction")
        self.position = position
        self.error = error


def _as_sqlite(tx: Tx) -> SQLiteTx:
    assert isinstance(tx, SQLiteTx)
    return tx


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
