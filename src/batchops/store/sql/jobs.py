"""The jobs tables written once: jobs, their failed input rows and their stored bodies
(:class:`batchops.store.base.JobsTx`).

Claiming is one ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING``: on PostgreSQL the
sub-select takes ``FOR UPDATE SKIP LOCKED``, so several worker processes never take the same
job; on SQLite every transaction holds the write lock (``BEGIN IMMEDIATE``) already.

Every time a lease is measured with — the heartbeat a claim or a renewal writes, the cutoff
past which a running job's process is presumed dead — is the database's clock
(:attr:`SqlDialect.now`), never the calling process's: runners on machines whose clocks
disagree then agree on who owns a job.

Purging old jobs (:meth:`JobsSQL.purge_jobs`) deletes in bounded steps, dependents first
and the job last, so that a cleanup never holds many locks for long and one cut short (a
crash, the row budget spent) leaves nothing orphaned: the next one goes on where it was.
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
    "finished_at, error, attempts"
)
_TERMINAL = "('succeeded', 'failed', 'cancelled')"
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
            "(?, ?, ?, ?, ?, ?::jsonb, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?)"
        )
        get = f"SELECT {_JOB_COLS} FROM jobs WHERE id = ? AND (?::text IS NULL OR tenant = ?)"
        self.get = d.render(get)
        self.get_locked = d.render(get + d.for_update())
        save = (
            "UPDATE jobs SET state = ?, total = ?, processed = ?, succeeded = ?, failed = ?, "
            "checkpoint = ?, revision = ?, cancel_requested = ?, worker = ?, heartbeat_at = {}, "
            "started_at = ?, finished_at = ?, error = ?::jsonb, attempts = ? WHERE id = ?"
        )
        self.save = d.render(save.format("?"))
        self.save_renewing = d.render(save.format(d.now) + " RETURNING heartbeat_at")
        self.list = d.render(
            f"SELECT {_JOB_COLS} FROM jobs WHERE tenant = ? "
            "AND (?::text IS NULL OR state = ?) AND (?::text IS NULL OR type = ?) "
            "AND (?::text IS NULL OR (created_at, id) < (?, ?)) "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        self.claim = d.render(
            f"UPDATE jobs SET state = 'running', worker = ?, heartbeat_at = {d.now}, "
            "revision = revision + 1, attempts = attempts + 1 "
            "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' "
            f"OR (state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < {d.now} - ?)) "
            f"ORDER BY created_at, id LIMIT 1{d.for_update(skip_locked=True)}) "
            f"RETURNING {_JOB_COLS}"
        )
        self.count = d.render("SELECT type, state, COUNT(*) FROM jobs GROUP BY type, state")
        self.heartbeat = d.render(
            f"UPDATE jobs SET heartbeat_at = {d.now} WHERE worker = ? AND state = 'running'"
        )
        self.release = d.render(
            "UPDATE jobs SET state = 'queued', worker = NULL, heartbeat_at = NULL, "
            "revision = revision + 1, "
            # A clean hand-back: its claim was no attempt (see JobsTx.release_jobs).
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
            "WHERE worker = ? AND state = 'running'"
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
        # -- purge: each statement takes (the picked job ids, how many rows at most) ---------
        ids = d.in_list
        self.purge_pick = d.render(
            f"SELECT id FROM jobs WHERE finished_at < ? AND state IN {_TERMINAL} "
            "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w "
            "WHERE w.job_id = jobs.id AND w.state = 'pending') "
            "ORDER BY finished_at, id LIMIT ?"
        )
        self.purge_dependents = tuple(
            d.render(sql)
            for sql in (
                # Attempts before their deliveries, deliveries before the job's own webhooks.
                "DELETE FROM webhook_attempts WHERE (delivery_id, attempt) IN "
                "(SELECT a.delivery_id, a.attempt FROM webhook_attempts a "
                f"JOIN webhook_deliveries w ON w.id = a.delivery_id WHERE w.job_id {ids} "
                "LIMIT ?)",
                "DELETE FROM webhook_deliveries WHERE id IN "
                f"(SELECT id FROM webhook_deliveries WHERE job_id {ids} LIMIT ?)",
                "DELETE FROM webhooks WHERE id IN "
                f"(SELECT id FROM webhooks WHERE job_id {ids} LIMIT ?)",
                "DELETE FROM job_failures WHERE (job_id, row_number) IN "
                f"(SELECT job_id, row_number FROM job_failures WHERE job_id {ids} LIMIT ?)",
                "DELETE FROM job_results WHERE (job_id, seq) IN "
                f"(SELECT job_id, seq FROM job_results WHERE job_id {ids} LIMIT ?)",
            )
        )
        self.purge_jobs = d.render(
            f"DELETE FROM jobs WHERE state IN {_TERMINAL} AND id IN "
            f"(SELECT id FROM jobs WHERE id {ids} LIMIT ?)"
        )
        self.bind_ids = d.bind_list
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
                row.attempts,
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

    def save_job(self, row: JobRow, *, renew_lease: bool = False) -> None:
        """Write every mutable column of an existing job; ``renew_lease``: the heartbeat
        by the database's clock."""
        s = self._jobs_sql
        head = (
            row.state,
            row.total,
            row.processed,
            row.succeeded,
            row.failed,
            row.checkpoint,
            row.revision,
            row.cancel_requested,
            row.worker,
        )
        tail = (row.started_at, row.finished_at, _dumps(row.error), row.attempts, row.id)
        if not renew_lease:
            self._execute(s.save, (*head, row.heartbeat_at, *tail))
            return
        # fetchall: the statement runs to its end (see claim_job).
        rows = self._execute(s.save_renewing, (*head, *tail)).fetchall()
        if rows:
            row.heartbeat_at = float(rows[0][0])

    def list_jobs(
        self,
        tenant: str,
        *,
        state: str | None = None,
        type: str | None = None,
        limit: int = 100,
        after: tuple[str, str] | None = None,
    ) -> list[JobRow]:
        """A tenant's jobs, newest first (``after``: those after the job of that
        (created_at, id) in that order)."""
        s = self._jobs_sql
        created, last_id = after if after is not None else (None, None)
        cur = self._execute(
            s.list,
            (tenant, state, state, type, type, created, created, last_id, max(limit, 0)),
        )
        return [s.job(row) for row in cur]

    def claim_job(self, worker: str, *, lease_s: float) -> JobRow | None:
        """Take the oldest queued job, or a running one whose lease ran out (by the
        database's clock); its attempts grow by one."""
        s = self._jobs_sql
        # fetchall: the statement runs to its end (SQLite finishes a RETURNING statement
        # only when its rows are read).
        rows = self._execute(s.claim, (worker, lease_s)).fetchall()
        return s.job(rows[0]) if rows else None

    def count_jobs(self) -> list[tuple[str, str, int]]:
        """How many jobs there are, by type and state, all tenants together."""
        rows = self._execute(self._jobs_sql.count, ()).fetchall()
        return [(str(t), str(s), int(n)) for t, s, n in rows]

    def heartbeat_jobs(self, worker: str) -> None:
        """Renew ``worker``'s lease on its running jobs (the database's clock)."""
        self._execute(self._jobs_sql.heartbeat, (worker,))

    def release_jobs(self, worker: str) -> int:
        """Put ``worker``'s running jobs back in the queue."""
        return int(self._execute(self._jobs_sql.release, (worker,)).rowcount)

    def purge_jobs(self, *, finished_before: str, limit: int) -> int:
        """Delete at most ``limit`` rows of old jobs and their dependents (see
        :meth:`batchops.store.base.JobsTx.purge_jobs`)."""
        s = self._jobs_sql
        if limit <= 0:
            return 0
        picked = [str(row[0]) for row in self._execute(s.purge_pick, (finished_before, limit))]
        if not picked:
            return 0
        ids = s.bind_ids(picked)
        budget = limit
        for statement in s.purge_dependents:
            budget -= int(self._execute(statement, (ids, budget)).rowcount)
            if budget <= 0:
                # Maybe more of this kind left: the jobs wait for the next call, which
                # goes on from here (what is gone is gone: nothing hangs on nothing).
                return limit
        # Every dependent of the picked jobs is gone (each step deleted fewer than it
        # could): the jobs themselves.
        budget -= int(self._execute(s.purge_jobs, (ids, budget)).rowcount)
        return limit - budget

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
