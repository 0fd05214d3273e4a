"""Statements that read the same on SQLite and PostgreSQL but for the placeholder style.

Both transaction classes mix this in and set ``_PLACEHOLDER`` (``?`` or ``%s``); what does
differ between the dialects (records, search, idempotency claims, job claims) stays in each
store.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

from batchops.store.base import ApiKeyRow, IdempotencyRow, JobFailureRow

__all__ = ["SharedSQL"]

_API_KEY_COLS = "key_id, tenant, key_hash, name, created_at, revoked_at"
_FAILURE_COLS = "job_id, row_number, input, code, message"


@cache
def _dialect(sql: str, placeholder: str) -> str:
    return sql.replace("?", placeholder) if placeholder != "?" else sql


class SharedSQL:
    """API keys, the finishing half of idempotency and job failures, written once."""

    _PLACEHOLDER: ClassVar[str] = "?"

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError  # provided by the store's transaction class

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        raise NotImplementedError  # provided by the store's transaction class

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(_dialect(sql, self._PLACEHOLDER), params)

    def _run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._executemany(_dialect(sql, self._PLACEHOLDER), params)

    # -- api keys --------------------------------------------------------------------------
    def insert_api_key(self, row: ApiKeyRow) -> None:
        """Store a new API key (its hash only)."""
        self._run(
            f"INSERT INTO api_keys ({_API_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
            (row.key_id, row.tenant, row.key_hash, row.name, row.created_at, row.revoked_at),
        )

    def find_api_key(self, key_hash: str) -> ApiKeyRow | None:
        """The key with this hash, revoked or not."""
        row = self._run(
            f"SELECT {_API_KEY_COLS} FROM api_keys WHERE key_hash = ?", (key_hash,)
        ).fetchone()
        return ApiKeyRow(*row) if row else None

    def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyRow]:
        """All keys (of one tenant, if given), oldest first."""
        if tenant is None:
            cur = self._run(f"SELECT {_API_KEY_COLS} FROM api_keys ORDER BY created_at, key_id")
        else:
            cur = self._run(
                f"SELECT {_API_KEY_COLS} FROM api_keys WHERE tenant = ? "
                "ORDER BY created_at, key_id",
                (tenant,),
            )
        return [ApiKeyRow(*row) for row in cur]

    def revoke_api_key(self, key_id: str, revoked_at: str) -> bool:
        """Revoke a live key; False if it does not exist or is revoked already."""
        cur = self._run(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (revoked_at, key_id),
        )
        return bool(cur.rowcount > 0)

    def count_api_keys(self) -> int:
        """How many keys exist (all tenants, revoked included)."""
        row = self._run("SELECT count(*) FROM api_keys").fetchone()
        return int(row[0]) if row else 0

    # -- idempotency (the claim's insert-or-lock differs per dialect) -----------------------
    def _claim_decision(
        self,
        current: IdempotencyRow,
        fingerprint: str,
        *,
        now: float,
        stale_after_s: float,
        owner: str,
    ) -> IdempotencyRow | None:
        """Given the existing (locked) row of a key: take a stale in-flight claim over
        (None) or return the row (see Tx.idempotency_claim)."""
        released = current.created_at < 0  # see idempotency_release
        if current.state != "in_flight" or (
            not released and current.created_at >= now - stale_after_s
        ):
            return current
        if current.fingerprint != fingerprint and self.idempotency_progress(
            current.tenant, current.key
        ):
            return current  # part of another body is applied under this key
        self._run(
            "UPDATE idempotency_keys SET fingerprint = ?, created_at = ?, owner = ?, "
            "status_code = NULL, response = NULL WHERE tenant = ? AND key = ?",
            (fingerprint, now, owner or None, current.tenant, current.key),
        )
        return None

    def idempotency_hold(self, tenant: str, key: str, owner: str, *, now: float) -> bool:
        """Renew ``owner``'s claim if it still holds it (an UPDATE: the row stays locked)."""
        cur = self._run(
            "UPDATE idempotency_keys SET created_at = ? "
            "WHERE tenant = ? AND key = ? AND state = 'in_flight' AND coalesce(owner, '') = ?",
            (now, tenant, key, owner),
        )
        return bool(cur.rowcount == 1)

    def idempotency_save_progress(self, tenant: str, key: str, seq: int, body: bytes) -> None:
        """Store part ``seq`` of an unfinished request's results."""
        self._run(
            "INSERT INTO idempotency_progress (tenant, key, seq, body) VALUES (?, ?, ?, ?)",
            (tenant, key, seq, body),
        )

    def idempotency_progress(self, tenant: str, key: str) -> list[bytes]:
        """The stored parts, in order."""
        cur = self._run(
            "SELECT body FROM idempotency_progress WHERE tenant = ? AND key = ? ORDER BY seq",
            (tenant, key),
        )
        return [bytes(row[0]) for row in cur]

    def idempotency_finish(self, tenant: str, key: str, status_code: int, response: bytes) -> None:
        """Store the response of a claimed key (state becomes done; progress is dropped)."""
        self._run(
            "UPDATE idempotency_keys SET state = 'done', status_code = ?, response = ? "
            "WHERE tenant = ? AND key = ?",
            (status_code, response, tenant, key),
        )
        self._run("DELETE FROM idempotency_progress WHERE tenant = ? AND key = ?", (tenant, key))

    def idempotency_release(self, tenant: str, key: str, owner: str = "") -> None:
        """Give up ``owner``'s in-flight claim (see Tx.idempotency_release)."""
        if self.idempotency_progress(tenant, key):
            # A negative sign of life: released, claimable at once; and an owner no request
            # has, so that a transaction of the releasing request still in flight (a slice
            # it started before it gave up) can no longer hold it.
            self._run(
                "UPDATE idempotency_keys SET created_at = -1, owner = '(released)' "
                "WHERE tenant = ? AND key = ? AND state = 'in_flight' AND coalesce(owner, '') = ?",
                (tenant, key, owner),
            )
            return
        self._run(
            "DELETE FROM idempotency_keys "
            "WHERE tenant = ? AND key = ? AND state = 'in_flight' AND coalesce(owner, '') = ?",
            (tenant, key, owner),
        )

    # -- job failures ----------------------------------------------------------------------
    def insert_job_failures(self, rows: Sequence[JobFailureRow]) -> None:
        """Store failed input rows (one executemany; pipelined on PostgreSQL)."""
        if rows:
            self._run_many(
                f"INSERT INTO job_failures ({_FAILURE_COLS}) VALUES (?, ?, ?, ?, ?)",
                [(r.job_id, r.row_number, r.input, r.code, r.message) for r in rows],
            )

    def list_job_failures(
        self, job_id: str, *, after_row: int = 0, limit: int = 1000
    ) -> list[JobFailureRow]:
        """A job's failures by row number."""
        cur = self._run(
            f"SELECT {_FAILURE_COLS} FROM job_failures WHERE job_id = ? AND row_number > ? "
            "ORDER BY row_number LIMIT ?",
            (job_id, after_row, max(limit, 0)),
        )
        return [JobFailureRow(*row) for row in cur]

    def delete_job_failures(self, job_id: str) -> None:
        """Forget a job's failures."""
        self._run("DELETE FROM job_failures WHERE job_id = ?", (job_id,))
