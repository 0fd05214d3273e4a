"""Idempotency keys: claim, in-flight, finish, release, stale takeover."""

from __future__ import annotations

from collections.abc import Callable

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


def _claim(
    tenant: str, fingerprint: str, owner: str, now: float
) -> Callable[[Tx], IdempotencyRow | None]:
    return lambda tx: tx.idempotency_claim(
        tenant, "k", fingerprint, now=now, stale_after_s=60, owner=owner
    )


async def test_only_the_owner_of_a_claim_holds_it(store: Store, tenant: str) -> None:
    await store.run(_claim(tenant, "fp", "a", 1.0))
    assert await store.run(lambda tx: tx.idempotency_hold(tenant, "k", "a", now=2.0))
    assert not await store.run(lambda tx: tx.idempotency_hold(tenant, "k", "b", now=2.0))


async def test_holding_a_claim_keeps_it_from_going_stale(store: Store, tenant: str) -> None:
    await store.run(_claim(tenant, "fp", "a", 1.0))
    await store.run(lambda tx: tx.idempotency_hold(tenant, "k", "a", now=50.0))
    # 60 s after the claim but 11 s after its last sign of life: not stale.
    row = await store.run(_claim(tenant, "fp", "b", 61.0))
    assert row is not None
    assert row.owner == "a"


async def test_a_claim_taken_over_is_no_longer_held_by_its_first_owner(
    store: Store, tenant: str
) -> None:
    await store.run(_claim(tenant, "fp", "a", 1.0))
    assert await store.run(_claim(tenant, "fp", "b", 100.0)) is None
    assert not await store.run(lambda tx: tx.idempotency_hold(tenant, "k", "a", now=101.0))
    assert await store.run(lambda tx: tx.idempotency_hold(tenant, "k", "b", now=101.0))


async def test_progress_is_kept_in_order_and_dropped_when_the_key_is_finished(
    store: Store, tenant: str
) -> None:
    await store.run(_claim(tenant, "fp", "a", 1.0))

    def save(tx: Tx) -> None:
        tx.idempotency_save_progress(tenant, "k", 1, b"second")
        tx.idempotency_save_progress(tenant, "k", 0, b"first")

    await store.run(save)
    assert await store.run(lambda tx: tx.idempotency_progress(tenant, "k")) == [
        b"first",
        b"second",
    ]
    await store.run(lambda tx: tx.idempotency_finish(tenant, "k", 200, b"{}"))
    assert await store.run(lambda tx: tx.idempotency_progress(tenant, "k")) == []


async def test_a_released_claim_with_progress_is_resumable_at_once(
    store: Store, tenant: str
) -> None:
    await store.run(_claim(tenant, "fp", "a", 1.0))
    await store.run(lambda tx: tx.idempotency_save_progress(tenant, "k", 0, b"part"))
    await store.run(lambda tx: tx.idempotency_release(tenant, "k", "a"))
    # Not 60 s later: at once, and the progress is still there for the new owner.
    assert await store.run(_claim(tenant, "fp", "b", 2.0)) is None
    assert await store.run(lambda tx: tx.idempotency_progress(tenant, "k")) == [b"part"]


async def test_a_stale_claim_with_progress_is_not_taken_over_by_another_body(
    store: Store, tenant: str
) -> None:
    await store.run(_claim(tenant, "fp", "a", 1.0))
    await store.run(lambda tx: tx.idempotency_save_progress(tenant, "k", 0, b"part"))
    row = await store.run(_claim(tenant, "other body", "b", 100.0))
    assert row is not None
    assert (row.fingerprint, row.owner) == ("fp", "a")


async def test_releasing_someone_elses_claim_does_nothing(store: Store, tenant: str) -> None:
    await store.run(_claim(tenant, "fp", "a", 1.0))
    await store.run(lambda tx: tx.idempotency_release(tenant, "k", "b"))
    assert await store.run(lambda tx: tx.idempotency_hold(tenant, "k", "a", now=2.0))


async def test_a_released_claim_is_no_longer_held_by_its_owner(store: Store, tenant: str) -> None:
    # A transaction the owner started before it gave up must not be able to write.
    await store.run(_claim(tenant, "fp", "a", 1.0))
    await store.run(lambda tx: tx.idempotency_save_progress(tenant, "k", 0, b"part"))
    await store.run(lambda tx: tx.idempotency_release(tenant, "k", "a"))
    assert not await store.run(lambda tx: tx.idempotency_hold(tenant, "k", "a", now=2.0))
