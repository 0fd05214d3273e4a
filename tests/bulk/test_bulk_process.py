"""A bulk update job in a real ``batchops serve`` process: kill -9 mid-job, restart, and
every matching record ends with exactly one version bump."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchops.client import AsyncClient
from batchops.store import open_store
from batchops.store.base import JobRow
from tests.server.test_serve_process import Server, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """``batchops serve`` with a 2 s job lease and bulk requests over 100 matches as jobs."""
    monkeypatch.setenv("BATCHOPS_JOB_LEASE_S", "2")
    monkeypatch.setenv("BATCHOPS_BULK_INLINE_MAX", "100")
    with Server(db_url, tmp_path).running() as srv:
        yield srv


async def _job(db_url: str, job_id: str) -> JobRow:
    store = await open_store(db_url, pool_size=1)
    try:
        job = await store.run(lambda tx: tx.get_job(job_id))
        assert job is not None
        return job
    finally:
        await store.close()


async def _versions(db_url: str, tenant: str, collection: str) -> dict[int, tuple[int, bool]]:
    """n -> (version, patched) of every live record, read straight from the store."""
    store = await open_store(db_url, pool_size=1)
    try:
        out: dict[int, tuple[int, bool]] = {}
        after: str | None = None
        while True:
            page = await store.run(
                lambda tx, a=after: tx.list_records(  # type: ignore[misc]
                    tenant, collection, filters={}, after_id=a, limit=5000
                )
            )
            out.update({r.data["n"]: (r.version, r.data.get("patched") is True) for r in page})
            if len(page) < 5000:
                return out
            after = page[-1].id
    finally:
        await store.close()


def test_kill_9_mid_bulk_update_then_restart_bumps_every_match_exactly_once(
    server: Server, tmp_path: Path
) -> None:
    rows = 20_000
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    key = cli("keys", "create", "--tenant", tenant, "--db", server.db_url, cwd=tmp_path).strip()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for start in range(0, rows, 1000):
            ops = [
                {"type": "create", "collection": "c", "data": {"n": i, "even": i % 2 == 0}}
                for i in range(start, start + 1000)
            ]
            assert client.post("/v1/batch", json={"operations": ops}).status_code == 200
        response = client.post(
            "/v1/bulk/update",
            json={
                "collection": "c",
                "filter": {"even": True},
                "update": {"patched": True},
                "chunk_size": 50,
            },
        )
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["total"] == rows // 2
        deadline = time.monotonic() + 60
        while True:
            seen = client.get(f"/v1/jobs/{job['id']}").json()
            if 0 < seen["processed"] < rows // 2:
                break
            assert seen["state"] in ("queued", "running"), seen
            assert time.monotonic() < deadline
            time.sleep(0.005)
    server.kill9()
    at_kill = asyncio.run(_job(server.db_url, job["id"]))
    assert at_kill.state == "running"
    assert 0 < at_kill.processed < rows // 2  # killed mid-job: the restart has to resume
    server.start()
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        deadline = time.monotonic() + 60
        while True:
            final = client.get(f"/v1/jobs/{job['id']}").json()
            if final["state"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, final
            time.sleep(0.2)
        assert final["state"] == "succeeded", final
        assert (final["total"], final["processed"], final["succeeded"]) == (rows // 2,) * 3
        results = client.get(f"/v1/jobs/{job['id']}/results").json()
    versions = asyncio.run(_versions(server.db_url, tenant, "c"))
    assert len(versions) == rows
    assert {versions[n] for n in range(0, rows, 2)} == {(2, True)}
    assert {versions[n] for n in range(1, rows, 2)} == {(1, False)}
    assert len(results["ids"]) == len(set(results["ids"])) == rows // 2


def test_the_sdk_runs_bulk_requests_and_the_cli_prints_an_async_batchs_results(
    server: Server, tmp_path: Path
) -> None:
    key = cli(
        "keys",
        "create",
        "--tenant",
        f"t_{uuid.uuid4().hex[:8]}",
        "--db",
        server.db_url,
        cwd=tmp_path,
    ).strip()
    ops = [{"type": "create", "collection": "s", "id": f"r{i}", "data": {"i": i}} for i in range(5)]
    queued = httpx.post(
        f"{server.url}/v1/batch",
        json={"operations": ops},
        headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async"},
    )
    assert queued.status_code == 202, queued.text

    async def sdk() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with AsyncClient(server.url, key) as client:
            async for event in client.jobs.events(queued.json()["id"]):
                assert event["event"] in ("progress", "complete")
            results = await client.jobs.results(queued.json()["id"])
            updated = await client.jobs.bulk_update("s", {"i": 3}, {"hit": True})
            deleted = await client.jobs.bulk_delete("s", ids=["r0", "r9"], soft=False)
            return results, updated, deleted

    results, updated, deleted = asyncio.run(sdk())
    assert results["meta"]["succeeded"] == 5
    assert (updated["updated"], updated["ids"]) == (1, ["r3"])
    assert (deleted["ids"], deleted["not_found"]) == (["r0"], ["r9"])
    printed = cli(
        "jobs", "results", queued.json()["id"], "--url", server.url, "--key", key, cwd=tmp_path
    )
    assert orjson.loads(printed) == results
