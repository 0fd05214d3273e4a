"""The jobs tables written once: jobs, their failed input rows and their stored bodies
(:class:`batchops.store.base.JobsTx`).

Claiming is one ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING``: on PostgreSQL the
sub-select takes ``FOR UPDATE SKIP LOCKED``, so several worker processes never take the same
job; on SQLite every transaction holds the write lock (``BEGIN IMMEDIATE``) already.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import orjson

from batchops.store.base import JobFailureRow, JobRow
from batchops.store.sql.dialect import SqlDialect
from batchops.store.sql.tx import SqlTx

__all__ = ["JobStatements", "JobsSQL"]

_JOB_COLS = (
    "id, tenant, type, state, collection, options, created_at, total, processed, succeeded, "
    "failed, checkpoint, revision, cancel_requested, worker, heartbeat_at, started_at, "
    "finished_at, error"
)
_FAILURE_COLS = "job_id, row_number, input, code, message"


def _job_from_text(row: Sequence[Any]) -> JobRow:
    # SQLite: JSON columns come back as text, the boolean as 0/1.
    values = list(row)
    values[5] = orjson.loads(values[5])
    values[13] = bool(values[13])
    values[18] = orjson.loads(values[18]) if values[18] is not None else None
    return JobRow(*values)


def _job(row: Sequence[Any]) -> JobRow:
    return JobRow(*row)


def _dumps(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


class JobStatements:
    """The jobs statements of one dialect, rendered once."""

    def __init__(self, d: SqlDialect) -> None:
        self.insert = d.render(
            f"INSERT INTO jobs ({_JOB_COLS}) VALUES "
            "(?, ?, ?, ?, ?, ?::jsonb, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb)"
        )
        get = f"SELECT {_JOB_COLS} FROM jobs WHERE id = ? AND (?::text IS NULL OR tenant = ?)"
        self.get = d.render(get)
        self.get_locked = d.render(get + d.for_update())
        self.save = d.render(
            "UPDATE jobs SET state = ?, total = ?, processed = ?, succeeded = ?, failed = ?, "
            "checkpoint = ?, revision = ?, cancel_requested = ?, worker = ?, heartbeat_at = ?, "
            "started_at = ?, finished_at = ?, error = ?::jsonb WHERE id = ?"
        )
        self.list = d.render(
            f"SELECT {_JOB_COLS} FROM jobs WHERE tenant = ? "
            "AND (?::text IS NULL OR state = ?) AND (?::text IS NULL OR type = ?) "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        self.claim = d.render(
            "UPDATE jobs SET state = 'running', worker = ?, heartbeat_at = ?, "
            "revision = revision + 1 "
            "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' "
            "OR (state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)) "
            f"ORDER BY created_at, id LIMIT 1{d.for_update(skip_locked=True)}) "
            f"RETURNING {_JOB_COLS}"
        )
        self.heartbeat = d.render(
            "UPDATE jobs SET heartbeat_at = ? WHERE worker = ? AND state = 'running'"
        )
        self.release = d.render(
            "UPDATE jobs SET state = 'queued', worker = NULL, heartbeat_at = NULL, "
            "revision = revision + 1 WHERE worker = ? AND state = 'running'"
        )
        self.insert_failure = d.render(
            f"INSERT INTO job_failures ({_FAILURE_COLS}) VALUES (?, ?, ?, ?, ?)"
        )
        self.list_failures = d.render(
            f"SELECT {_FAILURE_COLS} FROM job_failures WHERE job_id = ? AND row_number > ? "
            "ORDER BY row_number LIMIT ?"
        )
        self.delete_failures = d.render("DELETE FROM job_failures WHERE job_id = ?")
        self.insert_result = d.render(
            "INSERT INTO job_results (job_id, seq, body) VALUES (?, ?, ?)"
        )
        self.get_result = d.render("SELECT body FROM job_results WHERE job_id = ? AND seq = ?")
        self.list_results = d.render(
            "SELECT seq, body FROM job_results WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        self.job: Callable[[Sequence[Any]], JobRow] = _job_from_text if d.json_as_text else _job


class JobsSQL(SqlTx):
    """Job methods of the transaction (see :class:`batchops.store.base.JobsTx`)."""

    _jobs_sql: ClassVar[JobStatements]

    def insert_job(self, row: JobRow) -> None:
        """Store a new job."""
        self._execute(
            self._jobs_sql.insert,
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
                row.cancel_requested,  # SQLite stores a bool as 0/1
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
        s = self._jobs_sql
        row = self._execute(
            s.get_locked if for_update else s.get, (job_id, tenant, tenant)
        ).fetchone()
        return s.job(row) if row else None

    def save_job(self, row: JobRow) -> None:
        """Write every mutable column of an existing job."""
        self._execute(
            self._jobs_sql.save,
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
        s = self._jobs_sql
        cur = self._execute(s.list, (tenant, state, state, type, type, max(limit, 0)))
        return [s.job(row) for row in cur]

    def claim_job(self, worker: str, *, now: float, lease_s: float) -> JobRow | None:
        """Take the oldest queued job, or a running one whose lease ran out."""
        s = self._jobs_sql
        # fetchall: the statement runs to its end (SQLite finishes a RETURNING statement
        # only when its rows are read).
        rows = self._execute(s.claim, (worker, now, now - lease_s)).fetchall()
        return s.job(rows[0]) if rows else None

    def heartbeat_jobs(self, worker: str, *, now: float) -> None:
        """Renew ``worker``'s lease on its running jobs."""
        self._execute(self._jobs_sql.heartbeat, (now, worker))

    def release_jobs(self, worker: str) -> int:
        """Put ``worker``'s running jobs back in the queue."""
        return int(self._execute(self._jobs_sql.release, (worker,)).rowcount)

    # -- failed input rows -----------------------------------------------------------------
    def insert_job_failures(self, rows: Sequence[JobFailureRow]) -> None:
        """Store failed input rows (one executemany; pipelined on PostgreSQL)."""
        if rows:
            self._executemany(
                self._jobs_sql.insert_failure,
                [(r.job_id, r.row_number, r.input, r.code, r.message) for r in rows],
            )

    def list_job_failures(
        self, job_id: str, *, after_row: int = 0, limit: int = 1000
    ) -> list[JobFailureRow]:
        """A job's failures by row number."""
        cur = self._execute(self._jobs_sql.list_failures, (job_id, after_row, max(limit, 0)))
        return [JobFailureRow(*row) for row in cur]

    def delete_job_failures(self, job_id: str) -> None:
        """Forget a job's failures."""
        self._execute(self._jobs_sql.delete_failures, (job_id,))

    # -- stored bodies ---------------------------------------------------------------------
    def insert_job_results(self, job_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store ``(seq, body)`` rows of a job."""
        if rows:
            self._executemany(
                self._jobs_sql.insert_result, [(job_id, seq, body) for seq, body in rows]
            )

    def get_job_result(self, job_id: str, seq: int) -> bytes | None:
        """One stored body of a job."""
        row = self._execute(self._jobs_sql.get_result, (job_id, seq)).fetchone()
        return bytes(row[0]) if row else None

    def list_job_results(
        self, job_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        """A job's rows above ``after_seq``, in seq order."""
        cur = self._execute(self._jobs_sql.list_results, (job_id, after_seq, max(limit, 0)))
        return [(int(row[0]), bytes(row[1])) for row in cur]
