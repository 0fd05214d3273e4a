"""The jobs tables on SQLite: the job methods of :class:`batchops.store.sqlite.SQLiteTx`.

A mixin so the jobs SQL sits apart from the records hot path. Every ``run(fn)`` on SQLite
holds the write lock (``BEGIN IMMEDIATE``), so claiming a job needs no row locks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from batchops.store._query import field_index_name, parse_filters, sql_literal
from batchops.store.base import JobRow

__all__ = ["SQLiteJobsMixin"]

_JOB_COLS = (
    "id, tenant, type, state, collection, options, created_at, total, processed, succeeded, "
    "failed, checkpoint, revision, cancel_requested, worker, heartbeat_at, started_at, "
    "finished_at, error"
)
_SAVE = (
    "UPDATE jobs SET state = ?, total = ?, processed = ?, succeeded = ?, failed = ?, "
    "checkpoint = ?, revision = ?, cancel_requested = ?, worker = ?, heartbeat_at = ?, "
    "started_at = ?, finished_at = ?, error = ? WHERE id = ?"
)


def _job(row: Sequence[Any]) -> JobRow:
    values = list(row)
    values[5] = orjson.loads(values[5])
    values[13] = bool(values[13])
    values[18] = orjson.loads(values[18]) if values[18] is not None else None
    return JobRow(*values)


def _json_path(path: str) -> str:
    return "$" + "".join(f'."{segment}"' for segment in path.split("."))


def _field_sql(tenant: str, collection: str, path: str) -> tuple[str, str]:
    """(the field's text, the collection's live records) with literals only: SQLite uses a
    partial expression index only for a query with the same expression and predicate."""
    expr = f"CAST(json_extract(data, {sql_literal(_json_path(path))}) AS TEXT)"
    scope = (
        f"tenant = {sql_literal(tenant)} AND collection = {sql_literal(collection)} "
        "AND deleted_at IS NULL"
    )
    return expr, scope


class SQLiteJobsMixin:
    """Job methods of the SQLite transaction (see :class:`batchops.store.base.Tx`)."""

    if TYPE_CHECKING:

        def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...

        def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> sqlite3.Cursor: ...

        def set_statement_timeout(self, seconds: float | None) -> None: ...

    def insert_job(self, row: JobRow) -> None:
        """Store a new job."""
        self._execute(
            f"INSERT INTO jobs ({_JOB_COLS}) VALUES ({', '.join('?' * 19)})",
            (
                row.id,
                row.tenant,
                row.type,
                row.state,
                row.collection,
                orjson.dumps(row.options).decode(),
                row.created_at,
                row.total,
                row.processed,
                row.succeeded,
                row.failed,
                row.checkpoint,
                row.revision,
                int(row.cancel_requested),
                row.worker,
                row.heartbeat_at,
                row.started_at,
                row.finished_at,
                orjson.dumps(row.error).decode() if row.error is not None else None,
            ),
        )

    def get_job(
        self, job_id: str, *, tenant: str | None = None, for_update: bool = False
    ) -> JobRow | None:
        """The job (of ``tenant`` when given); the write lock is held already."""
        row = self._execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE id = ? AND (? IS NULL OR tenant = ?)",
            (job_id, tenant, tenant),
        ).fetchone()
        return _job(row) if row else None

    def save_job(self, row: JobRow) -> None:
        """Write every mutable column of an existing job."""
        self._execute(
            _SAVE,
            (
                row.state,
                row.total,
                row.processed,
                row.succeeded,
                row.failed,
                row.checkpoint,
                row.revision,
                int(row.cancel_requested),
                row.worker,
                row.heartbeat_at,
                row.started_at,
                row.finished_at,
                orjson.dumps(row.error).decode() if row.error is not None else None,
                row.id,
            ),
        )

    def list_jobs(
        self,
        tenant: str,
        *,
        state: str | None = None,
        type: str | None = None,
        limit: int = 100,
    ) -> list[JobRow]:
        """A tenant's jobs, newest first."""
        cur = self._execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE tenant = ? AND (? IS NULL OR state = ?) "
            "AND (? IS NULL OR type = ?) ORDER BY created_at DESC, id DESC LIMIT ?",
            (tenant, state, state, type, type, max(limit, 0)),
        )
        return [_job(row) for row in cur]

    def claim_job(self, worker: str, *, now: float, lease_s: float) -> JobRow | None:
        """Take the oldest queued job, or a running one whose lease ran out."""
        row = self._execute(
            "SELECT id FROM jobs WHERE state = 'queued' "
            "OR (state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)) "
            "ORDER BY created_at, id LIMIT 1",
            (now - lease_s,),
        ).fetchone()
        if row is None:
            return None
        self._execute(
            "UPDATE jobs SET state = 'running', worker = ?, heartbeat_at = ?, "
            "revision = revision + 1 WHERE id = ?",
            (worker, now, row[0]),
        )
        return self.get_job(row[0])

    def heartbeat_jobs(self, worker: str, *, now: float) -> None:
        """Renew ``worker``'s lease on its running jobs."""
        self._execute(
            "UPDATE jobs SET heartbeat_at = ? WHERE worker = ? AND state = 'running'",
            (now, worker),
        )

    def release_jobs(self, worker: str) -> int:
        """Put ``worker``'s running jobs back in the queue."""
        cur = self._execute(
            "UPDATE jobs SET state = 'queued', worker = NULL, heartbeat_at = NULL, "
            "revision = revision + 1 "
            "WHERE worker = ? AND state = 'running'",
            (worker,),
        )
        return cur.rowcount

    def find_ids_by_field(
        self, tenant: str, collection: str, path: str, values: Sequence[str]
    ) -> dict[str, str]:
        """Live records whose field at ``path`` has one of ``values`` (as text)."""
        if not values:
            return {}
        expr, scope = _field_sql(tenant, collection, path)
        name = field_index_name(tenant, collection, path)
        # Without statistics SQLite's planner prefers the primary key's (tenant, collection)
        # prefix, i.e. a scan of the collection: name the field index when there is one.
        indexed = self._execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
        ).fetchone()
        cur = self._execute(
            f"SELECT id, {expr} FROM records {f'INDEXED BY {name} ' if indexed else ''}"
            f"WHERE {scope} AND {expr} IN (SELECT value FROM json_each(?)) ORDER BY id",
            (orjson.dumps(list(values)).decode(),),
        )
        return {row[1]: row[0] for row in cur}

    def ensure_field_index(self, tenant: str, collection: str, path: str) -> None:
        """See :meth:`batchops.store.base.Tx.ensure_field_index`."""
        expr, scope = _field_sql(tenant, collection, path)
        self.set_statement_timeout(None)  # a build scans the whole collection
        self._execute(
            f"CREATE INDEX IF NOT EXISTS {field_index_name(tenant, collection, path)} "
            f"ON records ({expr}) WHERE {scope}"
        )

    def count_records(self, tenant: str, collection: str, *, filters: Mapping[str, Any]) -> int:
        """How many live records match every filter (the filters of list_records)."""
        from batchops.store.sqlite import _filter_sql  # the records module imports this one

        sql = ["SELECT count(*) FROM records WHERE tenant = ? AND collection = ?"]
        params: list[Any] = [tenant, collection]
        sql.append("AND deleted_at IS NULL")
        for f in parse_filters(filters):
            clause, values = _filter_sql(f)
            sql.append(f"AND {clause}")
            params.extend(values)
        count: int = self._execute(" ".join(sql), params).fetchone()[0]
        return count

    def insert_job_results(self, job_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store ``(seq, body)`` rows of a job."""
        if rows:
            self._executemany(
                "INSERT INTO job_results (job_id, seq, body) VALUES (?, ?, ?)",
                [(job_id, seq, body) for seq, body in rows],
            )

    def get_job_result(self, job_id: str, seq: int) -> bytes | None:
        """One stored body of a job."""
        row = self._execute(
            "SELECT body FROM job_results WHERE job_id = ? AND seq = ?", (job_id, seq)
        ).fetchone()
        return bytes(row[0]) if row else None

    def list_job_results(
        self, job_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        """A job's rows above ``after_seq``, in seq order."""
        cur = self._execute(
            "SELECT seq, body FROM job_results WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after_seq, max(limit, 0)),
        )
        return [(row[0], bytes(row[1])) for row in cur]
