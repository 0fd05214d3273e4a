"""Webhooks of jobs: what a webhook is, how a request names one, and how the API shows
webhooks and their deliveries (see docs/jobs.md, "Webhooks").

A *webhook* is a tenant's subscription (``POST /v1/webhooks``) or one job's own
``notification_webhook``; both are rows of ``webhooks`` (the latter with ``job_id``).
Signing is :mod:`~batchops.server.webhooks.signing`, the outbox
:mod:`~batchops.server.webhooks.outbox`, sending :mod:`~batchops.server.webhooks.delivery`,
the SSRF guard :mod:`~batchops.server.webhooks.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from batchops._exceptions import ValidationError
from batchops.server import _ids
from batchops.server.webhooks.targets import check_target, parse_target
from batchops.store.base import (
    JobRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookRow,
)

__all__ = [
    "EVENTS",
    "MAX_SECRET_LENGTH",
    "MIN_SECRET_LENGTH",
    "NOTIFICATION_WEBHOOK",
    "WebhookSpec",
    "check_notification_target",
    "delivery_body",
    "iso_from_epoch",
    "job_webhook_row",
    "parse_notification_webhook",
    "parse_notification_webhook_field",
    "parse_webhook_spec",
    "webhook_body",
]

EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
NOTIFICATION_WEBHOOK = "notification_webhook"
"""The name of a job's own webhook, as a query parameter or a JSON body member."""


# -- input ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """A checked webhook request (the URL's addresses are checked separately: async)."""

    url: str
    events: list[str]
    secret: str | None


def parse_webhook_spec(raw: object, *, path: str, secret_required: bool) -> WebhookSpec:
    """``{url, events?, secret?}`` checked; every problem is a 422 naming its path."""
    if not isinstance(raw, dict):
        raise ValidationError(
            f"'{path}' must be a JSON object {{url, events, secret}}", details={"path": path}
        )
    unknown = sorted(set(raw) - {"url", "events", "secret"})
    if unknown:
        raise ValidationError(
            f"unknown field(s) {', '.join(unknown)}; a webhook is {{url, events, secret}}",
            details={"path": f"{path}.{unknown[0]}" if path else unknown[0]},
        )
    prefix = f"{path}." if path else ""
    try:
        parse_target(raw.get("url"))
    except ValidationError as exc:
        exc.details["path"] = f"{prefix}url"
        raise
    events = raw.get("events")
    if events is None:
        events = list(EVENTS)
    if (
        not isinstance(events, list)
        or not events
        or any(not isinstance(e, str) or e not in EVENTS for e in events)
    ):
        raise ValidationError(
            f"'events' must be a non-empty list of {', '.join(EVENTS)}",
            details={"path": f"{prefix}events", "allowed": list(EVENTS)},
        )
    secret = raw.get("secret")
    if secret is None and secret_required:
        raise ValidationError(
            "a notification webhook needs a 'secret' to sign its deliveries with "
            f"(at least {MIN_SECRET_LENGTH} characters)",
            details={"path": f"{prefix}secret"},
        )
    if secret is not None and (
        not isinstance(secret, str)
        or not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH
        # Neither backend may store it otherwise (PostgreSQL refuses U+0000 in text).
        or "\x00" in secret
    ):
        raise ValidationError(
            f"'secret' must be a string of {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} "
            "characters without U+0000 (omit it on a subscription to have one generated)",
            details={"path": f"{prefix}secret"},
        )
    return WebhookSpec(str(raw["url"]), sorted(set(events), key=EVENTS.index), secret)


def parse_notification_webhook(raw: str | None) -> WebhookSpec | None:
    """The ``notification_webhook`` option of a job-creating endpoint (JSON text), or
    None when absent."""
    if raw is None or raw == "":
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(
            f"'notification_webhook' is not valid JSON: {exc}",
            details={"path": "notification_webhook"},
        ) from exc
    return parse_webhook_spec(value, path="notification_webhook", secret_required=True)


def parse_notification_webhook_field(raw: object) -> WebhookSpec | None:
    """The ``notification_webhook`` member of a JSON request body (already decoded), or
    None when it is absent or ``null`` (the usual JSON spelling of "none")."""
    if raw is None:
        return None
    return parse_webhook_spec(raw, path=NOTIFICATION_WEBHOOK, secret_required=True)


async def check_notification_target(spec: WebhookSpec, *, allow_private: bool) -> None:
    """:func:`~batchops.server.webhooks.targets.check_target` for a job's own webhook: the
    422 names the request field (``notification_webhook.url``), not a bare ``url``, since
    the webhook is one member of a larger request."""
    try:
        await check_target(spec.url, allow_private=allow_private)
    except ValidationError as exc:
        exc.details["path"] = f"{NOTIFICATION_WEBHOOK}.url"
        raise


def job_webhook_row(spec: WebhookSpec, job: JobRow) -> WebhookRow:
    """The row of a job's own webhook (insert it in the job's transaction)."""
    assert spec.secret is not None
    return WebhookRow(
        id=_ids.new_record_id(),
        tenant=job.tenant,
        url=spec.url,
        events=spec.events,
        secret=spec.secret,
        created_at=_ids.now_iso(),
        job_id=job.id,
    )


# -- wire shapes -----------------------------------------------------------------------------


def webhook_body(row: WebhookRow, *, with_secret: bool = False) -> dict[str, Any]:
    """A subscription as the API shows it; the secret only in the answer that created it."""
    body: dict[str, Any] = {
        "id": row.id,
        "url": row.url,
        "events": row.events,
        "created_at": row.created_at,
        "links": {
            "self": f"/v1/webhooks/{row.id}",
            "deliveries": f"/v1/webhooks/{row.id}/deliveries",
        },
    }
    if with_secret:
        body["secret"] = row.secret
    return body


def iso_from_epoch(epoch: float | None) -> str | None:
    """Epoch seconds as the ISO-8601 UTC text the API uses (None stays None)."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delivery_body(row: WebhookDeliveryRow, attempts: list[WebhookAttemptRow]) -> dict[str, Any]:
    """A delivery and every attempt at it, as the API shows them."""
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "job_id": row.job_id,
        "event": row.event,
        "url": row.url,
        "state": row.state,
        "attempt_count": row.attempts,
        "next_attempt_at": iso_from_epoch(row.next_attempt_at) if row.state == "pending" else None,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "attempts": [
            {
                "attempt": a.attempt,
                "at": a.at,
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
                "next_retry_at": a.next_retry_at,
            }
            for a in attempts
        ],
    }
