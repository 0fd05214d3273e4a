"""The webhooks tables written once (:class:`batchops.store.base.WebhooksTx`): the
statements differ only in syntax, and in the row locks PostgreSQL takes when several senders
claim deliveries (``FOR UPDATE OF d SKIP LOCKED``; SQLite's write lock does that job).

Lists and payloads are stored as JSON text in both dialects: they are only ever read back
whole, never queried into.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from batchops.store.base import WebhookAttemptRow, WebhookDeliveryRow, WebhookRow
from batchops.store.sql.dialect import SqlDialect
from batchops.store.sql.tx import SqlTx

__all__ = ["WebhookStatements", "WebhooksSQL"]

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


class WebhookStatements:
    """The webhook statements of one dialect, rendered once."""

    def __init__(self, d: SqlDialect) -> None:
        self.bind_ids = d.bind_list
        hooks = f"SELECT {_HOOK_COLS} FROM webhooks WHERE"
        self.insert = d.render(f"INSERT INTO webhooks ({_HOOK_COLS}) VALUES ({_marks(7)})")
        self.get = d.render(f"{hooks} id = ? AND tenant = ? AND job_id IS NULL")
        self.list = d.render(f"{hooks} tenant = ? AND job_id IS NULL ORDER BY id")
        self.for_job = d.render(
            f"{hooks} tenant = ? AND (job_id IS NULL OR job_id = ?) ORDER BY id"
        )
        self.delete = d.render(
            "DELETE FROM webhooks WHERE id = ? AND tenant = ? AND job_id IS NULL"
        )
        self.cancel_pending = d.render(
            "UPDATE webhook_deliveries SET state = 'cancelled', next_attempt_at = NULL, "
            "worker = NULL WHERE webhook_id = ? AND state = 'pending'"
        )
        self.insert_delivery = d.render(
            f"INSERT INTO webhook_deliveries ({_DELIVERY_COLS}) VALUES ({_marks(15)})"
        )
        cols = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLS.split(","))
        self.due = d.render(
            f"SELECT {cols}, w.secret FROM webhook_deliveries d "
            "JOIN webhooks w ON w.id = d.webhook_id "
            "WHERE d.state = 'pending' AND d.next_attempt_at <= ? "
            f"ORDER BY d.next_attempt_at, d.id LIMIT ?{d.for_update(of='d', skip_locked=True)}"
        )
        self.claim = d.render(
            f"UPDATE webhook_deliveries SET worker = ?, next_attempt_at = ? WHERE id {d.in_list}"
        )
        self.attempted = d.render(
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, "
            "last_status_code = ?, last_error = ?, finished_at = ?, worker = NULL "
            "WHERE id = ? AND worker = ? AND state = 'pending'"
        )
        self.insert_attempt = d.render(
            f"INSERT INTO webhook_attempts ({_ATTEMPT_COLS}) VALUES ({_marks(7)})"
        )
        self.release = d.render(
            "UPDATE webhook_deliveries SET worker = NULL, next_attempt_at = ? "
            "WHERE worker = ? AND state = 'pending'"
        )
        deliveries = f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries WHERE tenant = ?"
        self.deliveries = d.render(deliveries)
        self.of_webhook = d.render(" AND webhook_id = ?")
        self.of_job = d.render(" AND job_id = ?")
        self.newest_first = d.render(" ORDER BY id DESC LIMIT ?")
        self.attempts = d.render(
            f"SELECT {_ATTEMPT_COLS} FROM webhook_attempts WHERE delivery_id {d.in_list} "
            "ORDER BY delivery_id, attempt"
        )


class WebhooksSQL(SqlTx):
    """Webhook methods of the transaction (see :class:`batchops.store.base.WebhooksTx`)."""

    _webhooks_sql: ClassVar[WebhookStatements]

    def insert_webhook(self, row: WebhookRow) -> None:
        """Store a new webhook."""
        self._execute(
            self._webhooks_sql.insert,
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
        row = self._execute(self._webhooks_sql.get, (webhook_id, tenant)).fetchone()
        return _hook(row) if row else None

    def list_webhooks(self, tenant: str) -> list[WebhookRow]:
        """A tenant's subscriptions, oldest first."""
        return [_hook(row) for row in self._execute(self._webhooks_sql.list, (tenant,))]

    def webhooks_for_job(self, tenant: str, job_id: str) -> list[WebhookRow]:
        """The tenant's subscriptions and the job's own webhook."""
        cur = self._execute(self._webhooks_sql.for_job, (tenant, job_id))
        return [_hook(row) for row in cur]

    def delete_webhook(self, tenant: str, webhook_id: str) -> bool:
        """Remove a subscription; its pending deliveries are cancelled (history stays)."""
        s = self._webhooks_sql
        if self._execute(s.delete, (webhook_id, tenant)).rowcount <= 0:
            return False
        self._execute(s.cancel_pending, (webhook_id,))
        return True

    def insert_webhook_deliveries(self, rows: Sequence[WebhookDeliveryRow]) -> None:
        """Queue deliveries."""
        sql = self._webhooks_sql.insert_delivery
        for r in rows:
            self._execute(
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
        s = self._webhooks_sql
        rows = self._execute(s.due, (now, max(limit, 0))).fetchall()
        if not rows:
            return []
        claimed = [(_delivery(row[:-1]), str(row[-1])) for row in rows]
        self._execute(s.claim, (worker, now + lease_s, s.bind_ids([d.id for d, _ in claimed])))
        for delivery, _ in claimed:
            delivery.worker = worker
            delivery.next_attempt_at = now + lease_s
        return claimed

    def record_webhook_attempt(
        self, worker: str, delivery: WebhookDeliveryRow, attempt: WebhookAttemptRow
    ) -> bool:
        """Store the attempt and the delivery's new state if ``worker`` holds the claim."""
        s = self._webhooks_sql
        cur = self._execute(
            s.attempted,
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
        self._execute(
            s.insert_attempt,
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
        return int(self._execute(self._webhooks_sql.release, (now, worker)).rowcount)

    def list_webhook_deliveries(
        self,
        tenant: str,
        *,
        webhook_id: str | None = None,
        job_id: str | None = None,
        limit: int = 100,
    ) -> list[WebhookDeliveryRow]:
        """A tenant's deliveries, newest first."""
        s = self._webhooks_sql
        sql = s.deliveries
        params: list[Any] = [tenant]
        if webhook_id is not None:
            sql += s.of_webhook
            params.append(webhook_id)
        if job_id is not None:
            sql += s.of_job
            params.append(job_id)
        cur = self._execute(sql + s.newest_first, (*params, max(limit, 0)))
        return [_delivery(row) for row in cur]

    def list_webhook_attempts(self, delivery_ids: Sequence[str]) -> list[WebhookAttemptRow]:
        """The attempts of these deliveries, by delivery then attempt number."""
        if not delivery_ids:
            return []
        s = self._webhooks_sql
        cur = self._execute(s.attempts, (s.bind_ids(delivery_ids),))
        return [WebhookAttemptRow(*row) for row in cur]
