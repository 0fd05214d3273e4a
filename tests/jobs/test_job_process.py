"""Jobs in a real ``batchops serve`` process: SSE over TCP, kill -9 and resume, memory."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

from batchops.store import open_store
from tests.server.test_serve_process import Server, cli, new_key

pytestmark = pytest.mark.slow


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """``batchops serve`` with a 2 s job lease, so a restart reclaims a killed job fast."""
    monkeypatch.setenv("BATCHOPS_JOB_LEASE_S", "2")
    with Server(db_url, tmp_path).running() as srv:
        yield srv


def _write_csv(path: Path, rows: int, pad: int = 0) -> None:
    with path.open("w") as f:
        f.write("k,name,n\n")
        filler = "x" * pad
        for i in range(rows):
            f.write(f"key{i},name {i}{filler},{i}\n")


def _upload(server: Server, key: str, path: Path, **params: str) -> dict[str, Any]:
    def body() -> Iterator[bytes]:
        with path.open("rb") as f:
            while block := f.read(1 << 16):
                yield block

    response = httpx.post(
        f"{server.url}/v1/imports",
        params=params,
        content=body(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "text/csv"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _events(
    server: Server, key: str, job_id: str, last_id: str | None = None
) -> list[dict[str, Any]]:
    """Read the job's SSE stream to its end: [{"id", "event", "data"}]."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with httpx.stream(
        "GET", f"{server.url}/v1/jobs/{job_id}/events", headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
            elif line.startswith("id:"):
                current["id"] = line[3:].strip()
            elif line.startswith("event:"):
                current["event"] = line[6:].strip()
            elif line.startswith("data:"):
                current["data"] = orjson.loads(line[5:].strip())
    return events


def test_sse_reports_progress_until_complete_and_resumes_after_last_event_id(
    server: Server, tmp_path: Path
) -> None:
    key = new_key(server)
    path = tmp_path / "in.csv"
    _write_csv(path, 20_000)
    job = _upload(server, key, path, collection="sse", chunk_size="500")
    events = _events(server, key, job["id"])
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(set(ids))
    assert events[-1]["event"] == "complete"
    assert events[-1]["data"]["state"] == "succeeded"
    assert events[-1]["data"]["succeeded"] == 20_000
    assert all(e["event"] == "progress" for e in events[:-1])
    assert len(events) >= 2
    middle = events[len(events) // 2 - 1]
    resumed = _events(server, key, job["id"], last_id=middle["id"])
    assert resumed
    assert all(int(e["id"]) > int(middle["id"]) for e in resumed)
    assert resumed[-1]["event"] == "complete"
    assert _events(server, key, job["id"], last_id=events[-1]["id"]) == []


async def _keys_in(db_url: str, tenant: str, collection: str) -> list[str]:
    store = await open_store(db_url, pool_size=1)
    try:
        out: list[str] = []
        after: str | None = None
        while True:
            page = await store.run(
                lambda tx, a=after: tx.list_records(  # type: ignore[misc]
                    tenant, collection, filters={}, after_id=a, limit=5000
                )
            )
            out.extend(r.data["k"] for r in page)
            if len(page) < 5000:
                return out
            after = page[-1].id
    finally:
        await store.close()


def test_kill_9_mid_import_then_restart_resumes_with_no_row_lost_or_doubled(
    server: Server, tmp_path: Path
) -> None:
    rows = 1_000_000  # the size the issue names: ~16 s on SQLite, ~45 s on PostgreSQL
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    key = cli("keys", "create", "--tenant", tenant, "--db", server.db_url, cwd=tmp_path).strip()
    path = tmp_path / "big.csv"
    _write_csv(path, rows)
    job = _upload(server, key, path, collection="resume")
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 300
    while True:  # killed well into the import, with chunks committed and more to come
        seen = httpx.get(f"{server.url}/v1/jobs/{job['id']}", headers=headers).json()
        if rows // 3 <= seen["processed"] < rows:
            break
        assert seen["state"] in ("queued", "running"), seen
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server.kill9()
    server.start()
    deadline = time.monotonic() + 300
    while True:
        final = httpx.get(f"{server.url}/v1/jobs/{job['id']}", headers=headers).json()
        if final["state"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, final
        time.sleep(0.2)
    assert final["state"] == "succeeded", final
    assert (final["total"], final["processed"], final["succeeded"]) == (rows, rows, rows)
    keys = asyncio.run(_keys_in(server.db_url, tenant, "resume"))
    assert len(keys) == rows
    assert set(keys) == {f"key{i}" for i in range(rows)}


def test_a_large_upload_streams_to_disk_with_bounded_server_memory(
    server: Server, tmp_path: Path
) -> None:
    key = new_key(server)
    path = tmp_path / "huge.csv"
    _write_csv(path, 250_000, pad=180)  # ~50 MB
    assert path.stat().st_size > 48_000_000
    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    baseline = proc.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        job = _upload(server, key, path, collection="huge", chunk_size="1000")
    finally:
        done.set()
        sampler.join()
    httpx.post(
        f"{server.url}/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {key}"}
    )
    assert job["options"]["bytes"] == path.stat().st_size
    assert peak[0] - baseline < 40_000_000, f"RSS grew by {(peak[0] - baseline) / 1e6:.0f} MB"


def test_the_import_cli_follows_the_job_and_prints_the_failures_command(
    server: Server, tmp_path: Path
) -> None:
    key = new_key(server)
    path = tmp_path / "people.csv"
    path.write_text("name,age\nAda,36\nBob,old\nCy,7\n")
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"name": {"field": "name"}, "age": {"field": "age", "type": "int"}}')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchops",
            "import",
            str(path),
            "--collection",
            "people",
            "--mapping",
            str(mapping),
            "--lenient",
            "--url",
            server.url,
            "--key",
            key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "succeeded — 3/3 rows processed, 2 succeeded, 1 failed" in result.stdout
    command = next(line for line in result.stdout.splitlines() if "jobs failures" in line)
    job_id = command.split()[5]
    failures = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchops",
            "jobs",
            "failures",
            job_id,
            "--url",
            server.url,
            "--key",
            key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [orjson.loads(line)["row"] for line in failures.stdout.splitlines()] == [2]


