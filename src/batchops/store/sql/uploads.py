"""The ``job_uploads`` table, written once (:class:`batchops.store.base.UploadsTx`): jobs'
uploaded files as chunk rows.

The only part that takes care is keeping the sweep away from an upload whose request is
just sealing it. :meth:`UploadsSQL.seal_upload` (in the transaction that inserts the job) and
:meth:`UploadsSQL.purge_uploads` (for each upload it would delete) both take the upload's
named lock (:meth:`~batchops.store.base.TxBase.lock`) first. The purge then checks the
upload again in a new statement. On PostgreSQL (READ COMMITTED) that statement's snapshot
sees a job committed while the purge waited, so the purge leaves the upload alone. If the
purge got the lock first, the seal sees fewer chunks than it wrote and no job is made. On
SQLite every transaction holds the write lock, so the two cannot overlap at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from batchops.store.sql.dialect import SqlDialect
from batchops.store.sql.tx import SqlTx

__all__ = ["UploadStatements", "UploadsSQL", "upload_lock"]

# An upload nobody will read: its job ended, or it has no job and its newest chunk is old.
_STALE = (
    "(j.state IS NULL AND max(u.created_at) < ?) OR j.state IN ('succeeded', 'failed', 'cancelled')"
)


def upload_lock(job_id: str) -> str:
    """The name of the lock that seal and purge of one upload take."""
    return f"job-upload|{job_id}"


class UploadStatements:
    """The upload statements of one dialect, rendered once."""

    def __init__(self, d: SqlDialect) -> None:
        # A retry after a commit whose answer was lost finds its chunk there: nothing twice.
        self.insert = d.render(
            "INSERT INTO job_uploads (job_id, seq, chunk, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (job_id, seq) DO NOTHING"
        )
        self.chunk = d.render("SELECT chunk FROM job_uploads WHERE job_id = ? AND seq = ?")
        # length() reads no chunk: PostgreSQL takes it from the TOAST pointer, SQLite from
        # the record header.
        self.extent = d.render(
            "SELECT count(*), coalesce(sum(length(chunk)), 0) FROM job_uploads WHERE job_id = ?"
        )
        self.delete = d.render("DELETE FROM job_uploads WHERE job_id = ?")
        self.stale = d.render(
            "SELECT u.job_id FROM job_uploads u LEFT JOIN jobs j ON j.id = u.job_id "
            f"GROUP BY u.job_id, j.state HAVING {_STALE} ORDER BY u.job_id LIMIT ?"
        )
        self.still_stale = d.render(
            "SELECT u.job_id FROM job_uploads u LEFT JOIN jobs j ON j.id = u.job_id "
            f"WHERE u.job_id = ? GROUP BY u.job_id, j.state HAVING {_STALE}"
        )


class UploadsSQL(SqlTx):
    """Upload methods of the transaction (see :class:`batchops.store.base.UploadsTx`)."""

    _uploads_sql: ClassVar[UploadStatements]

    def insert_upload_chunks(
        self, job_id: str, chunks: Sequence[tuple[int, bytes | bytearray]], *, now: float
    ) -> None:
        """Store ``(seq, bytes)`` chunks of a job's upload (a chunk stored already stays)."""
        sql = self._uploads_sql.insert
        if len(chunks) == 1:
            seq, data = chunks[0]
            self._execute(sql, (job_id, seq, data, now))
        elif chunks:
            self._executemany(sql, [(job_id, seq, data, now) for seq, data in chunks])

    def upload_chunk(self, job_id: str, seq: int) -> bytes | None:
        """One chunk of an upload, None past its end."""
        row = self._fetch_chunk(self._uploads_sql.chunk, (job_id, seq))
        return bytes(row[0]) if row else None

    def _fetch_chunk(self, sql: str, params: Sequence[Any]) -> Any:
        """The row of one chunk (PostgreSQL overrides it to read the bytes in binary)."""
        return self._execute(sql, params).fetchone()

    def upload_extent(self, job_id: str) -> tuple[int, int]:
        """``(chunks, bytes)`` stored for a job."""
        row = self._execute(self._uploads_sql.extent, (job_id,)).fetchone()
        return int(row[0]), int(row[1])

    def seal_upload(self, job_id: str, *, chunks: int, size: int) -> bool:
        """Under the upload's lock: are all its chunks there?"""
        self.lock(upload_lock(job_id))
        return self.upload_extent(job_id) == (chunks, size)

    def delete_upload(self, job_id: str) -> int:
        """Delete a job's upload (idempotent)."""
        return int(self._execute(self._uploads_sql.delete, (job_id,)).rowcount)

    def purge_uploads(self, *, before: float, limit: int = 100) -> list[str]:
        """Delete up to ``limit`` uploads no job will read (see the module docstring)."""
        s = self._uploads_sql
        candidates = [
            str(row[0]) for row in self._execute(s.stale, (before, max(limit, 0))).fetchall()
        ]
        purged: list[str] = []
        for job_id in candidates:
            self.lock(upload_lock(job_id))
            # A new statement, after the lock: it sees a job sealed meanwhile.
            if self._execute(s.still_stale, (job_id, before)).fetchone() is not None:
                self._execute(s.delete, (job_id,))
                purged.append(job_id)
        return purged
