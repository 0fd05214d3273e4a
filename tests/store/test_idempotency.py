"""Idempotency keys: claim, in-flight, finish, release, stale takeover."""

from __future__ import annotations

from batchops.store import IdempotencyRow, Store, Tx


async def test_the_first_claim_wins_and_a_second_claimer_sees_the_in_flight_row(
    store: Store, tenant: str
) -> None:
    first = await store.run(
        lambda tx: tx.idempotency_claim(tenant, "k", "fp1", now=100.0, stale_after_s=60)
    )
    assert first is None
    second = await store.run(
        lambda tx: tx.idempotency_claim(tenant, "k", "fp2", now=101.0, stale_after_s=60)
    )
    assert second == IdempotencyRow(tenant, "k", "fp1", "in_flight", 100.0)


async def test_finish_stores_the_response_for_later_claimers(store: Store, tenant: str) -> None:
    await store.run(lambda tx: tx.idempotency_claim(tenant, "k", "fp", now=1.0, stale_after_s=60))
    await store.run(lambda tx: tx.idempotency_finish(tenant, "k", 201, b'{"ok":true}'))
    row = await store.run(
        lambda tx: tx.idempotency_claim(tenant, "k", "fp", now=1000.0, stale_after_s=60)
    )
    assert row == IdempotencyRow(tenant, "k", "fp", "done", 1.0, 201, b'{"ok":true}')


async def test_a_stale_in_flight_claim_is_taken_over(store: Store, tenant: str) -> None:
    await store.run(lambda tx: tx.idempotency_claim(tenant, "k", "old", now=1.0, stale_after_s=60))
    taken = await store.run(
        lambda tx: tx.idempotency_claim(tenant, "k", "new", now=100.0, stale_after_s=60)
    )
    assert taken is None
    row = await store.run(
        lambda tx: tx.idempotency_claim(tenant, "k", "x", now=101.0, stale_after_s=60)
    )
    assert row == IdempotencyRow(tenant, "k", "new", "in_flight", 100.0)


async def test_a_released_claim_can_be_claimed_again(store: Store, tenant: str) -> None:
    await store.run(lambda tx: tx.idempotency_claim(tenant, "k", "a", now=1.0, stale_after_s=60))
    await store.run(lambda tx: tx.idempotency_release(tenant, "k"))
    again = await store.run(
        lambda tx: tx.idempotency_claim(tenant, "k", "b", now=2.0, stale_after_s=60)
    )
    assert again is None


async def test_keys_of_different_tenants_do_not_collide(store: Store, tenant: str) -> None:
    def claim_both(tx: Tx) -> list[IdempotencyRow | None]:
        return [
            tx.idempotency_claim(t, "same", "fp", now=1.0, stale_after_s=60)
            for t in (tenant, tenant + "_b")
        ]

    assert await store.run(claim_both) == [None, None]
