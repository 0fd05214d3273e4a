"""The idempotency tables written once (:class:`batchops.store.base.IdempotencyTx`).

A claim is ``INSERT … ON CONFLICT DO NOTHING RETURNING``, then, when the key is taken, a
read of its row. Two processes claiming at once on PostgreSQL: ON CONFLICT makes the second
wait for the first's transaction, and the read's FOR UPDATE serialises a stale takeover (and
waits for a transaction that holds the claim, see ``idempotency_hold``). On SQLite every
transaction holds the write lock (``BEGIN IMMEDIATE``), which makes the claim race-free.

A key's age is ``abs(created_at)``: its last sign of life, or, for a key released with
progress (``created_at`` negative: claimable at once), minus the time it was released. The
periodic cleanup deletes keys older than the retention, their progress first, in bounded
steps (:meth:`IdempotencySQL.purge_idempotency_keys`).
"""

from __future__ import annotations

from typing import ClassVar

from batchops.store.base import IdempotencyRow
from batchops.store.sql.dialect import SqlDialect
from batchops.store.sql.tx import SqlTx

__all__ = ["IdempotencySQL", "IdempotencyStatements"]

_IDEM_COLS = "tenant, key, fingerprint, state, created_at, status_code, response, owner"
_HELD_BY = "tenant = ? AND key = ? AND state = 'in_flight' AND coalesce(owner, '') = ?"


class IdempotencyStatements:
    """The idempotency statements of one dialect, rendered once."""

    def __init__(self, d: SqlDialect) -> None:
        self.claim = d.render(
            f"INSERT INTO idempotency_keys ({_IDEM_COLS}) "
            "VALUES (?, ?, ?, 'in_flight', ?, NULL, NULL, ?) "
            "ON CONFLICT (tenant, key) DO NOTHING RETURNING 1"
        )
        self.get_locked = d.render(
            f"SELECT {_IDEM_COLS} FROM idempotency_keys WHERE tenant = ? AND key = ?"
            + d.for_update()
        )
        self.take_over = d.render(
            "UPDATE idempotency_keys SET fingerprint = ?, created_at = ?, owner = ?, "
            "status_code = NULL, response = NULL WHERE tenant = ? AND key = ?"
        )
        self.hold = d.render(f"UPDATE idempotency_keys SET created_at = ? WHERE {_HELD_BY}")
        self.save_progress = d.render(
            "INSERT INTO idempotency_progress (tenant, key, seq, body) VALUES (?, ?, ?, ?)"
        )
        self.progress = d.render(
            "SELECT body FROM idempotency_progress WHERE tenant = ? AND key = ? ORDER BY seq"
        )
        self.finish = d.render(
            "UPDATE idempotency_keys SET state = 'done', status_code = ?, response = ? "
            "WHERE tenant = ? AND key = ?"
        )
        self.drop_progress = d.render(
            "DELETE FROM idempotency_progress WHERE tenant = ? AND key = ?"
        )
        self.release_with_progress = d.render(
            f"UPDATE idempotency_keys SET created_at = -({d.now}), owner = '(released)' "
            f"WHERE {_HELD_BY}"
        )
        self.release = d.render(f"DELETE FROM idempotency_keys WHERE {_HELD_BY}")
        # The purge: the progress of expired keys, then expired keys with none left (both
        # take the cutoff and how many rows at most). abs(created_at): see the module
        # docstring; the expression index of migration 0010 (SQLite 0008) serves it.
        self.purge_progress = d.render(
            "DELETE FROM idempotency_progress WHERE (tenant, key, seq) IN "
            "(SELECT p.tenant, p.key, p.seq FROM idempotency_progress p "
            "JOIN idempotency_keys k ON k.tenant = p.tenant AND k.key = p.key "
            "WHERE abs(k.created_at) < ? LIMIT ?)"
        )
        self.purge_keys = d.render(
            # The age again outside the sub-select: a key claimed meanwhile (it is young
            # again) is kept (PostgreSQL re-checks it on the row it waited for).
            "DELETE FROM idempotency_keys WHERE abs(created_at) < ? AND (tenant, key) IN "
            "(SELECT k.tenant, k.key FROM idempotency_keys k WHERE abs(k.created_at) < ? "
            "AND NOT EXISTS (SELECT 1 FROM idempotency_progress p "
            "WHERE p.tenant = k.tenant AND p.key = k.key) LIMIT ?)"
        )


