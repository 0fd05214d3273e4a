"""The webhooks tables, written once for SQLite and PostgreSQL: a mixin of both transaction
classes (the statements differ only in the placeholder, see :mod:`batchops.store._shared`,
and in the row locks PostgreSQL takes when several senders claim deliveries).

Lists and payloads are stored as JSON text in both dialects: they are only ever read back
whole, never queried into.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from batchops.store.base import (
    Dialect,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookRow,
)

__all__ = ["WebhooksSQL"]

_HOOK_COLS = "id, tenant, url, events, secret, created_at, job_id"
_DELIVERY_COLS = (
    "id, tenant, webhook_id, job_id, event, url, payload, state, created_at, attempts, "
    "next_attempt_at, last_status_code, last_error, finished_at, worker"
)
_ATTEMPT_COLS = "delivery_id, attempt, at, duration_ms, status_code, error, next_retry_at"


def _hook(row: Sequence[Any]) -> WebhookRow:
    values = list(row)
    values[3] = orjson.loads(values[3])
    return WebhookRow(*values)


def _delivery(row: Sequence[Any]) -> WebhookDeliveryRow:
    return WebhookDeliveryRow(*row)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class WebhooksSQL:
    """Webhook methods of the transaction (see :class:`batchops.store.base.Tx`)."""

    if TYPE_CHECKING:
        dialect: Dialect

        def _run(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def insert_webhook(self, row: WebhookRow) -> None:
        """Store a new webhook."""
        self._run(
            f"INSERT INTO webhooks ({_HOOK_COLS}) VALUES ({_marks(7)})",
            (
                row.id,
                row.tenant,
                row.url,
                orjson.dumps(row.events).decode(),
                row.secret,
                row.created_at,
                row.job_id,
            ),
        )

    def get_webhook(self, tenant: str, webhook_id: str) -> WebhookRow | None:
        """A tenant's subscription."""
        row = self._run(
            f"SELECT {_HOOK_COLS} FROM webhooks WHERE id = ? AND tenant = ? AND job_id IS NULL",
            (webhook_id, tenant),
        ).fetchone()
        return _hook(row) if row else None

    def list_webhooks(self, tenant: str) -> list[WebhookRow]:
        """A tenant's subscriptions, oldest first."""
        cur = self._run(
            f"SELECT {_HOOK_COLS} FROM webhooks WHERE tenant = ? AND job_id IS NULL ORDER BY id",
            (tenant,),
        )
        return [_hook(row) for row in cur]

    def webhooks_for_job(self, tenant: str, job_id: str) -> list[WebhookRow]:
        """The tenant's subscriptions and the job's own webhook."""
        cur = self._run(
            f"SELECT {_HOOK_COLS} FROM webhooks WHERE tenant = ? "
            "AND (job_id IS NULL OR job_id = ?) ORDER BY id",
            (tenant, job_id),
        )
        return [_hook(row) for row in cur]

    def delete_webhook(self, tenant: str, webhook_id: str) -> bool:
        """Remove a subscription; its pending deliveries are cancelled (history stays)."""
        cur = self._run(
            "DELETE FROM webhooks WHERE id = ? AND tenant = ? AND job_id IS NULL",
            (webhook_id, tenant),
        )
        if cur.rowcount <= 0:
            return False
        self._run(
            "UPDATE webhook_deliveries SET state = 'cancelled', next_attempt_at = NULL, "
            "worker = NULL WHERE webhook_id = ? AND state = 'pending'",
            (webhook_id,),
        )
        return True

    def insert_webhook_deliveries(self, rows: Sequence[WebhookDeliveryRow]) -> None:
        """Queue deliveries."""
        sql = f"INSERT INTO webhook_deliveries ({_DELIVERY_COLS}) VALUES ({_marks(15)})"
        for r in rows:
            self._run(
                sql,
                (
                    r.id,
                    r.tenant,
                    r.webhook_id,
                    r.job_id,
                    r.event,
                    r.url,
                    r.payload,
                    r.state,
                    r.created_at,
                    r.attempts,
                    r.next_attempt_at,
                    r.last_status_code,
                    r.last_error,
                    r.finished_at,
                    r.worker,
                ),
            )

    def claim_webhook_deliveries(
        self, worker: str, *, now: float, lease_s: float, limit: int
    ) -> list[tuple[WebhookDeliveryRow, str]]:
        """Take due deliveries (PostgreSQL: rows another sender holds are skipped)."""
        cols = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLS.split(","))
        lock = " FOR UPDATE OF d SKIP LOCKED" if self.dialect == "postgresql" else ""
        rows = self._run(
            f"SELECT {cols}, w.secret FROM webhook_deliveries d "
            "JOIN webhooks w ON w.id = d.webhook_id "
            "WHERE d.state = 'pending' AND d.next_attempt_at <= ? "
            f"ORDER BY d.next_attempt_at, d.id LIMIT ?{lock}",
            (now, max(limit, 0)),
        ).fetchall()
        if not rows:
            return []
        claimed = [(_delivery(row[:-1]), str(row[-1])) for row in rows]
        self._run(
            "UPDATE webhook_deliveries SET worker = ?, next_attempt_at = ? "
            f"WHERE id IN ({_marks(len(claimed))})",
            (worker, now + lease_s, *(d.id for d, _ in claimed)),
        )
        for delivery, _ in claimed:
            delivery.worker = worker
            delivery.next_attempt_at = now + lease_s
        return claimed

    def record_webhook_attempt(
        self, worker: str, delivery: WebhookDeliveryRow, attempt: WebhookAttemptRow
    ) -> bool:
        """Store the attempt and the delivery's new state if ``worker`` holds the claim."""
        cur = self._run(
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, "
            "last_status_code = ?, last_error = ?, finished_at = ?, worker = NULL "
            "WHERE id = ? AND worker = ? AND state = 'pending'",
            (
                delivery.state,
                delivery.attempts,
                delivery.next_attempt_at,
                delivery.last_status_code,
                delivery.last_error,
                delivery.finished_at,
                delivery.id,
                worker,
            ),
        )
        if cur.rowcount <= 0:
            return False
        self._run(
            f"INSERT INTO webhook_attempts ({_ATTEMPT_COLS}) VALUES ({_marks(7)})",
            (
                attempt.delivery_id,
                attempt.attempt,
                attempt.at,
                attempt.duration_ms,
                attempt.status_code,
                attempt.error,
                attempt.next_retry_at,
            ),
        )
        return True

    def release_webhook_deliveries(self, worker: str, *, now: float) -> int:
        """Hand ``worker``'s claims back (due at once)."""
        cur = self._run(
            "UPDATE webhook_deliveries SET worker = NULL, next_attempt_at = ? "
            "WHERE worker = ? AND state = 'pending'",
            (now, worker),
        )
        return int(cur.rowcount)

    def list_webhook_deliveries(
        self,
        tenant: str,
        *,
        webhook_id: str | None = None,
        job_id: str | None = None,
        limit: int = 100,
    ) -> list[WebhookDeliveryRow]:
        """A tenant's deliveries, newest first."""
        sql = f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries WHERE tenant = ?"
        params: list[Any] = [tenant]
        if webhook_id is not None:
            sql += " AND webhook_id = ?"
            params.append(webhook_id)
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        cur = self._run(sql + " ORDER BY id DESC LIMIT ?", (*params, max(limit, 0)))
        return [_delivery(row) for row in cur]

    def list_webhook_attempts(self, delivery_ids: Sequence[str]) -> list[WebhookAttemptRow]:
        """The attempts of these deliveries, by delivery then attempt number."""
        if not delivery_ids:
            return []
        cur = self._run(
            f"SELECT {_ATTEMPT_COLS} FROM webhook_attempts "
            f"WHERE delivery_id IN ({_marks(len(delivery_ids))}) ORDER BY delivery_id, attempt",
            tuple(delivery_ids),
        )
        return [WebhookAttemptRow(*row) for row in cur]
