"""An import's upload is readable by every process of the database: apps in this process
("nodes"), each with a data directory of its own (no shared disk), on one database. The
front takes uploads and runs no job (``role="api"``); workers run jobs.

Uploads are stored in the database: the default on PostgreSQL, ``upload_storage =
"database"`` on SQLite (one file shared by processes of one machine). PostgreSQL: a
database of this module's own (a runner claims any queued job of its database, whoever
queued it).
"""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.jobs.inputs import DatabaseInputs, JobInputs, upload_storage
from batchops.server.jobs.runner import JobRunner
from batchops.server.settings import Settings
from batchops.store.base import JobRow, Store, Tx
from tests.conftest import make_sqlite_url
from tests.jobs.conftest import records, upload, wait_done

MiB = 1 << 20


def _csv(rows: int, pad: int = 0) -> bytes:
    filler = "x" * pad
    return ("k,n,pad\n" + "".join(f"key{i},{i},{filler}\n" for i in range(rows))).encode()


class Node:
    """One app (a "server process"), its own data directory, a client of the shared
    tenant."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, data_dir: Path) -> None:
        self.app = app
        self.client = client
        self.data_dir = data_dir

    @property
    def store(self) -> Store:
        store: Store = self.app.state.services.store
        return store

    @property
    def inputs(self) -> JobInputs:
        inputs: JobInputs = self.app.state.services.inputs
        return inputs

    @property
    def runner(self) -> JobRunner:
        runner: JobRunner | None = self.app.state.services.jobs
        assert runner is not None
        return runner

    def files(self) -> list[str]:
        """Every file under the data directory (local copies included), relative."""
        if not self.data_dir.exists():
            return []
        return sorted(
            str(p.relative_to(self.data_dir))
            for p in self.data_dir.rglob("*")
            if p.is_file() and p.name != ".lock"
        )


@pytest.fixture(params=["postgresql", "sqlite"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """The one database every node uses, and the settings that store uploads in it."""
    if request.param == "sqlite":
        return make_sqlite_url(tmp_path / "shared.db"), {"upload_storage": "database"}
    url: str = request.getfixturevalue("own_pg_url")
    return url, {}


StartNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node(
    shared_db: tuple[str, dict[str, Any]], tmp_path: Path
) -> AsyncIterator[StartNode]:
    """``await start_node(name, **settings)``: a node with the data directory
    ``tmp_path/name``, stopped at the end of the test (last started, first stopped)."""
    url, storage = shared_db
    key: list[str] = []
    async with AsyncExitStack() as stack:

        async def start(name: str, **overrides: Any) -> Node:
            values: dict[str, Any] = {
                "db_url": url,
                "print_first_key": False,
                "job_poll_s": 0.05,
                "data_dir": str(tmp_path / name),
                **storage,
                **overrides,
            }
            return await stack.enter_async_context(_node(Settings(**values), key))

        yield start


@asynccontextmanager
async def _node(settings: Settings, key: list[str]) -> AsyncIterator[Node]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        store: Store = app.state.services.store
        if not key:
            made, _ = await store.run(lambda tx: create_api_key(tx, f"t_{uuid.uuid4().hex[:10]}"))
            key.append(made)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key[0]}"},
        ) as client:
            yield Node(app, client, Path(settings.data_dir or ""))


async def _no_files(node: Node) -> list[str]:
    """The node's files once its runner has let go of its copies (they are deleted just
    after the job's end commits, when a client may already see it ended): [] within 2 s."""
    for _ in range(100):
        if not node.files():
            break
        await asyncio.sleep(0.02)
    return node.files()


async def _extent(node: Node, job_id: str) -> tuple[int, int]:
    return await node.store.run(lambda tx: tx.upload_extent(job_id))


async def _keys(node: Node, collection: str) -> list[str]:
    return sorted(r["data"]["k"] for r in await records(node.client, collection))


