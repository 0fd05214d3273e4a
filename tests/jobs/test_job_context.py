"""The scheduler's contract with a job kind, on both backends: a kind registered at start
runs through its JobContext (start, chunk commits with checkpoints, fencing, cancel,
finish), and the registry's end hooks run in the transaction that ends the job.

A kind of this module's own (``count``: one chunk per step, up to ``options.steps``) is
run by a JobRunner built here, so no other kind is involved. PostgreSQL: a database of
this module's own (a runner claims any queued job of its database)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchops.server import _ids
from batchops.server.app import job_kinds
from batchops.server.jobs.runner import JobContext, JobKind, JobKinds, JobRunner
from batchops.server.jobs.schemas import JOB_TYPES, TERMINAL_STATES
from batchops.server.settings import Settings
from batchops.store import open_store
from batchops.store.base import JobFailureRow, JobRow, Store, Tx
from tests.conftest import make_sqlite_url

ENDED = "ENDED"  # the code of the row the test's end hook writes


async def run_count(ctx: JobContext) -> None:
    """The test kind: ``steps`` chunks, each moving the checkpoint by one."""
    steps = int(ctx.job.options["steps"])
    job = await ctx.start()
    while job.checkpoint < steps:

        def apply(tx: Tx) -> JobRow:
            mine = ctx.own(tx)
            if mine.cancel_requested:
                return ctx.cancel(tx, mine)
            return ctx.checkpoint(tx, mine, mine.checkpoint + 1, processed=1, succeeded=1, failed=0)

        job = await ctx.commit(apply)
    await ctx.finish("succeeded")


def note_end(tx: Tx, job: JobRow) -> None:
    """The test's end hook: a row written in the job's terminal transaction."""
    tx.insert_job_failures([JobFailureRow(job.id, 10**6, "", ENDED, job.state)])


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = make_sqlite_url(tmp_path / "jobs.db")
    else:
        url = request.getfixturevalue("own_pg_url")
    opened = await open_store(url, pool_size=2)
    try:
        yield opened
    finally:
        await opened.close()


def runner_settings(tmp_path: Path) -> Settings:
    """A runner's settings: a quick poll, uploads under ``tmp_path`` (the store is given)."""
    return Settings(
        db_url=make_sqlite_url(tmp_path / "unused.db"),
        job_poll_s=0.05,
        data_dir=str(tmp_path / "uploads"),
    )


@pytest.fixture
async def runner(store: Store, tmp_path: Path) -> AsyncIterator[JobRunner]:
    settings = runner_settings(tmp_path)
    kinds = JobKinds({"count": JobKind(run=run_count)}, on_end=[note_end])
    started = JobRunner(store, settings, kinds)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def queue(store: Store, job_type: str, **options: object) -> str:
    job = JobRow(
        id=_ids.new_record_id(),
        tenant=f"tenant_{uuid.uuid4().hex[:12]}",
        type=job_type,
        state="queued",
        collection=None,
        options=dict(options),
        created_at=_ids.now_iso(),
        revision=1,
    )
    await store.run(lambda tx: tx.insert_job(job))
    return job.id


async def ended(store: Store, job_id: str) -> JobRow:
    for _ in range(600):
        job = await store.run(lambda tx: tx.get_job(job_id))
        assert job is not None
        if job.state in TERMINAL_STATES:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not end: {job}")


async def end_notes(store: Store, job_id: str) -> list[str]:
    rows = await store.run(lambda tx: tx.list_job_failures(job_id, after_row=0, limit=100))
    return [row.message for row in rows if row.code == ENDED]


def test_the_app_registers_a_kind_for_every_job_type_the_api_names() -> None:
    assert job_kinds().types == set(JOB_TYPES)


async def test_a_registered_kind_runs_its_job_chunk_by_chunk_to_the_end(
    store: Store, runner: JobRunner
) -> None:
    committed: list[int] = []

    async def after(job: JobRow) -> None:
        committed.append(job.checkpoint)

    runner.after_chunk = after
    job_id = await queue(store, "count", steps=3)
    job = await ended(store, job_id)
    assert (job.state, job.checkpoint, job.processed, job.succeeded) == ("succeeded", 3, 3, 3)
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.worker is None
    assert committed == [1, 2, 3]
    assert await end_notes(store, job_id) == ["succeeded"]


async def test_a_job_of_a_type_no_kind_is_registered_for_fails_naming_the_known_ones(
    store: Store, runner: JobRunner
) -> None:
    job_id = await queue(store, "mystery")
    job = await ended(store, job_id)
    assert job.state == "failed"
    assert job.error is not None
    assert job.error["code"] == "UNKNOWN_JOB_TYPE"
    assert "'mystery'" in job.error["message"]
    assert "count" in job.error["message"]
    assert await end_notes(store, job_id) == ["failed"]


async def test_a_cancel_requested_mid_job_ends_it_at_the_next_chunk_with_the_end_hooks(
    store: Store, runner: JobRunner
) -> None:
    async def cancel_once(job: JobRow) -> None:
        runner.after_chunk = None

        def request(tx: Tx) -> None:
            row = tx.get_job(job.id, for_update=True)
            assert row is not None
            row.cancel_requested = True
            tx.save_job(row)

        await store.run(request)

    runner.after_chunk = cancel_once
    job_id = await queue(store, "count", steps=5)
    job = await ended(store, job_id)
    assert (job.state, job.checkpoint, job.processed) == ("cancelled", 1, 1)
    assert job.worker is None
    assert await end_notes(store, job_id) == ["cancelled"]


