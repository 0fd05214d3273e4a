"""Retention, on both backends: the periodic cleanup deletes jobs that ended longer ago than
``job_retention_s`` with everything that hangs on them, and ``Idempotency-Key`` rows last
used longer ago than ``idempotency_retention_s``; it keeps what is running, queued, recent,
or still has a notification to send, and it deletes in bounded steps that never leave a
row whose job is gone.

PostgreSQL: a database of this module's own (the purge works across tenants)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import make_sqlite_url

from batchops.server import _ids
from batchops.server.jobs.cleanup import Cleanup
from batchops.server.settings import Settings
from batchops.store import open_store
from batchops.store.base import (
    JobFailureRow,
    JobRow,
    JobState,
    Store,
    Tx,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookRow,
)

DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = make_sqlite_url(tmp_path / "retention.db")
    else:
        url = request.getfixturevalue("own_pg_url")
    opened = await open_store(url, pool_size=2)
    try:
        yield opened
    finally:
        await opened.close()


def cleanup(store: Store, **overrides: object) -> Cleanup:
    values: dict[str, object] = {"db_url": "sqlite:///unused.db"}
    values.update(overrides)
    return Cleanup(store, Settings(**values))  # type: ignore[arg-type]


@dataclass
class Made:
    """A job made by :func:`make_job`, and the ids of what hangs on it."""

    job_id: str
    tenant: str
    own_webhook: str
    subscription: str
    deliveries: list[str]


async def make_job(
    store: Store,
    *,
    state: JobState,
    finished_ago_s: float | None,
    delivery_state: str = "succeeded",
) -> Made:
    """A job of a tenant of its own with 3 failures, 2 stored bodies, its own webhook and
    a tenant subscription, one delivery to each (``delivery_state``) with one attempt."""
    tenant = f"tenant_{uuid.uuid4().hex[:12]}"
    job_id = _ids.new_record_id()
    own, sub = _ids.new_record_id(), _ids.new_record_id()
    deliveries = [_ids.new_record_id(), _ids.new_record_id()]

    def make(tx: Tx) -> None:
        now = tx.database_now()
        finished = None if finished_ago_s is None else _ids.iso_at(now - finished_ago_s)
        created = _ids.iso_at(now - 30 * DAY)
        tx.insert_job(
            JobRow(job_id, tenant, "count", state, None, {}, created, finished_at=finished)
        )
        tx.insert_job_failures(
            [JobFailureRow(job_id, n, "{}", "BAD_VALUE", "bad") for n in (1, 2, 3)]
        )
        tx.insert_job_results(job_id, [(0, b"input"), (1, b"result")])
        tx.insert_webhook(
            WebhookRow(own, tenant, "https://x.org/own", [], "s" * 16, created, job_id)
        )
        tx.insert_webhook(WebhookRow(sub, tenant, "https://x.org/sub", [], "s" * 16, created))
        for delivery_id, hook in zip(deliveries, (own, sub), strict=True):
            row = WebhookDeliveryRow(
                delivery_id, tenant, hook, job_id, "job.succeeded", "https://x.org", "{}",
                "pending", created, worker="sender",
            )  # fmt: skip
            tx.insert_webhook_deliveries([row])
            row.state = delivery_state  # type: ignore[assignment]
            row.attempts = 1
            attempt = WebhookAttemptRow(delivery_id, 1, created, 1.0, status_code=200)
            assert tx.record_webhook_attempt("sender", row, attempt)

    await store.run(make)
    return Made(job_id, tenant, own, sub, deliveries)


async def what_is_left(store: Store, made: Made) -> dict[str, int]:
    """How many rows of each kind of ``made`` are left."""

    def count(tx: Tx) -> dict[str, int]:
        deliveries = tx.list_webhook_deliveries(made.tenant, job_id=made.job_id)
        hooks = tx.webhooks_for_job(made.tenant, made.job_id)
        return {
            "job": int(tx.get_job(made.job_id) is not None),
            "failures": len(tx.list_job_failures(made.job_id)),
            "results": len(tx.list_job_results(made.job_id, after_seq=-1)),
            "own_webhook": sum(hook.id == made.own_webhook for hook in hooks),
            "deliveries": len(deliveries),
            "attempts": len(tx.list_webhook_attempts(made.deliveries)),
        }

    return await store.run(count)


ALL = {"job": 1, "failures": 3, "results": 2, "own_webhook": 1, "deliveries": 2, "attempts": 2}
NONE = dict.fromkeys(ALL, 0)


async def test_jobs_that_ended_before_the_retention_go_with_everything_that_hangs_on_them(
    store: Store,
) -> None:
    old = [
        await make_job(store, state=state, finished_ago_s=8 * DAY)
        for state in ("succeeded", "failed", "cancelled")
    ]
    counts = await cleanup(store, job_retention_s=7 * DAY).run_once()
    # (PostgreSQL: the module's other tests may have left old jobs too.)
    assert counts.jobs is not None
    assert counts.jobs >= 3 * sum(ALL.values())
    for made in old:
        assert await what_is_left(store, made) == NONE
        # The tenant's subscription is the tenant's, not the job's: it stays.
        hooks = await store.run(lambda tx, m=made: tx.list_webhooks(m.tenant))  # type: ignore[misc]
        assert [hook.id for hook in hooks] == [made.subscription]


async def test_running_queued_recent_and_still_notifying_jobs_are_kept(store: Store) -> None:
    kept = [
        await make_job(store, state="running", finished_ago_s=None),
        await make_job(store, state="queued", finished_ago_s=None),
        await make_job(store, state="succeeded", finished_ago_s=6 * DAY),
        await make_job(store, state="failed", finished_ago_s=8 * DAY, delivery_state="pending"),
    ]
    await cleanup(store, job_retention_s=7 * DAY).run_once()
    for made in kept:
        assert await what_is_left(store, made) == ALL


async def test_a_retention_of_zero_keeps_every_job(store: Store) -> None:
    made = await make_job(store, state="succeeded", finished_ago_s=400 * DAY)
    counts = await cleanup(store, job_retention_s=0).run_once()
    assert counts.jobs == 0
    assert await what_is_left(store, made) == ALL


async def test_each_purge_deletes_at_most_its_limit_and_leaves_nothing_whose_job_is_gone(
    store: Store,
) -> None:
    made = [await make_job(store, state="succeeded", finished_ago_s=8 * DAY) for _ in range(2)]
    before = _ids.iso_at(await store.run(lambda tx: tx.database_now()) - 7 * DAY)
    steps: list[int] = []
    while deleted := await store.run(lambda tx: tx.purge_jobs(finished_before=before, limit=4)):
        steps.append(deleted)
        for one in made:
            left = await what_is_left(store, one)
            if not left["job"]:
                assert left == NONE  # a job goes last: never a row whose job is gone
        assert len(steps) < 50
    assert max(steps) <= 4
    assert sum(steps) >= 2 * sum(ALL.values())
    for one in made:
        assert await what_is_left(store, one) == NONE


async def test_a_pass_leaves_the_work_to_another_process_cleaning_already(
    own_pg_url: str,
) -> None:
    # PostgreSQL only: on SQLite every transaction holds the write lock, so no two passes
    # ever overlap.
    store = await open_store(own_pg_url, pool_size=2)
    other = await open_store(own_pg_url, pool_size=1)
    try:
        made = await make_job(store, state="succeeded", finished_ago_s=8 * DAY)
        loop = asyncio.get_running_loop()
        held, release = asyncio.Event(), asyncio.Event()

        def hold_the_lock(tx: Tx) -> None:
            assert tx.try_lock(Cleanup.LOCK)
            loop.call_soon_threadsafe(held.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)

        holder = asyncio.create_task(other.run(hold_the_lock))
        await held.wait()
        try:
            counts = await cleanup(store, job_retention_s=7 * DAY).run_once()
        finally:
            release.set()
            await holder
        assert counts.jobs is None
        assert await what_is_left(store, made) == ALL
    finally:
        await other.close()
        await store.close()


async def claim_key(
    store: Store, tenant: str, key: str, *, ago_s: float, done: bool = False
) -> None:
    """Claim ``key`` as a request ``ago_s`` seconds ago would have (and answer it)."""

    def claim(tx: Tx) -> None:
        now = tx.database_now() - ago_s
        assert tx.idempotency_claim(tenant, key, "fp", now=now, stale_after_s=30, owner="o") is None
        if done:
            tx.idempotency_finish(tenant, key, 200, b"answer")

    await store.run(claim)


async def key_exists(store: Store, tenant: str, key: str) -> bool:
    """Whether the key is stored (a claim finds it: nothing is claimed)."""

    def probe(tx: Tx) -> bool:
        found = tx.idempotency_claim(
            tenant, key, "other-fp", now=tx.database_now(), stale_after_s=1e12, owner="probe"
        )
        if found is None:  # it was not there: this claimed it; take that back
            tx.idempotency_release(tenant, key, "probe")
        return found is not None

    return bool(await store.run(probe))


async def test_idempotency_keys_last_used_before_the_retention_are_deleted_with_their_progress(
    store: Store, tenant: str
) -> None:
    await claim_key(store, tenant, "old-done", ago_s=2 * DAY, done=True)
    await claim_key(store, tenant, "old-in-flight", ago_s=2 * DAY)
    await store.run(lambda tx: tx.idempotency_save_progress(tenant, "old-in-flight", 1, b"p1"))
    await claim_key(store, tenant, "live-done", ago_s=0.5 * DAY, done=True)
    await claim_key(store, tenant, "live-in-flight", ago_s=0)
    await store.run(lambda tx: tx.idempotency_save_progress(tenant, "live-in-flight", 1, b"p1"))
    # Released with progress just now (stored as minus its release time): young, kept.
    await claim_key(store, tenant, "released", ago_s=2 * DAY)
    await store.run(lambda tx: tx.idempotency_save_progress(tenant, "released", 1, b"p1"))
    await store.run(lambda tx: tx.idempotency_release(tenant, "released", "o"))

    counts = await cleanup(store, job_retention_s=0, idempotency_retention_s=DAY).run_once()

    assert counts.idempotency_keys == 3  # two keys and one part of progress
    assert not await key_exists(store, tenant, "old-done")
    assert not await key_exists(store, tenant, "old-in-flight")
    assert await store.run(lambda tx: tx.idempotency_progress(tenant, "old-in-flight")) == []
    for key in ("live-done", "live-in-flight", "released"):
        assert await key_exists(store, tenant, key), key
        assert key == "live-done" or await store.run(
            lambda tx, k=key: tx.idempotency_progress(tenant, k)  # type: ignore[misc]
        ) == [b"p1"]


async def test_a_cleanup_pass_sweeps_the_chunks_of_an_upload_whose_request_died(
    store: Store, tmp_path: Path
) -> None:
    from batchops.server.jobs.inputs import DatabaseInputs

    abandoned = f"job_{uuid.uuid4().hex[:12]}"  # chunks stored, the job never made
    await store.run(
        lambda tx: tx.insert_upload_chunks(abandoned, [(0, b"k,n\n"), (1, b"a,1\n")], now=0.0)
    )
    inputs = DatabaseInputs(store, tmp_path / "uploads")
    try:
        counts = await Cleanup(store, Settings(db_url="sqlite:///unused.db"), inputs).run_once()
    finally:
        await inputs.close()
    assert counts.inputs >= 1
    assert await store.run(lambda tx: tx.upload_extent(abandoned)) == (0, 0)