async def test_an_upload_to_one_process_is_imported_exactly_by_another_with_no_shared_disk(
    start_node: StartNode,
) -> None:
    front = await start_node("front", role="api")
    rows = 3_000
    body = _csv(rows, pad=1000)  # ~3 MB: several chunk rows
    response = await upload(front.client, body, collection="shared", chunk_size=500)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert front.inputs.storage == "database"
    assert await _extent(front, job_id) == (3, len(body))  # 1 MiB chunks
    assert front.files() == []  # nothing on the front's disk

    worker = await start_node("worker")
    copies: list[list[str]] = []

    async def look(job: JobRow) -> None:
        copies.append(worker.files())

    worker.runner.after_chunk = look
    job = await wait_done(worker.client, job_id)
    assert job["state"] == "succeeded", job["error"]
    assert (job["total"], job["processed"], job["succeeded"], job["failed"]) == (
        rows,
        rows,
        rows,
        0,
    )
    assert await _keys(front, "shared") == sorted(f"key{i}" for i in range(rows))
    # The worker read its local copy, which is gone now, as are the chunk rows.
    assert copies
    assert all(len(c) == 1 and c[0].startswith("cache/") and c[0].endswith(job_id) for c in copies)
    assert await _extent(front, job_id) == (0, 0)
    assert await _no_files(worker) == []


async def test_a_job_taken_over_after_its_runner_died_copies_its_input_again_and_ends_exact(
    start_node: StartNode,
) -> None:
    front = await start_node("front", role="api")
    rows = 5_000
    response = await upload(front.client, _csv(rows), collection="taken", chunk_size=1000)
    job_id = response.json()["id"]

    # Worker A claims the job, commits its first chunk, then "dies": its heartbeat stops,
    # and its job task never comes back from that chunk (as if kill -9'd mid-import).
    # Its stuck job task is given no grace when the test stops its app (30 s otherwise).
    dead = await start_node("dead", shutdown_grace_s=0.1)
    first_chunk = asyncio.Event()
    copy_of_dead: list[str] = []

    async def die(job: JobRow) -> None:
        assert job.id == job_id
        copy_of_dead.extend(dead.files())
        for task in dead.runner._tasks:  # the claim loop and the heartbeat
            task.cancel()
        first_chunk.set()
        await asyncio.Event().wait()

    dead.runner.after_chunk = die
    await asyncio.wait_for(first_chunk.wait(), 30)
    assert copy_of_dead == [f"cache/{p.split('/')[1]}/{job_id}" for p in copy_of_dead]
    assert len(copy_of_dead) == 1
    stuck = await front.store.run(lambda tx: tx.get_job(job_id))
    assert stuck is not None
    assert (stuck.state, stuck.checkpoint, stuck.worker) == ("running", 1000, dead.runner.worker)

    # Worker B, on another "machine", takes it over once the lease lapsed.
    taker = await start_node("taker", job_lease_s=0.5)
    job = await wait_done(taker.client, job_id)
    assert job["state"] == "succeeded", job["error"]
    assert (job["processed"], job["succeeded"], job["failed"]) == (rows, rows, 0)
    assert await _keys(front, "taken") == sorted(f"key{i}" for i in range(rows))
    assert await _extent(front, job_id) == (0, 0)
    assert await _no_files(taker) == []
    assert dead.files() == copy_of_dead  # until that process ends (here: its app stops)


