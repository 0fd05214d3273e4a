"""The webhook sender inside ``batchops serve``: sends the pending deliveries of the outbox.

Loop: claim up to ``webhook_concurrency`` due deliveries (one transaction; on PostgreSQL
``SKIP LOCKED``, so several servers share the work), POST them concurrently with aiohttp
(timeout ``webhook_timeout_s``, no redirects, connecting only to public addresses unless
``allow_private_webhooks``), then record each attempt and the delivery's next state in one
transaction: ``succeeded`` on a 2xx; else ``pending`` again after
``backoff_s(attempt)``, or ``failed`` after ``webhook_max_attempts``. Delivery is
*at least once*: a crash after the POST but before the record sends it again (receivers
deduplicate on ``X-Batchops-Delivery`` / ``delivery_id``).

A claim lasts a little longer than the timeout; a clean stop hands claims back at once,
a crashed process's claims fall due again when they lapse. The sender wakes when a job
commits (:class:`batchops.server.jobs.runner.JobEvents`) and polls every
``webhook_poll_s`` for retries that come due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

import aiohttp

from batchops._exceptions import ValidationError
from batchops.server.jobs.runner import JobEvents
from batchops.server.jobs.targets import PublicResolver, check_target
from batchops.server.jobs.webhooks import backoff_s, iso_from_epoch, signed_headers
from batchops.server.records import operations
from batchops.server.settings import Settings
from batchops.store.base import Store, WebhookAttemptRow, WebhookDeliveryRow

__all__ = ["WebhookSender"]

log = logging.getLogger("batchops.webhooks")

_MIN_GAP_S = 0.05  # job commits wake the sender at most this often
_MAX_RESPONSE_BYTES = 64 * 1024
_MAX_ERROR_CHARS = 500


class WebhookSender:
    """Sends pending webhook deliveries (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings, events: JobEvents | None = None) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sending (called by the app's lifespan)."""
        resolver = None if self.settings.allow_private_webhooks else PublicResolver()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=resolver, limit=max(self.settings.webhook_concurrency, 1)
            ),
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s),
        )
        self._task = asyncio.create_task(self._loop(), name="batchops-webhooks")

    async def stop(self) -> None:
        """Stop at once; attempts in flight are abandoned and their claims handed back
        (they are sent again after a restart)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._session is not None:
            await self._session.close()
        with contextlib.suppress(Exception):
            await self.store.run(
                lambda tx: tx.release_webhook_deliveries(self.worker, now=time.time()), retries=3
            )

    async def _loop(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("sending webhooks failed")
                sent = 0
            if sent:
                continue
            if self.events is not None:
                await self.events.wait(self.settings.webhook_poll_s)
                await asyncio.sleep(_MIN_GAP_S)
            else:
                await asyncio.sleep(self.settings.webhook_poll_s)

    async def send_due(self) -> int:
        """Claim the due deliveries and attempt each once; how many were attempted."""
        lease_s = self.settings.webhook_timeout_s * 2 + 10
        claimed = await self.store.run(
            lambda tx: tx.claim_webhook_deliveries(
                self.worker,
                now=time.time(),
                lease_s=lease_s,
                limit=max(self.settings.webhook_concurrency, 1),
            ),
            retries=3,
        )
        if claimed:
            await asyncio.gather(*(self._attempt(d, secret) for d, secret in claimed))
        return len(claimed)

    async def _attempt(self, delivery: WebhookDeliveryRow, secret: str) -> None:
        assert self._session is not None
        number = delivery.attempts + 1
        at = operations.now_iso()
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            await check_target(delivery.url, allow_private=self.settings.allow_private_webhooks)
            headers = signed_headers(delivery, secret, number, int(time.time()))
            async with self._session.post(
                delivery.url,
                data=delivery.payload.encode(),
                headers=headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                await response.content.read(_MAX_RESPONSE_BYTES)
        except ValidationError as exc:
            error = f"refused: {exc.message}"
        except TimeoutError:
            error = f"timed out after {self.settings.webhook_timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        delivery.attempts = number
        delivery.last_status_code = status
        delivery.last_error = error
        next_retry: float | None = None
        if status is not None and 200 <= status < 300:
            delivery.state = "succeeded"
            delivery.finished_at = operations.now_iso()
        elif number >= self.settings.webhook_max_attempts:
            delivery.state = "failed"
            delivery.finished_at = operations.now_iso()
        else:
            next_retry = time.time() + backoff_s(
                number, self.settings.webhook_retry_base_s, self.settings.webhook_retry_max_s
            )
        delivery.next_attempt_at = next_retry
        attempt = WebhookAttemptRow(
            delivery_id=delivery.id,
            attempt=number,
            at=at,
            duration_ms=duration_ms,
            status_code=status,
            error=error,
            next_retry_at=iso_from_epoch(next_retry),
        )
        try:
            await self.store.run(
                lambda tx: tx.record_webhook_attempt(self.worker, delivery, attempt), retries=3
            )
        except Exception:
            log.exception("recording webhook delivery %s failed", delivery.id)
