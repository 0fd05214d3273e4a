"""Uploads stored in the database (``job_uploads``), on both backends: chunks written and read
back in order, sealed only when whole, deleted idempotently, and swept when no job will read
them, never while a request seals them."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from batchops.server import _ids
from batchops.store.base import JobRow, JobState, Store, Tx


def _job(job_id: str, state: JobState = "queued") -> JobRow:
    return JobRow(
        id=job_id,
        tenant=f"tenant_{uuid.uuid4().hex[:12]}",
        type="import",
        state=state,
        collection="c",
        options={},
        created_at=_ids.now_iso(),
        revision=1,
    )


def _id() -> str:
    return _ids.new_record_id()


async def _write(store: Store, job_id: str, chunks: list[bytes], *, at: float) -> None:
    for seq, data in enumerate(chunks):

        def insert(tx: Tx, s: int = seq, d: bytes = data) -> None:
            tx.insert_upload_chunks(job_id, [(s, d)], now=at)

        await store.run(insert)


async def test_chunks_come_back_in_order_byte_exact_and_the_extent_reads_their_sizes(
    store: Store,
) -> None:
    job_id = _id()
    chunks = [bytes(range(256)) * 4096, b"\x00" * 10, b"last"]  # 1 MiB, NULs, a tail
    await _write(store, job_id, chunks[:1], at=time.time())
    await store.run(
        lambda tx: tx.insert_upload_chunks(job_id, [(1, chunks[1]), (2, chunks[2])], now=1.0)
    )
    back = [await store.run(lambda tx, s=seq: tx.upload_chunk(job_id, s)) for seq in range(3)]  # type: ignore[misc]
    assert back == chunks
    assert await store.run(lambda tx: tx.upload_chunk(job_id, 3)) is None
    assert await store.run(lambda tx: tx.upload_extent(job_id)) == (3, sum(map(len, chunks)))
    assert await store.run(lambda tx: tx.upload_extent(_id())) == (0, 0)


async def test_delete_is_idempotent(store: Store) -> None:
    job_id = _id()
    await _write(store, job_id, [b"a", b"b"], at=time.time())
    assert await store.run(lambda tx: tx.delete_upload(job_id)) == 2
    assert await store.run(lambda tx: tx.delete_upload(job_id)) == 0
    assert await store.run(lambda tx: tx.upload_chunk(job_id, 0)) is None


async def test_a_seal_holds_only_when_every_chunk_is_there(store: Store) -> None:
    job_id = _id()
    await _write(store, job_id, [b"abc", b"de"], at=time.time())
    assert await store.run(lambda tx: tx.seal_upload(job_id, chunks=2, size=5))
    assert not await store.run(lambda tx: tx.seal_upload(job_id, chunks=3, size=6))
    assert not await store.run(lambda tx: tx.seal_upload(job_id, chunks=2, size=6))
    await store.run(lambda tx: tx.delete_upload(job_id))
    assert not await store.run(lambda tx: tx.seal_upload(job_id, chunks=2, size=5))


async def test_the_sweep_takes_orphans_once_old_and_ended_jobs_uploads_and_nothing_else(
    store: Store,
) -> None:
    now = time.time()
    orphan_old, orphan_new = _id(), _id()
    queued, running, ended = _id(), _id(), _id()
    for job_id in (orphan_old, queued, running, ended):
        await _write(store, job_id, [b"x", b"y"], at=now - 7200)
    # A request still writing: its first chunk is old, its newest one is not.
    await _write(store, orphan_new, [b"x"], at=now - 7200)
    await store.run(lambda tx: tx.insert_upload_chunks(orphan_new, [(1, b"y")], now=now))

    def jobs(tx: Tx) -> None:
        tx.insert_job(_job(queued))
        tx.insert_job(_job(running, "running"))
        tx.insert_job(_job(ended, "succeeded"))

    await store.run(jobs)
    mine = {orphan_old, orphan_new, queued, running, ended}
    purged: list[str] = []
    while True:  # (on PostgreSQL other tests' uploads may be swept too: keep to ours)
        batch = await store.run(lambda tx: tx.purge_uploads(before=now - 3600, limit=2))
        purged += batch
        if len(batch) < 2:
            break
    assert sorted(set(purged) & mine) == sorted([orphan_old, ended])
    for job_id, left in [(orphan_old, 0), (ended, 0), (orphan_new, 2), (queued, 2), (running, 2)]:
        assert (await store.run(lambda tx, j=job_id: tx.upload_extent(j)))[0] == left  # type: ignore[misc]
    assert await store.run(lambda tx: tx.purge_uploads(before=now - 3600)) == []


async def test_a_sweep_that_waits_on_a_seal_leaves_the_sealed_upload_alone(
    store: Store,
) -> None:
    if store.dialect == "sqlite":
        pytest.skip("SQLite runs one transaction at a time: a seal and a sweep cannot overlap")
    job_id = _id()
    await _write(store, job_id, [b"abc"], at=time.time() - 7200)  # old: a sweep candidate
    go = threading.Event()

    def seal_then_insert(tx: Tx) -> bool:
        sealed = tx.seal_upload(job_id, chunks=1, size=3)
        go.wait(10)  # the sweep starts meanwhile, finds no job, waits on the lock
        tx.insert_job(_job(job_id))
        return sealed

    sealing = asyncio.ensure_future(store.run(seal_then_insert))
    await asyncio.sleep(0.2)
    sweep = asyncio.ensure_future(
        store.run(lambda tx: tx.purge_uploads(before=time.time(), limit=1000))
    )
    await asyncio.sleep(0.5)
    assert not sweep.done()  # waiting on the seal's lock
    go.set()
    assert await sealing
    assert job_id not in await sweep
    assert await store.run(lambda tx: tx.upload_extent(job_id)) == (1, 3)