class IdempotencySQL(SqlTx):
    """Idempotency methods of the transaction (see :class:`batchops.store.base.IdempotencyTx`)."""

    _idempotency_sql: ClassVar[IdempotencyStatements]

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
        """Claim ``key`` (None) or return its row; stale in-flight claims are taken over."""
        s = self._idempotency_sql
        # fetchall: the statement runs to its end (SQLite finishes a RETURNING statement
        # only when its rows are read).
        if self._execute(s.claim, (tenant, key, fingerprint, now, owner or None)).fetchall():
            return None
        row = self._execute(s.get_locked, (tenant, key)).fetchone()
        if row is None:  # released between our INSERT and SELECT: claim again
            return self.idempotency_claim(
                tenant, key, fingerprint, now=now, stale_after_s=stale_after_s, owner=owner
            )
        current = IdempotencyRow(*row)
        if current.response is not None:
            current.response = bytes(current.response)
        released = current.created_at < 0  # see idempotency_release
        if current.state != "in_flight" or (
            not released and current.created_at >= now - stale_after_s
        ):
            return current
        if current.fingerprint != fingerprint and self.idempotency_progress(tenant, key):
            return current  # part of another body is applied under this key
        self._execute(s.take_over, (fingerprint, now, owner or None, tenant, key))
        return None

    def idempotency_hold(self, tenant: str, key: str, owner: str, *, now: float) -> bool:
        """Renew ``owner``'s claim if it still holds it (an UPDATE: the row stays locked)."""
        cur = self._execute(self._idempotency_sql.hold, (now, tenant, key, owner))
        return bool(cur.rowcount == 1)

    def idempotency_save_progress(self, tenant: str, key: str, seq: int, body: bytes) -> None:
        """Store part ``seq`` of an unfinished request's results."""
        self._execute(self._idempotency_sql.save_progress, (tenant, key, seq, body))

    def idempotency_progress(self, tenant: str, key: str) -> list[bytes]:
        """The stored parts, in order."""
        cur = self._execute(self._idempotency_sql.progress, (tenant, key))
        return [bytes(row[0]) for row in cur]

    def idempotency_finish(self, tenant: str, key: str, status_code: int, response: bytes) -> None:
        """Store the response of a claimed key (state becomes done; progress is dropped)."""
        s = self._idempotency_sql
        self._execute(s.finish, (status_code, response, tenant, key))
        self._execute(s.drop_progress, (tenant, key))

    def idempotency_release(self, tenant: str, key: str, owner: str = "") -> None:
        """Give up ``owner``'s in-flight claim (see Tx.idempotency_release)."""
        s = self._idempotency_sql
        if self.idempotency_progress(tenant, key):
            # A negative sign of life: released, claimable at once; and an owner no request
            # has, so that a transaction of the releasing request still in flight (a slice
            # it started before it gave up) can no longer hold it.
            self._execute(s.release_with_progress, (tenant, key, owner))
            return
        self._execute(s.release, (tenant, key, owner))

    def purge_idempotency_keys(self, *, before: float, limit: int) -> int:
        """Delete at most ``limit`` rows of keys whose age is before ``before``."""
        s = self._idempotency_sql
        if limit <= 0:
            return 0
        deleted = int(self._execute(s.purge_progress, (before, limit)).rowcount)
        if deleted >= limit:
            return deleted
        keys = self._execute(s.purge_keys, (before, before, limit - deleted)).rowcount
        return deleted + int(keys)
