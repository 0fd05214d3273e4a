"""The webhook sender stopping (a clean shutdown) with work in flight, on both backends:
what it had sent or claimed is recorded or handed back, never lost or left claimed.

The PostgreSQL database is shared by the test session, and a sender claims any tenant's
due deliveries: here it claims one at a time, the test's own first (due since 1970), and
each test cancels what it leaves pending."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import pytest

from batchops.server.settings import Settings
from batchops.server.webhooks import delivery as delivery_module
from batchops.server.webhooks.delivery import WebhookSender
from batchops.store.base import Store, Tx, WebhookDeliveryRow, WebhookRow
from tests.jobs.conftest import settings_for
from tests.webhooks.webhook_receiver import run_receiver

T = TypeVar("T")

SECRET = "s3cret-s3cret-s3cret"
AT = "2026-01-01T00:00:00.000Z"


class SlowStore:
    """``store`` whose n-th transaction (0-based) is slow: ``in_thread_s`` inside the
    database thread (the transaction is running), ``before_s`` before it is handed to the
    store (it has not started: as when it waits for the database thread or a retry)."""

    def __init__(self, store: Store, nth: int, *, in_thread_s: float = 0, before_s: float = 0):
        self.store = store
        self.nth = nth
        self.in_thread_s = in_thread_s
        self.before_s = before_s
        self.calls = 0
        self.started = threading.Event()  # the slow transaction was reached

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        call, self.calls = self.calls, self.calls + 1
        if call != self.nth:
            return await self.store.run(fn, retries=retries)
        self.started.set()
        await asyncio.sleep(self.before_s)

        def slow(tx: Tx) -> T:
            time.sleep(self.in_thread_s)
            return fn(tx)

        return await self.store.run(slow, retries=retries)


@pytest.fixture
async def hooks(store: Store, tenant: str) -> AsyncIterator[list[str]]:
    """The ids of the test's webhooks: deleted afterwards (their pending deliveries are
    cancelled, so no later sender attempts them)."""
    ids: list[str] = []
    yield ids
    for webhook_id in ids:

        def delete(tx: Tx, webhook_id: str = webhook_id) -> bool:
            return tx.delete_webhook(tenant, webhook_id)

        await store.run(delete)


async def add_delivery(store: Store, tenant: str, url: str, hooks: list[str]) -> str:
    """A webhook of ``tenant`` and one delivery to it, due before any other; its id."""
    hook = WebhookRow(
        id=f"wh_{uuid.uuid4().hex}",
        tenant=tenant,
        url=url,
        events=["job.succeeded"],
        secret=SECRET,
        created_at=AT,
    )
    row = WebhookDeliveryRow(
        id=f"dl_{uuid.uuid4().hex}",
        tenant=tenant,
        webhook_id=hook.id,
        job_id=None,
        event="job.succeeded",
        url=url,
        payload='{"event": "job.succeeded"}',
        state="pending",
        created_at=AT,
        next_attempt_at=0.0,
    )
    hooks.append(hook.id)
    await store.run(lambda tx: tx.insert_webhook(hook))
    await store.run(lambda tx: tx.insert_webhook_deliveries([row]))
    return row.id


def sender_settings(store: Store) -> Settings:
    # No retry comes due during a test: each test sees one attempt at most.
    return settings_for(
        store.url,
        allow_private_webhooks=True,
        webhook_poll_s=0.05,
        webhook_retry_base_s=60,
        webhook_concurrency=1,
    )


async def wait_until(condition: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def state_of(store: Store, tenant: str) -> tuple[WebhookDeliveryRow, list[Any]]:
    (row,) = await store.run(lambda tx: tx.list_webhook_deliveries(tenant))
    attempts = await store.run(lambda tx: tx.list_webhook_attempts([row.id]))
    return row, [(a.attempt, a.status_code, a.error) for a in attempts]


async def test_an_attempt_in_flight_when_the_sender_stops_is_finished_and_recorded_not_sent_again(
    store: Store, tenant: str, hooks: list[str]
) -> None:
    async with run_receiver(SECRET) as receiver:
        receiver.delay_s = 0.3  # still answering when the sender is told to stop
        await add_delivery(store, tenant, receiver.url, hooks)
        sender = WebhookSender(store, sender_settings(store))
        await sender.start()
        await receiver.wait_hits(1)
        await sender.stop()
        row, attempts = await state_of(store, tenant)
    assert attempts == [(1, 204, None)]
    assert (row.state, row.attempts, row.worker) == ("succeeded", 1, None)
    assert (receiver.hits, len(receiver.accepted)) == (1, 1)


async def test_a_claim_still_committing_when_the_sender_stops_is_handed_back_at_once(
    store: Store, tenant: str, hooks: list[str]
) -> None:
    async with run_receiver(SECRET) as receiver:
        await add_delivery(store, tenant, receiver.url, hooks)
        slow = SlowStore(store, 0, in_thread_s=0.3)  # the first transaction: the claim
        sender = WebhookSender(cast(Store, slow), sender_settings(store))
        await sender.start()
        await wait_until(slow.started.is_set)
        await sender.stop()
        await asyncio.sleep(0.5)  # past the claim's commit, were it still running
        row, attempts = await state_of(store, tenant)
    # Due now for the next sender, not held by this one for the claim's lease.
    assert (row.state, row.worker, attempts) == ("pending", None, [])
    assert row.next_attempt_at is not None
    assert row.next_attempt_at <= time.time()
    assert receiver.hits == 0  # a stopping sender starts no attempt


async def test_an_answer_that_arrived_is_recorded_even_when_the_stop_grace_is_over(
    store: Store, tenant: str, hooks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "_STOP_GRACE_S", 0.0)
    async with run_receiver(SECRET, fail_first=1) as receiver:
        await add_delivery(store, tenant, receiver.url, hooks)
        # The second transaction, the record of the attempt, waits to start.
        slow = SlowStore(store, 1, before_s=0.3)
        sender = WebhookSender(cast(Store, slow), sender_settings(store))
        await sender.start()
        await wait_until(slow.started.is_set)
        await sender.stop()
        row, attempts = await state_of(store, tenant)
    assert len(attempts) == 1
    assert attempts[0][:2] == (1, 500)
    assert (row.state, row.attempts, row.last_status_code, row.worker) == ("pending", 1, 500, None)
    assert receiver.hits == 1