def test_an_import_whose_server_is_killed_every_time_fails_attempts_exhausted(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poison job: every server that claims it is killed (SIGKILL) mid-way. With 2
    # attempts allowed, the third claim ends it instead of running it a third time.
    monkeypatch.setenv("BATCHOPS_JOB_LEASE_S", "1")
    monkeypatch.setenv("BATCHOPS_JOB_MAX_ATTEMPTS", "2")
    with Server(db_url, tmp_path).running() as server:
        key = new_key(server)
        path = tmp_path / "poison.csv"
        _write_csv(path, 300_000)
        job = _upload(
            server, key, path, collection="poison", chunk_size="200", validation="lenient"
        )
        headers = {"Authorization": f"Bearer {key}"}
        url = f"{server.url}/v1/jobs/{job['id']}"
        done_before = 0
        for attempt in (1, 2):
            deadline = time.monotonic() + 60
            while True:  # this server has claimed it and committed more of it
                seen = httpx.get(url, headers=headers).json()
                if seen["attempts"] == attempt and seen["processed"] > done_before:
                    done_before = seen["processed"]
                    break
                assert seen["state"] in ("queued", "running"), seen
                assert time.monotonic() < deadline, seen
                time.sleep(0.005)
            server.kill9()
            server.start()
        deadline = time.monotonic() + 60
        while True:
            final = httpx.get(url, headers=headers).json()
            if final["state"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, final
            time.sleep(0.05)
    assert final["state"] == "failed", final
    assert final["error"]["code"] == "ATTEMPTS_EXHAUSTED"
    assert (final["attempts"], final["error"]["attempts"]) == (2, 2)
    assert 0 < final["processed"] < 300_000  # what it did is kept
    assert final["processed"] == final["succeeded"] == final["checkpoint"]
