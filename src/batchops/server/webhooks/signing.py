"""How a webhook delivery is signed, and how long a failed one waits before its next attempt.

Signature: ``X-Batchops-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
with ``timestamp`` the ``X-Batchops-Timestamp`` header (unix seconds, fresh per attempt)
and ``body`` the exact request bytes (the same on every attempt of a delivery). docs/jobs.md
shows receivers how to verify it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from batchops.store.base import WebhookDeliveryRow

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "new_secret",
    "sign",
    "signed_headers",
]

SIGNATURE_HEADER = "X-Batchops-Signature"
TIMESTAMP_HEADER = "X-Batchops-Timestamp"


def new_secret() -> str:
    """A signing secret: 32 random bytes, URL-safe text with a recognisable prefix."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Batchops-Signature`` value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    delivery: WebhookDeliveryRow, secret: str, attempt: int, timestamp: int
) -> dict[str, str]:
    """The headers of one attempt."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "batchops-webhooks/0.1",
        "X-Batchops-Event": delivery.event,
        "X-Batchops-Delivery": delivery.id,
        "X-Batchops-Attempt": str(attempt),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, delivery.payload.encode()),
    }