async def test_a_job_another_runner_took_over_stops_without_applying_its_next_chunk(
    store: Store, runner: JobRunner
) -> None:
    taken = asyncio.Event()

    async def take_over(job: JobRow) -> None:
        runner.after_chunk = None

        def steal(tx: Tx) -> None:
            row = tx.get_job(job.id, for_update=True)
            assert row is not None
            row.worker = "another-runner"
            tx.save_job(row)

        await store.run(steal)
        taken.set()

    runner.after_chunk = take_over
    job_id = await queue(store, "count", steps=5)
    await asyncio.wait_for(taken.wait(), 10)
    for _ in range(100):  # the runner lets go of the job once its next chunk is fenced off
        if not runner._active:
            break
        await asyncio.sleep(0.02)
    assert not runner._active
    job = await store.run(lambda tx: tx.get_job(job_id))
    assert job is not None
    assert (job.state, job.worker, job.checkpoint, job.processed) == (
        "running",
        "another-runner",
        1,
        1,
    )
    assert await end_notes(store, job_id) == []

    def settle(tx: Tx) -> None:  # leave nothing running for the module's other tests
        row = tx.get_job(job_id, for_update=True)
        assert row is not None
        row.state, row.worker = "cancelled", None
        tx.save_job(row)

    await store.run(settle)


def _slow_third_chunk(in_tx: threading.Event, hold_s: float) -> JobKind:
    """``count``, but the transaction of the third chunk takes ``hold_s`` (in the database
    thread), and says when it has begun."""

    async def run(ctx: JobContext) -> None:
        job = await ctx.start()
        while job.checkpoint < int(ctx.job.options["steps"]):

            def apply(tx: Tx) -> JobRow:
                mine = ctx.own(tx)
                if mine.checkpoint == 2:
                    in_tx.set()
                    time.sleep(hold_s)
                return ctx.checkpoint(
                    tx, mine, mine.checkpoint + 1, processed=1, succeeded=1, failed=0
                )

            job = await ctx.commit(apply)
        await ctx.finish("succeeded")

    return JobKind(run=run)


async def _inside_the_third_chunk(
    store: Store, settings: Settings, *, chunk_s: float
) -> tuple[JobRunner, str]:
    """A started runner whose 50-step job is inside its third chunk's transaction, which
    takes ``chunk_s``: (the runner, the job's id)."""
    in_tx = threading.Event()
    runner = JobRunner(store, settings, JobKinds({"count": _slow_third_chunk(in_tx, chunk_s)}))
    await runner.start()
    job_id = await queue(store, "count", steps=50)
    assert await asyncio.to_thread(in_tx.wait, 10)
    return runner, job_id


async def test_a_graceful_stop_lets_the_chunk_being_written_commit_then_hands_the_job_back(
    store: Store, tmp_path: Path
) -> None:
    settings = runner_settings(tmp_path)
    runner, job_id = await _inside_the_third_chunk(store, settings, chunk_s=0.5)

    started = time.monotonic()
    await runner.stop(grace_s=10)

    assert time.monotonic() - started < 5  # the chunk, not the grace
    job = await store.run(lambda tx: tx.get_job(job_id))
    assert job is not None
    # The third chunk committed; the fourth was never begun; the job waits in the queue.
    assert (job.state, job.worker, job.checkpoint, job.processed) == ("queued", None, 3, 3)
    assert job.attempts == 0  # a clean hand-back is no attempt
    assert job.finished_at is None
    assert not runner._active

    # Another runner resumes it from its checkpoint, to the end.
    again = JobRunner(store, settings, JobKinds({"count": JobKind(run=run_count)}))
    await again.start()
    try:
        done = await ended(store, job_id)
    finally:
        await again.stop()
    assert (done.state, done.checkpoint, done.processed) == ("succeeded", 50, 50)


async def test_a_stop_whose_grace_runs_out_cancels_the_job_and_still_hands_it_back(
    store: Store, tmp_path: Path
) -> None:
    runner, job_id = await _inside_the_third_chunk(store, runner_settings(tmp_path), chunk_s=1.0)

    await runner.stop(grace_s=0.1)

    job = await store.run(lambda tx: tx.get_job(job_id))
    assert job is not None
    # The chunk in flight finished whole in the database thread, before the release or
    # not at all: the checkpoint and the counters agree either way.
    assert (job.state, job.worker) == ("queued", None)
    assert job.checkpoint in (2, 3)
    assert job.processed == job.checkpoint


async def test_a_stop_right_after_a_wake_up_still_stops_claiming(
    store: Store, tmp_path: Path
) -> None:
    # The claim loop's idle wait (asyncio.wait_for) swallows a cancel that lands as the
    # wait ends, on Python 3.11: a job ending just before a stop wakes it so.
    settings = Settings(
        db_url=make_sqlite_url(tmp_path / "unused.db"), data_dir=str(tmp_path / "uploads")
    )
    for _ in range(5):
        runner = JobRunner(store, settings, JobKinds({"count": JobKind(run=run_count)}))
        await runner.start()
        await asyncio.sleep(0.05)  # idle in its wait
        runner.wake()
        started = time.monotonic()
        await asyncio.wait_for(runner.stop(grace_s=5), 30)
        assert time.monotonic() - started < 1