@pytest.mark.parametrize("how", ["failed", "cancelled-queued", "cancelled-running"])
async def test_the_upload_is_gone_once_the_job_ends_however_it_ends(
    start_node: StartNode, how: str
) -> None:
    front = await start_node("front", role="api")
    # Strict validation with a typed mapping: a bad row fails the job before it writes.
    mapping = '{"k": {"field": "k"}, "n": {"field": "n", "type": "int"}}'
    body = _csv(2_000) + (b"bad,x,\n" if how == "failed" else b"")
    response = await upload(front.client, body, collection="ends", chunk_size=100, mapping=mapping)
    job_id = response.json()["id"]
    assert (await _extent(front, job_id))[0] == 1
    if how == "cancelled-queued":
        assert (await front.client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 202
        assert (await _extent(front, job_id)) == (0, 0)  # with the cancel's transaction
        assert (await wait_done(front.client, job_id))["state"] == "cancelled"
        return
    worker = await start_node("worker")
    if how == "cancelled-running":

        async def cancel(job: JobRow) -> None:
            worker.runner.after_chunk = None
            assert (await front.client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 202

        worker.runner.after_chunk = cancel
    job = await wait_done(worker.client, job_id)
    assert job["state"] == how.split("-")[0], job
    if how == "failed":
        assert job["error"]["code"] == "VALIDATION_FAILED"
    assert await _extent(front, job_id) == (0, 0)
    assert await _no_files(worker) == []


async def test_a_request_that_dies_mid_upload_leaves_no_job_and_nothing_stored(
    start_node: StartNode,
) -> None:
    front = await start_node("front", role="api")
    before = await front.store.run(_upload_ids)

    async def body() -> AsyncIterator[bytes]:
        yield b"k,n\n"
        for i in range(40):  # ~2.6 MB: two chunk rows are stored before the failure
            yield f"key{i},{i}\n".encode() * 6_000
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await front.client.post(
            "/v1/imports",
            params={"collection": "died"},
            content=body(),
            headers={"Content-Type": "text/csv"},
        )
    assert (await front.client.get("/v1/jobs")).json()["jobs"] == []
    assert await front.store.run(_upload_ids) == before
    assert front.files() == []


async def test_chunks_of_a_request_killed_mid_upload_have_no_job_and_the_sweep_takes_them(
    start_node: StartNode,
) -> None:
    front = await start_node("front", role="api")
    # Killed: chunks written, neither published nor aborted.
    killed = front.inputs.receive(str(uuid.uuid4()))
    for _ in range(3):
        await killed.write(bytearray(b"k,n\n" * 100_000))
    await killed.finish()
    # Alive: a sealed upload with its queued job, and one still arriving.
    response = await upload(front.client, _csv(10), collection="kept")
    queued = response.json()["id"]
    arriving_id = str(uuid.uuid4())
    arriving = front.inputs.receive(arriving_id)
    await arriving.write(bytearray(b"k,n\n"))
    await arriving.finish()

    ids = await front.store.run(_upload_ids)
    assert {queued, arriving_id} <= ids
    killed_id = next(iter(ids - {queued, arriving_id}))
    assert (await front.client.get("/v1/jobs")).json()["jobs"][0]["id"] == queued  # only it

    # Not old enough yet: kept (it might be a slow request's).
    assert await front.inputs.purge() == 0
    await front.store.run(_age_chunks(killed_id, 7200))
    assert await front.inputs.purge() == 1
    assert await front.store.run(_upload_ids) == ids - {killed_id}
    assert await front.inputs.purge() == 0
    await arriving.abort()
    await front.client.post(f"/v1/jobs/{queued}/cancel")  # (no later test runs it)


def _upload_ids(tx: Tx) -> set[str]:
    rows = tx._run("SELECT DISTINCT job_id FROM job_uploads").fetchall()  # type: ignore[attr-defined]
    return {str(row[0]) for row in rows}


def _age_chunks(job_id: str, seconds: float) -> Callable[[Tx], None]:
    def age(tx: Tx) -> None:
        tx._run(  # type: ignore[attr-defined]
            "UPDATE job_uploads SET created_at = created_at - ? WHERE job_id = ?",
            (seconds, job_id),
        )

    return age


async def test_an_upload_and_its_local_copy_hold_a_few_mib_of_memory_whatever_the_size(
    start_node: StartNode,
) -> None:
    front = await start_node("front", role="api")
    size = 48 * MiB
    piece = (b"x" * 1023 + b"\n") * 64  # 64 KiB

    async def body() -> AsyncIterator[bytes]:
        yield b"line\n"
        for _ in range(size // len(piece)):
            yield piece

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        response = await front.client.post(
            "/v1/imports",
            params={"collection": "big", "format": "csv"},
            content=body(),
            headers={"Content-Type": "text/csv"},
        )
        _, upload_peak = tracemalloc.get_traced_memory()
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert response.json()["options"]["bytes"] == size + 5

        copies = DatabaseInputs(front.store, front.data_dir)
        tracemalloc.reset_peak()
        path = await copies.local_file(job_id, size=size + 5)
        _, copy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path is not None
    assert path.stat().st_size == size + 5
    await copies.close()
    assert not path.exists()
    await front.client.post(f"/v1/jobs/{job_id}/cancel")
    # ~1 MiB blocks: the one filling, the one being stored (and its driver's copy).
    assert upload_peak < 8 * MiB, f"upload peak {upload_peak / MiB:.1f} MiB"
    assert copy_peak < 8 * MiB, f"copy peak {copy_peak / MiB:.1f} MiB"


async def test_the_sweep_deletes_what_dead_processes_left_in_the_uploads_directory(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = await start_node("node", role="api", upload_storage="directory")
    directory = node.data_dir
    response = await upload(node.client, _csv(5), collection="queued")
    queued = response.json()["id"]
    response = await upload(node.client, _csv(5), collection="ended")
    ended = response.json()["id"]
    await node.client.post(f"/v1/jobs/{ended}/cancel")
    (directory / ended).write_bytes(b"left by a process killed before it deleted it")
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    for name in (f"{old}.part", old, f"{new}.part", new):
        (directory / name).write_bytes(b"k\n1\n")
    stamp = time.time() - 7200
    for name in (f"{old}.part", old):
        os.utime(directory / name, (stamp, stamp))
    # Local copies: a live process's, and a dead one's (its lock is free). (A process
    # sweeps the dead ones when it makes its own copies directory too: made after.)
    live = DatabaseInputs(node.store, directory)
    upload_id = str(uuid.uuid4())
    writer = live.receive(upload_id)
    await writer.write(bytearray(b"k\n1\n"))
    await writer.finish()
    await writer.publish(lambda tx: tx.insert_job(_job_row(upload_id)))
    assert await live.local_file(upload_id) is not None
    (directory / "cache" / "deadbeef").mkdir(parents=True)
    (directory / "cache" / "deadbeef" / ".lock").touch()
    (directory / "cache" / "deadbeef" / ended).write_bytes(b"x")

    # ended, the old <id>.part, the old <id> without a job, the dead process's copies.
    assert await node.inputs.purge() == 4
    left = sorted(p.name for p in directory.iterdir())
    assert left == sorted(["cache", queued, f"{new}.part", new])
    assert "deadbeef" not in [p.name for p in (directory / "cache").iterdir()]
    assert await live.local_file(upload_id) is not None  # a live process's copy stays
    await live.close()
    assert list((directory / "cache").iterdir()) == []
    for job_id in (queued, upload_id):  # (no later test runs them)
        await node.client.post(f"/v1/jobs/{job_id}/cancel")


def _job_row(job_id: str) -> JobRow:
    from batchops.server import _ids

    return JobRow(
        id=job_id,
        tenant="t_sweep",
        type="import",
        state="queued",
        collection="c",
        options={},
        created_at=_ids.now_iso(),
        revision=1,
    )


async def test_a_job_queued_with_its_upload_in_the_directory_runs_after_a_switch_to_the_database(
    start_node: StartNode,
) -> None:
    # Before an upgrade: uploads in the directory. After it: the database is the default,
    # and a job queued before still finds its file.
    before = await start_node("shared", role="api", upload_storage="directory")
    response = await upload(before.client, _csv(50), collection="switched")
    job_id = response.json()["id"]
    assert (before.data_dir / job_id).is_file()
    after = await start_node("shared", upload_storage="database")
    job = await wait_done(after.client, job_id)
    assert (job["state"], job["succeeded"]) == ("succeeded", 50)
    assert await _no_files(before) == []  # (its file goes just after the end commits)


@pytest.mark.parametrize(
    ("db_url", "setting", "expected"),
    [
        ("postgresql://u@h/db", None, "database"),
        ("sqlite:///x.db", None, "directory"),
        (None, None, "directory"),  # the default store is a SQLite file
        ("postgresql://u@h/db", "directory", "directory"),
        ("sqlite:///x.db", "database", "database"),
    ],
)
def test_uploads_go_to_the_database_on_postgresql_and_the_directory_on_sqlite_unless_set(
    db_url: str | None, setting: str | None, expected: str
) -> None:
    assert upload_storage(Settings(db_url=db_url, upload_storage=setting)) == expected


def test_the_upload_storage_comes_from_the_environment_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHOPS_UPLOAD_STORAGE", "directory")
    assert Settings.from_env(db_url="postgresql://u@h/db").upload_storage == "directory"
    monkeypatch.setenv("BATCHOPS_UPLOAD_STORAGE", "")
    assert Settings.from_env().upload_storage is None
    monkeypatch.setenv("BATCHOPS_UPLOAD_STORAGE", "s3")
    with pytest.raises(ValueError, match="BATCHOPS_UPLOAD_STORAGE"):
        Settings.from_env()
