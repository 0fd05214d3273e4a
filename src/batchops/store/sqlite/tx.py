"""One open SQLite transaction: the SQL of the SQLite store that differs from PostgreSQL's.

The statements that differ only in syntax are written once in :mod:`batchops.store.sql`
and mixed in; what is here differs in behaviour: record writes as multi-row statements
(see ``ROWS_PER_STATEMENT``), the deferred FTS5 index (:mod:`.fts`) and FTS5 search,
the field index hint, and no row locks (every transaction holds the write lock:
``BEGIN IMMEDIATE``, see :mod:`.writer`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from itertools import chain
from typing import Any

import orjson

from batchops._exceptions import StoreError, TransientStoreError
from batchops.store._beside import Lanes
from batchops.store._query import (
    duplicate_ids,
    field_index_name,
    final_versions,
    ids_by_collection,
    parse_filters,
    search_text,
    search_tokens,
)
from batchops.store.base import Dialect, DuplicateRecordError, EncodedRecords, RecordRow
from batchops.store.sql.dialect import SQLITE
from batchops.store.sql.idempotency import IdempotencySQL, IdempotencyStatements
from batchops.store.sql.jobs import JobsSQL, JobStatements
from batchops.store.sql.keys import KeysSQL, KeyStatements
from batchops.store.sql.records import COLS, RecordsSQL, RecordStatements, field_sql
from batchops.store.sql.uploads import UploadsSQL, UploadStatements
from batchops.store.sql.webhooks import WebhooksSQL, WebhookStatements
from batchops.store.sqlite.errors import translate, translating
from batchops.store.sqlite.fts import DeferredIndex
from batchops.store.sqlite.watch import StatementWatch

__all__ = ["ROWS_PER_STATEMENT", "Rows", "SQLiteTx"]

_R_COLS = ", ".join(f"r.{c.strip()}" for c in COLS.split(","))
_INSERT = f"INSERT INTO records ({COLS}, search_text) VALUES"
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
ROWS_PER_STATEMENT = 500
_ROW_9 = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INDEX_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"


def _dumps(value: Any) -> str:
    # str, not bytes: sqlite3 stores bytes as a BLOB, which SQLite's JSON functions reject.
    return orjson.dumps(value).decode()


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


_Keys = Callable[[], Sequence[tuple[str, str, str]]]
"""The (tenant, collection, id) keys of the rows an insert writes, built only on a clash."""


class Rows:
    """A statement's cursor whose reads are translated like the statement itself.

    sqlite3 steps a statement as its rows are read: ``execute`` runs it to the first row,
    each later row is another step. An error can therefore surface at ``fetchone`` — most
    often the statement watch's interrupt at a batch's deadline, which then lands after
    ``execute`` returned. Untranslated, it escaped the operation that read (a raw
    sqlite3 error is no store error the batch answers per operation) and failed the whole
    batch. ``try``/``except`` inline, not a context manager: reads are on every path.
    """

    __slots__ = ("_cur", "_tx")

    def __init__(self, cur: sqlite3.Cursor, tx: SQLiteTx) -> None:
        self._cur = cur
        self._tx = tx

    @property
    def rowcount(self) -> int:
        """Rows the statement changed (-1 for a query)."""
        return self._cur.rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        try:
            return self._cur.fetchone()
        except (sqlite3.Error, OverflowError) as exc:
            raise self._tx._translated(exc) from exc

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        try:
            return self._cur.fetchall()
        except (sqlite3.Error, OverflowError) as exc:
            raise self._tx._translated(exc) from exc

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _Clash(Exception):
    """A UNIQUE violation inside insert_records (private: becomes DuplicateRecordError)."""


class SQLiteTx(
    DeferredIndex, RecordsSQL, JobsSQL, UploadsSQL, WebhooksSQL, KeysSQL, IdempotencySQL
):
    """One open SQLite transaction (see :class:`batchops.store.base.Tx`)."""

    dialect: Dialect = "sqlite"
    sql_dialect = SQLITE
    _records_sql = RecordStatements(SQLITE)
    _jobs_sql = JobStatements(SQLITE)
    _uploads_sql = UploadStatements(SQLITE)
    _webhooks_sql = WebhookStatements(SQLITE)
    _keys_sql = KeyStatements(SQLITE)
    _idempotency_sql = IdempotencyStatements(SQLITE)

    def __init__(
        self,
        conn: sqlite3.Connection,
        watch: StatementWatch | None = None,
        *,
        lanes: Lanes | None = None,
        read_only: bool = False,
    ) -> None:
        self._conn = conn
        self._savepoints = 0
        self._watch = watch
        # The writer's: read connections for read_beside. ``read_only``: a read
        # connection's transaction (it cannot catch the full-text index up, see .fts).
        self._lanes = lanes
        self._read_only = read_only

    def _translating(self) -> AbstractContextManager[None]:
        return translating(self._conn, self._watch)

    def _translated(self, exc: BaseException) -> StoreError:
        fired = self._watch is not None and self._watch.fired
        return translate(exc, self._conn, interrupted=fired)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        try:
            return Rows(self._conn.execute(sql, params), self)
        except (sqlite3.Error, OverflowError) as exc:
            raise self._translated(exc) from exc

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Rows:
        try:
            return Rows(self._conn.executemany(sql, params), self)
        except (sqlite3.Error, OverflowError) as exc:
            raise self._translated(exc) from exc

    def _execute_rows(
        self, head: str, row: str, rows: Sequence[Sequence[Any]], tail: str = ""
    ) -> int:
        """Run ``head row, row, … tail`` over ``rows`` in multi-row statements (see
        ``ROWS_PER_STATEMENT``); returns the rows changed. Errors are not translated."""
        changed = 0
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            part = rows[start : start + ROWS_PER_STATEMENT]
            sql = _values_sql(head, row, len(part), tail)
            changed += self._conn.execute(sql, _flat(part)).rowcount
        return changed

    # Per dialect: SQLite bounds time with a watch thread and holds the write lock already.
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
        """Bound (or, None, free) the rest of this unit of work (see StatementWatch)."""
        if self._watch is not None:
            self._watch.narrow(None if seconds is None else time.monotonic() + seconds)

    def lock(self, name: str) -> None:
        """Nothing to take: the transaction holds the database's write lock."""

    def try_lock(self, name: str) -> bool:
        """Always taken: the transaction holds the database's write lock."""
        return True

    # -- records: per dialect (multi-row statements, deferred FTS5 index) -----------------
    def insert_records(self, rows: Sequence[RecordRow]) -> None:
        """Insert all rows (multi-row INSERTs; indexed later, see :mod:`.fts`).
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
                "",  # computed when the row is indexed (see :mod:`.fts`)
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

        step = 2 * ROWS_PER_STATEMENT
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
                # No FTS work: the new rows sit above the watermark until indexed (see .fts).
        except _Clash:
            # Now rolled back: existing_ids sees only what was there before this call.
            raise DuplicateRecordError(duplicate_ids(keys(), self.existing_ids)) from None

    def update_records(self, rows: Sequence[RecordRow]) -> None:
        """Write data, version, updated_at, deleted_at (and re-index changed text).

        A row given twice ends as its last version (as if written in order)."""
        if not rows:
            return
        final = {
            (r.tenant, r.collection, r.id): (r, search_text(r.data), before)
            for r, before in final_versions(rows)
        }
        watermark = self.fts_watermark()
        old: dict[tuple[str, str, str], tuple[int, str]] = {}
        for (tenant, collection), ids in ids_by_collection(rows).items():
            for id_, entry in self._fts_entries(tenant, collection, ids).items():
                old[(tenant, collection, id_)] = entry
        removed: list[tuple[int, str]] = []
        added: list[tuple[int, str]] = []
        for key, (_, text, _) in final.items():
            previous = old.get(key)
            # Rows above the watermark are not indexed yet; catch-up indexes their new text.
            if previous is not None and previous[0] <= watermark and previous[1] != text:
                removed.append(previous)
                added.append((previous[0], text))
        params = [
            (_dumps(r.data), r.version, r.updated_at, r.deleted_at, text, *key, before)
            for key, (r, text, before) in final.items()
        ]
        with self._translating():
            changed = self._execute_rows(_UPDATE, _ROW_9, params, _UPDATE_TAIL)
            if changed != len(params):
                # Nothing of this call may stay: the index changes below were not made yet.
                raise TransientStoreError(
                    f"a concurrent writer changed {len(params) - changed} of {len(params)} "
                    "records since they were read; the unit of work must run again"
                )
            self._fts_change(removed, added)

    def delete_records(self, tenant: str, collection: str, ids: Sequence[str]) -> int:
        """Remove rows for good (the shared DELETE, with the FTS index kept right)."""
        if not ids:
            return 0
        watermark = self.fts_watermark()
        entries = self._fts_entries(tenant, collection, ids)
        with self._translating():
            self._fts_change([e for e in entries.values() if e[0] <= watermark], [])
        removed = super().delete_records(tenant, collection, ids)
        self._fts_lower_watermark()
        return removed

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
            clause, values = self._records_sql.filter_sql(f, "r.")
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
        record = self._records_sql.record
        return [(record(row), float(row[8])) for row in rows], int(total)

    # -- field indexes (SQLite's own: the planner needs a hint) -----------------------------
    def _index_hint(self, name: str) -> str:
        # Without statistics SQLite's planner prefers the primary key's (tenant, collection)
        # prefix, i.e. a scan of the collection: name the field index when there is one.
        if self._execute(_INDEX_EXISTS, (name,)).fetchone():
            return f"INDEXED BY {name} "
        return ""

    def ensure_field_index(self, tenant: str, collection: str, path: str) -> None:
        """See :meth:`batchops.store.base.RecordsTx.ensure_field_index`."""
        expr, scope = field_sql(SQLITE, tenant, collection, path)
        self.set_statement_timeout(None)  # a build scans the whole collection
        self._execute(
            f"CREATE INDEX IF NOT EXISTS {field_index_name(tenant, collection, path)} "
            f"ON records ({expr}) WHERE {scope}"
        )
