"""Webhook senders measure due times and claims with the database's clock, as job runners
do: a sender on a machine whose clock is off by an hour neither misses a delivery that is
due nor takes one another sender holds (both backends)."""

from __future__ import annotations

from collections.abc import Callable

from batchops.server.webhooks.delivery import WebhookSender
from batchops.store.base import Store
from tests.webhooks.test_webhook_sender_shutdown import (
    SECRET,
    add_delivery,
    hooks,
    sender_settings,
    state_of,
)
from tests.webhooks.webhook_receiver import run_receiver

__all__ = ["hooks"]  # the fixture, used by name

HOUR = 3600.0


async def test_a_sender_whose_clock_is_an_hour_behind_still_sends_a_delivery_due_now(
    store: Store, tenant: str, hooks: list[str], skew_clock: Callable[[float], None]
) -> None:
    async with run_receiver(SECRET) as receiver:
        delivery_id = await add_delivery(store, tenant, receiver.url, hooks)
        # Due from the database's now on (as the outbox makes a new one): claimed by a
        # sender that is gone, for 0 s. It is due since 1970 before that: the first claimed.
        claimed = await store.run(
            lambda tx: tx.claim_webhook_deliveries(
                "gone", now=tx.database_now(), lease_s=0, limit=1
            )
        )
        assert [d.id for d, _ in claimed] == [delivery_id]
        skew_clock(-HOUR)
        sender = WebhookSender(store, sender_settings(store))
        await sender.start()
        try:
            await receiver.wait_hits(1)
        finally:
            await sender.stop()
        row, attempts = await state_of(store, tenant)
    assert row.id == delivery_id
    assert attempts == [(1, 204, None)]


async def test_a_sender_whose_clock_is_an_hour_ahead_takes_no_delivery_another_sender_holds(
    store: Store, tenant: str, hooks: list[str], skew_clock: Callable[[float], None]
) -> None:
    async with run_receiver(SECRET) as receiver:
        delivery_id = await add_delivery(store, tenant, receiver.url, hooks)
        held = await store.run(
            lambda tx: tx.claim_webhook_deliveries(
                "another", now=tx.database_now(), lease_s=30, limit=1
            )
        )
        assert [d.id for d, _ in held] == [delivery_id]
        skew_clock(+HOUR)
        sender = WebhookSender(store, sender_settings(store))
        await sender.start()
        try:
            attempted = await sender.send_due()
        finally:
            await sender.stop()
            await store.run(lambda tx: tx.release_webhook_deliveries("another", now=0.0))
        row, attempts = await state_of(store, tenant)
    assert attempted == 0
    assert (receiver.hits, attempts) == (0, [])
    assert row.state == "pending"
