"""The jobs tables on PostgreSQL: the job methods of :class:`batchops.store.postgres.PostgresTx`.

A mixin so the jobs SQL sits apart from the records hot path. Claiming uses
``FOR UPDATE SKIP LOCKED``, so several worker processes never take the same job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from batchops.store._query import field_index_name, parse_filters, sql_literal
from batchops.store.base import JobRow

__all__ = ["PostgresJobsMixin"]

_JOB_COLS = (
    "id, tenant, type, state, collection, options, created_at, total, processed, succeeded, "
    "failed, checkpoint, revision, cancel_requested, worker, heartbeat_at, started_at, "
    "finished_at, error"
)
_SAVE = (
    "UPDATE jobs SET state = %s, total = %s, processed = %s, succeeded = %s, failed = %s, "
    "checkpoint = %s, revision = %s, cancel_requested = %s, worker = %s, heartbeat_at = %s, "
    "started_at = %s, finished_at = %s, error = %s::jsonb WHERE id = %s"
)


def _job(row: Sequence[Any]) -> JobRow:
    return JobRow(*row)


def _dumps(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


def _field_sql(tenant: str, collection: str, path: str) -> tuple[str, str]:
    """(the field's text, the collection's live records) with literals only, so that the
    planner can match the query to the partial expression index (see ensure_field_index).
    Path segments are validated names: no quoting is needed inside the array literal."""
    array = sql_literal("{" + ",".join(path.split(".")) + "}")
    # Booleans as SQLite's CAST gives them ('1' / '0'), the text callers compare with.
    expr = (
        f"CASE jsonb_typeof(data #> {array}) WHEN 'boolean' "
        f"THEN CASE WHEN (data #> {array})::boolean THEN '1' ELSE '0' END "
        f"ELSE data #>> {array} END"
    )
    scope = (
        f"tenant = {sql_literal(tenant)} AND collection = {sql_literal(collection)} "
        "AND deleted_at IS NULL"
    )
    return expr, scope


class PostgresJobsMixin:
    """Job methods of the PostgreSQL transaction (see :class:`batchops.store.base.Tx`)."""

    if TYPE_CHECKING:
        _conn: psycopg.Connection[Any]

        def _execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]: ...

    def insert_job(self, row: JobRow) -> None:
        """Store a new job."""
        self._execute(
            f"INSERT INTO jobs ({_JOB_COLS}) VALUES (%s, %s, %s, %s, %s, %s::jsonb, "
            + ", ".join(["%s"] * 12)
            + ", %s::jsonb)",
            (
                row.id,
                row.tenant,
                row.type,
                row.state,
                row.collection,
                _dumps(row.options),
                row.created_at,
                row.total,
                row.processed,
                row.succeeded,
                row.failed,
                row.checkpoint,
                row.revision,
                row.cancel_requested,
                row.worker,
                row.heartbeat_at,
                row.started_at,
                row.finished_at,
                _dumps(row.error),
            ),
        )

    def get_job(
        self, job_id: str, *, tenant: str | None = None, for_update: bool = False
    ) -> JobRow | None:
        """The job (of ``tenant`` when given), row-locked with ``for_update``."""
        lock = " FOR UPDATE" if for_update else ""
        row = self._execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE id = %s "
            f"AND (%s::text IS NULL OR tenant = %s){lock}",
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
                row.cancel_requested,
                row.worker,
                row.heartbeat_at,
                row.started_at,
                row.finished_at,
                _dumps(row.error),
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
            f"SELECT {_JOB_COLS} FROM jobs WHERE tenant = %s "
            "AND (%s::text IS NULL OR state = %s) AND (%s::text IS NULL OR type = %s) "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            (tenant, state, state, type, type, max(limit, 0)),
        )
        return [_job(row) for row in cur]

    def claim_job(self, worker: str, *, now: float, lease_s: float) -> JobRow | None:
        """Take the oldest queued job, or a running one whose lease ran out."""
        row = self._execute(
            "UPDATE jobs SET state = 'running', worker = %s, heartbeat_at = %s, "
            "revision = revision + 1 "
            "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' "
            "OR (state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < %s)) "
            "ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_JOB_COLS}",
            (worker, now, now - lease_s),
        ).fetchone()
        return _job(row) if row else None

    def heartbeat_jobs(self, worker: str, *, now: float) -> None:
        """Renew ``worker``'s lease on its running jobs."""
        self._execute(
            "UPDATE jobs SET heartbeat_at = %s WHERE worker = %s AND state = 'running'",
            (now, worker),
        )

    def release_jobs(self, worker: str) -> int:
        """Put ``worker``'s running jobs back in the queue."""
        cur = self._execute(
            "UPDATE jobs SET state = 'queued', worker = NULL, heartbeat_at = NULL, "
            "revision = revision + 1 "
            "WHERE worker = %s AND state = 'running'",
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
        cur = self._execute(
            f"SELECT id, {expr} FROM records WHERE {scope} AND {expr} = ANY(%s) ORDER BY id",
            (list(values),),
        )
        return {row[1]: row[0] for row in cur}

    def ensure_field_index(self, tenant: str, collection: str, path: str) -> None:
        """See :meth:`batchops.store.base.Tx.ensure_field_index`. A plain CREATE INDEX (not
        CONCURRENTLY, which cannot run in a transaction): writes to records wait while it
        builds, then ANALYZE samples the table once."""
        name = field_index_name(tenant, collection, path)
        if self._execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (name,)).fetchone():
            return
        expr, scope = _field_sql(tenant, collection, path)
        # A build scans the whole collection: not bound by the per-statement limit.
        self._execute("SET LOCAL statement_timeout = 0")
        self._execute(f"CREATE INDEX IF NOT EXISTS {name} ON records (({expr})) WHERE {scope}")
        # Statistics on the new expression: without them (e.g. right after a bulk load) the
        # planner estimated a handful of rows for the collection and scanned it by primary key.
        self._execute("ANALYZE records")

    def count_records(self, tenant: str, collection: str, *, filters: Mapping[str, Any]) -> int:
        """How many live records match every filter (the filters of list_records)."""
        from batchops.store.postgres import _filter_sql  # the records module imports this one

        sql = ["SELECT count(*) FROM records WHERE tenant = %s AND collection = %s"]
        params: list[Any] = [tenant, collection]
        sql.append("AND deleted_at IS NULL")
        for f in parse_filters(filters):
            clause, values = _filter_sql(f)
            sql.append(f"AND {clause}")
            params.extend(values)
        row = self._execute(" ".join(sql), params).fetchone()
        assert row is not None
        return int(row[0])

    def insert_job_results(self, job_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store ``(seq, body)`` rows of a job."""
        if rows:
            self._conn.cursor().executemany(
                "INSERT INTO job_results (job_id, seq, body) VALUES (%s, %s, %s)",
                [(job_id, seq, body) for seq, body in rows],
            )

    def get_job_result(self, job_id: str, seq: int) -> bytes | None:
        """One stored body of a job."""
        row = self._execute(
            "SELECT body FROM job_results WHERE job_id = %s AND seq = %s", (job_id, seq)
        ).fetchone()
        return bytes(row[0]) if row else None

    def list_job_results(
        self, job_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        """A job's rows above ``after_seq``, in seq order."""
        cur = self._execute(
            "SELECT seq, body FROM job_results WHERE job_id = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (job_id, after_seq, max(limit, 0)),
        )
        return [(int(row[0]), bytes(row[1])) for row in cur]
