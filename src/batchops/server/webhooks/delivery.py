"""The webhook sender inside ``batchops serve``: sends the pending deliveries of the outbox.

Loop: claim up to ``webhook_concurrency`` due deliveries (one transaction; on PostgreSQL
``SKIP LOCKED``, so several servers share the work), POST them concurrently with aiohttp
(timeout ``webhook_timeout_s``, no redirects, connecting only to public addresses unless
``allow_private_webhooks``), then record each attempt and the delivery's next state in one
transaction: ``succeeded`` on a 2xx; else ``pending`` again after
``backoff_s(attempt)``, or ``failed`` after ``webhook_max_attempts``. Delivery is
*at least once*: a crash after the POST but before the record sends it again (receivers
deduplicate on ``X-Batchops-Delivery`` / ``delivery_id``).

A claim lasts a little longer than the timeout; a crashed process's claims fall due again
when they lapse. A clean stop claims nothing more, lets the attempts in flight end and
records them (for up to ``_STOP_GRACE_S``; past that they are abandoned), waits for the
sender's transactions still running, then hands the remaining claims back at once: an
attempt whose answer arrived is not lost to a shutdown (nor sent again because of it),
and no claim is left to lapse. The sender wakes when a job commits
(:class:`batchops.server.jobs.runner.JobEvents`) and polls every ``webhook_poll_s`` for
retries that come due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp

from batchops._exceptions import ValidationError
from batchops.engine import backoff_s
from batchops.server import _ids
from batchops.server.jobs.runner import JobEvents
from batchops.server.observability import metrics
from batchops.server.settings import Settings
from batchops.server.webhooks.schemas import iso_from_epoch
from batchops.server.webhooks.signing import signed_headers
from batchops.server.webhooks.targets import PublicResolver, check_target
from batchops.store.base import Store, Tx, WebhookAttemptRow, WebhookDeliveryRow

__all__ = ["WebhookSender"]

log = logging.getLogger("batchops.webhooks")

_MIN_GAP_S = 0.05  # job commits wake the sender at most this often
_MAX_RESPONSE_BYTES = 64 * 1024
_MAX_ERROR_CHARS = 500
_STOP_GRACE_S = 5.0  # how long stop() lets the attempts in flight end and be recorded

T = TypeVar("T")


class WebhookSender:
    """Sends pending webhook deliveries (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings, events: JobEvents | None = None) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sending = False  # the loop is claiming, attempting or recording
        self._writes: set[asyncio.Task[Any]] = set()

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
        """Claim nothing more; let the attempts in flight end and be recorded (for up to
        ``_STOP_GRACE_S``, then they are abandoned), and hand the remaining claims back
        (they are sent again after a restart)."""
        self._stopping = True
        if self._task is not None:
            if self._sending:
                await asyncio.wait({self._task}, timeout=_STOP_GRACE_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        # A claim or record may still be committing (a cancelled caller does not stop it;
        # on PostgreSQL it runs in another thread than the release below): wait for it,
        # else the release could miss a claim that then holds the delivery for lease_s.
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        with contextlib.suppress(Exception):
            await self.store.run(
                lambda tx: tx.release_webhook_deliveries(self.worker, now=tx.database_now()),
                retries=3,
            )

    async def _loop(self) -> None:
        while not self._stopping:
            self._sending = True
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("sending webhooks failed")
                sent = 0
            finally:
                self._sending = False
            if sent or self._stopping:
                continue
            if self.events is not None:
                await self.events.wait(self.settings.webhook_poll_s)
                await asyncio.sleep(_MIN_GAP_S)
            else:
                await asyncio.sleep(self.settings.webhook_poll_s)

    async def send_due(self) -> int:
        """Claim the due deliveries and attempt each once; how many were attempted."""
        lease_s = self.settings.webhook_timeout_s * 2 + 10
        claimed = await self._write(
            lambda tx: tx.claim_webhook_deliveries(
                self.worker,
                # The database's clock, as for jobs' leases: senders on machines whose
                # clocks disagree neither take a delivery another holds nor miss one due.
                now=tx.database_now(),
                lease_s=lease_s,
                limit=max(self.settings.webhook_concurrency, 1),
            )
        )
        if self._stopping:
            return 0  # stop() hands the claims back
        if claimed:
            await asyncio.gather(*(self._attempt(d, secret) for d, secret in claimed))
        return len(claimed)

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a transaction that runs to its end even if the caller is cancelled
        (and that :meth:`stop` waits for). ``store.run`` alone would drop a transaction
        still queued for the database thread when its caller is cancelled, losing the
        record of an attempt whose answer had arrived."""
        task = asyncio.ensure_future(self.store.run(fn, retries=3))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    async def _attempt(self, delivery: WebhookDeliveryRow, secret: str) -> None:
        assert self._session is not None
        number = delivery.attempts + 1
        at = _ids.now_iso()
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
        retry_in: float | None = None
        if status is not None and 200 <= status < 300:
            delivery.state = "succeeded"
            delivery.finished_at = _ids.now_iso()
        elif number >= self.settings.webhook_max_attempts:
            delivery.state = "failed"
            delivery.finished_at = _ids.now_iso()
        else:
            retry_in = backoff_s(
                number,
                initial_s=self.settings.webhook_retry_base_s,
                max_s=self.settings.webhook_retry_max_s,
            )
        attempt = WebhookAttemptRow(
            delivery_id=delivery.id,
            attempt=number,
            at=at,
            duration_ms=duration_ms,
            status_code=status,
            error=error,
        )

        def record(tx: Tx) -> None:
            # When the next attempt is due: by the database's clock, which every sender
            # compares it with (send_due).
            next_retry = tx.database_now() + retry_in if retry_in is not None else None
            delivery.next_attempt_at = next_retry
            attempt.next_retry_at = iso_from_epoch(next_retry)
            tx.record_webhook_attempt(self.worker, delivery, attempt)

        try:
            await self._write(record)
        except Exception:
            log.exception("recording webhook delivery %s failed", delivery.id)
        else:
            metrics.observe_webhook("retrying" if retry_in is not None else delivery.state)
