"""``batchops batch`` end to end: a subprocess against a real server (both backends)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchops.store import Store
from tests.client.conftest import Live, Tenant, all_records

pytestmark = pytest.mark.slow


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "batchops", "batch", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def write_ops(path: Path, ops: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in ops))


def read_out(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def run_and_kill_9(args: list[str], journal: Path, *, requests: int) -> None:
    """Start the CLI; SIGKILL it once ``requests`` requests are journaled."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchops", "batch", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= requests:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def creates(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "create", "collection": "people", "id": f"p{i:05d}", "data": {"n": i}}
        for i in range(n)
    ]


async def test_writes_one_result_per_line_and_exits_1_when_one_failed(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    ops = [*creates(3), {"type": "read", "collection": "people", "id": "missing"}]
    write_ops(tmp_path / "ops.ndjson", ops)
    out = tmp_path / "out.ndjson"
    done = await asyncio.to_thread(
        cli, str(tmp_path / "ops.ndjson"), "--url", live.url, "--key", tenant_key.key,
        "--out", str(out), "--chunk-size", "2",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = sorted(read_out(out), key=lambda r: r["index"])
    assert [(r["index"], r["status"]) for r in lines] == [(0, 201), (1, 201), (2, 201), (3, 404)]
    assert lines[0]["body"]["id"] == "p00000"
    assert lines[3]["error"]["code"] == "NOT_FOUND"
    assert b"4 operations: 3 succeeded, 1 failed" in done.stderr


async def test_reads_stdin_and_exits_0_when_all_succeeded(live: Live, tenant_key: Tenant) -> None:
    data = b"".join(orjson.dumps(op) + b"\n" for op in creates(5))
    done = await asyncio.to_thread(cli, "-", "--url", live.url, "--key", tenant_key.key, stdin=data)
    assert done.returncode == 0, done.stderr
    assert sorted(r["index"] for r in map(orjson.loads, done.stdout.splitlines())) == [
        0, 1, 2, 3, 4,
    ]  # fmt: skip


async def test_dry_run_validates_on_the_server_and_creates_nothing(
    live: Live, tenant_key: Tenant, store: Store, tmp_path: Path
) -> None:
    write_ops(tmp_path / "ops.ndjson", [*creates(2), {"type": "read", "collection": "people"}])
    done = await asyncio.to_thread(
        cli, str(tmp_path / "ops.ndjson"), "--url", live.url, "--key", tenant_key.key,
        "--dry-run",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the read without an id is invalid
    statuses = [r["status"] for r in map(orjson.loads, done.stdout.splitlines())]
    assert statuses[2] == 400
    assert await all_records(store, tenant_key.name, "people") == []


async def test_resume_after_kill_9_creates_every_record_exactly_once(
    live: Live, tenant_key: Tenant, store: Store, tmp_path: Path
) -> None:
    source = tmp_path / "ops.ndjson"
    write_ops(source, creates(2000))
    out = tmp_path / "out.ndjson"
    journal = Path(str(out) + ".journal")
    args = [str(source), "--url", live.url, "--key", tenant_key.key, "--out", str(out)]
    args += ["--chunk-size", "10", "--concurrency", "2"]
    await asyncio.to_thread(run_and_kill_9, args, journal, requests=30)
    partial = await all_records(store, tenant_key.name, "people")
    assert 300 <= len(partial) < 2000

    again = await asyncio.to_thread(cli, *args)  # without --resume: refused
    assert again.returncode == 2
    assert b"--resume" in again.stderr

    resumed = await asyncio.to_thread(cli, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = read_out(out)
    assert sorted(r["index"] for r in lines) == list(range(2000))
    assert {r["status"] for r in lines} == {201}
    rows = await all_records(store, tenant_key.name, "people")
    assert sorted(r.id for r in rows) == [f"p{i:05d}" for i in range(2000)]
    assert all(r.version == 1 for r in rows)
    assert not await asyncio.to_thread(journal.exists)
