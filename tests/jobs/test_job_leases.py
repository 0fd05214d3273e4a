"""Leases on the database's clock and the attempt limit, on both backends.

A runner's own clock may be far off (servers on several machines share one database): a
lease is measured with the database's clock only, so a skewed runner neither steals a job
whose owner is alive nor leaves a dead owner's job unclaimed. Every claim counts one
attempt; a job claimed past ``job_max_attempts`` (its server died that often while running
it) ends failed ``ATTEMPTS_EXHAUSTED`` instead of running again.

The ``count`` kind and the fixtures are test_job_context's; PostgreSQL: a database of this
module's own (a runner claims any queued job of its database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from batchops.server.jobs.runner import JobKind, JobKinds, JobRunner
from batchops.server.settings import Settings
from batchops.store.base import JobRow, Store, Tx
from tests.conftest import make_sqlite_url
from tests.jobs.test_job_context import end_notes, ended, note_end, queue, run_count, store

__all__ = ["store"]

HOUR = 3600.0


@asynccontextmanager
async def running(store: Store, tmp_path: Path, **overrides: object) -> AsyncIterator[JobRunner]:
    """A started runner of the ``count`` kind (settings overridden), stopped after."""
    values: dict[str, object] = {
        "db_url": make_sqlite_url(tmp_path / "unused.db"),
        "job_poll_s": 0.05,
        "data_dir": str(tmp_path / "uploads"),
        "cleanup_interval_s": 0,
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    runner = JobRunner(store, settings, JobKinds({"count": JobKind(run_count)}, on_end=[note_end]))
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def claim_as(store: Store, worker: str, *, lease_s: float = 30.0) -> JobRow:
    """Claim the next job as another server would."""
    job = await store.run(lambda tx: tx.claim_job(worker, lease_s=lease_s))
    assert job is not None
    return job


async def lapse(store: Store, job: JobRow, by_s: float = 120.0) -> None:
    """Make the job's heartbeat ``by_s`` older, by the database's clock (its owner died)."""

    def older(tx: Tx) -> None:
        row = tx.get_job(job.id, for_update=True)
        assert row is not None
        assert row.heartbeat_at is not None
        row.heartbeat_at -= by_s
        tx.save_job(row)

    await store.run(older)


async def get(store: Store, job_id: str) -> JobRow:
    job = await store.run(lambda tx: tx.get_job(job_id))
    assert job is not None
    return job


@pytest.mark.parametrize("skew_s", [HOUR, -HOUR])
async def test_a_runner_with_a_skewed_clock_does_not_take_over_a_live_job(
    store: Store, tmp_path: Path, skew_clock: Callable[[float], None], skew_s: float
) -> None:
    live_id = await queue(store, "count", steps=1)
    live = await claim_as(store, "live-server")
    assert live.id == live_id
    skew_clock(skew_s)
    async with running(store, tmp_path, job_lease_s=30.0):
        # Claims take the oldest claimable job first: the live one, were it claimable.
        later = await ended(store, await queue(store, "count", steps=1))
    assert later.state == "succeeded"
    job = await get(store, live_id)
    assert (job.state, job.worker, job.revision, job.attempts) == (
        "running",
        "live-server",
        live.revision,
        1,
    )


@pytest.mark.parametrize("skew_s", [HOUR, -HOUR])
async def test_a_runner_with_a_skewed_clock_takes_over_a_job_whose_owner_died(
    store: Store, tmp_path: Path, skew_clock: Callable[[float], None], skew_s: float
) -> None:
    job_id = await queue(store, "count", steps=2)
    await lapse(store, await claim_as(store, "dead-server"))
    skew_clock(skew_s)
    async with running(store, tmp_path, job_lease_s=30.0) as runner:
        job = await ended(store, job_id)
    assert (job.state, job.checkpoint, job.attempts) == ("succeeded", 2, 2)
    assert job.worker is None
    assert runner.worker != "dead-server"


async def test_heartbeats_are_the_database_clock_whatever_the_runner_says(
    store: Store, skew_clock: Callable[[float], None]
) -> None:
    await queue(store, "count", steps=1)
    skew_clock(-HOUR)
    job = await claim_as(store, "a-server")
    await lapse(store, job)
    db_now = await store.run(lambda tx: tx.database_now())
    await store.run(lambda tx: tx.heartbeat_jobs("a-server"))
    renewed = await get(store, job.id)
    assert renewed.heartbeat_at is not None
    assert abs(renewed.heartbeat_at - db_now) < 60
    assert abs(db_now - time.time()) > HOUR - 60  # the skewed clock, not the database's


async def test_each_claim_counts_an_attempt_and_a_clean_hand_back_does_not(
    store: Store,
) -> None:
    job_id = await queue(store, "count", steps=1)
    first = await claim_as(store, "one")
    assert (first.id, first.attempts) == (job_id, 1)
    assert await store.run(lambda tx: tx.release_jobs("one")) == 1
    released = await get(store, job_id)
    assert (released.state, released.attempts) == ("queued", 0)
    second = await claim_as(store, "two")
    await lapse(store, second)
    third = await claim_as(store, "three")
    assert (third.id, third.attempts) == (job_id, 2)


async def died_running(store: Store, job_id: str, times: int) -> None:
    """``times`` servers claim the job, commit one chunk each, and die (their lease
    lapses): what a job that kills its process every time does."""
    for n in range(times):
        job = await claim_as(store, f"doomed-{n}")
        assert job.id == job_id

        def chunk(tx: Tx, worker: str = f"doomed-{n}") -> None:
            row = tx.get_job(job_id, for_update=True)
            assert row is not None
            assert row.worker == worker
            row.processed += 1
            row.succeeded += 1
            row.checkpoint += 1
            row.revision += 1
            tx.save_job(row, renew_lease=True)

        await store.run(chunk)
        await lapse(store, job)


async def test_a_job_whose_server_died_each_time_ends_attempts_exhausted_keeping_its_counters(
    store: Store, tmp_path: Path
) -> None:
    job_id = await queue(store, "count", steps=10)
    await died_running(store, job_id, 3)
    # Its input both ways it can be kept: chunk rows, and a file in the uploads directory.
    await store.run(lambda tx: tx.insert_upload_chunks(job_id, [(0, b"the input")], now=0.0))
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / job_id).write_bytes(b"the input")
    async with running(store, tmp_path, job_lease_s=30.0, job_max_attempts=3):
        job = await ended(store, job_id)
    assert job.state == "failed"
    assert job.error is not None
    assert job.error["code"] == "ATTEMPTS_EXHAUSTED"
    assert "3 times" in job.error["message"]
    assert job.error["attempts"] == 3
    assert (job.attempts, job.processed, job.succeeded, job.checkpoint) == (3, 3, 3, 3)
    assert job.worker is None
    assert job.finished_at is not None
    assert await end_notes(store, job_id) == ["failed"]  # the end hooks ran
    assert await store.run(lambda tx: tx.upload_extent(job_id)) == (0, 0)
    assert not (uploads / job_id).exists()


async def test_a_job_within_its_attempts_runs_again_from_its_checkpoint(
    store: Store, tmp_path: Path
) -> None:
    job_id = await queue(store, "count", steps=5)
    await died_running(store, job_id, 2)
    async with running(store, tmp_path, job_lease_s=30.0, job_max_attempts=3):
        job = await ended(store, job_id)
    assert (job.state, job.attempts, job.checkpoint, job.processed) == ("succeeded", 3, 5, 5)


async def test_a_job_claimed_past_its_attempts_ends_at_the_next_claim_while_others_run(
    store: Store, tmp_path: Path
) -> None:
    doomed = await queue(store, "count", steps=10)
    await died_running(store, doomed, 1)
    healthy = await queue(store, "count", steps=2)
    async with running(store, tmp_path, job_lease_s=30.0, job_max_attempts=1):
        done = await asyncio.gather(ended(store, doomed), ended(store, healthy))
    assert [(job.state, job.attempts) for job in done] == [("failed", 1), ("succeeded", 1)]
    assert done[0].error is not None
    assert done[0].error["code"] == "ATTEMPTS_EXHAUSTED"


def test_the_attempt_and_retention_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings()
    assert (defaults.job_max_attempts, defaults.job_retention_s) == (3, 7 * 86400)
    assert (defaults.idempotency_retention_s, defaults.cleanup_interval_s) == (86400, 300)
    monkeypatch.setenv("BATCHOPS_JOB_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("BATCHOPS_JOB_RETENTION_S", "3600")
    monkeypatch.setenv("BATCHOPS_IDEMPOTENCY_RETENTION_S", "0")
    monkeypatch.setenv("BATCHOPS_CLEANUP_INTERVAL_S", "2.5")
    settings = Settings.from_env()
    assert settings.job_max_attempts == 5
    assert settings.job_retention_s == 3600
    assert settings.idempotency_retention_s == 0
    assert settings.cleanup_interval_s == 2.5
    monkeypatch.setenv("BATCHOPS_JOB_RETENTION_S", "a week")
    with pytest.raises(ValueError, match="BATCHOPS_JOB_RETENTION_S"):
        Settings.from_env()
