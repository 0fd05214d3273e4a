"""``client.jobs`` against a real server (both backends): every page of the job list,
failures as values, retrying an import's failed rows, async batches as a handle whose
``results()`` is a BatchResult; and ``batchops jobs`` (a subprocess) on top of them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchops import BatchResult, ConflictError, Failure, NotFoundError, Success
from batchops.client import AsyncBatchJob, AsyncClient, BatchJob, Client, JobFailure
from tests.client.conftest import Live, Tenant

pytestmark = pytest.mark.limits(job_poll_s=0.05)

CSV = "name,age\nAda,36\nBob,old\nCy,41\nDee,29\n"  # row 2 fails: age is not an int
MAPPING = {"name": {"field": "name"}, "age": {"field": "age", "type": "int"}}


def _reads(n: int) -> list[dict[str, Any]]:
    return [{"type": "read", "collection": "x", "id": f"nope{i}"} for i in range(n)]


async def _batches(client: AsyncClient, n: int) -> list[str]:
    """``n`` async batches, queued one after another: their ids, newest first."""
    return [(await client.jobs.create_batch(_reads(1)))["id"] for _ in range(n)][::-1]


async def _lenient_import(client: AsyncClient, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    job = await client.jobs.create_import(
        path, collection="people", mapping=MAPPING, lenient=True, chunk_size=2
    )
    return await client.jobs.wait(job["id"])


async def test_iterating_the_jobs_follows_every_page_newest_first(
    live: Live, tenant_key: Tenant
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        made = await _batches(client, 5)
        seen = [job["id"] async for job in client.jobs.iter(page_size=2)]
        everything = await client.jobs.list()
        first_three = await client.jobs.list(limit=3)
        imports = await client.jobs.list(type="import")
    assert seen == made
    assert [job["id"] for job in everything] == made
    assert [job["id"] for job in first_three] == made[:3]
    assert imports == []


async def test_failures_are_values_and_the_download_is_the_servers_bytes(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        job = await _lenient_import(client, tmp_path)
        failures = [f async for f in client.jobs.failures(job["id"])]
        as_csv = await client.jobs.failures_file(job["id"], format="csv")
        as_ndjson = await client.jobs.failures_file(job["id"])
    (failure,) = failures
    assert isinstance(failure, JobFailure)
    assert (failure.row, failure.code, failure.input) == (2, "BAD_VALUE", "Bob,old")
    assert as_csv.splitlines()[0] == b"row,code,message,input"
    assert orjson.loads(as_ndjson) == {
        "row": 2,
        "code": "BAD_VALUE",
        "message": failure.message,
        "input": "Bob,old",
    }


async def test_retry_failures_queues_an_import_of_the_failed_rows(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        source = await _lenient_import(client, tmp_path)
        queued = await client.jobs.retry_failures(source["id"])
        done = await client.jobs.wait(queued["id"])
        again = [f async for f in client.jobs.failures(queued["id"])]
        with pytest.raises(ConflictError) as refused:
            await client.jobs.retry_failures((await client.jobs.create_batch(_reads(1)))["id"])
    assert queued["options"]["retry_of"] == source["id"]
    assert (done["total"], done["failed"]) == (1, 1)
    assert [(f.row, f.code, f.input) for f in again] == [(1, "BAD_VALUE", "Bob,old")]
    assert refused.value.code == "NOT_AN_IMPORT"


async def test_submit_batch_hands_back_a_job_whose_results_are_a_batch_result(
    live: Live, tenant_key: Tenant
) -> None:
    ops: list[dict[str, Any]] = [
        {"type": "create", "collection": "s", "id": "s1", "data": {"i": 1}},
        {"type": "read", "collection": "s", "id": "missing"},
    ]
    async with AsyncClient(live.url, tenant_key.key) as client:
        job = await client.jobs.submit_batch(ops)
        result = await job.results()
        ended = await job.wait()
        again = await client.jobs.batch_results(job.id)
    assert isinstance(job, AsyncBatchJob)
    assert job.job["type"] == "batch"
    assert ended["state"] == "succeeded"
    assert isinstance(result, BatchResult)
    created, missing = result
    assert isinstance(created, Success)
    assert created.value["id"] == "s1"
    assert isinstance(missing, Failure)
    assert isinstance(missing.error, NotFoundError)
    assert [r.index for r in again] == [0, 1]


def test_the_blocking_jobs_page_iterate_failures_and_hand_back_a_batch_job(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    with Client(live.url, tenant_key.key) as client:
        job = client.jobs.submit_batch([{"type": "create", "collection": "s", "data": {}}])
        result = job.results()
        imported = client.jobs.create_import(path, collection="p", mapping=MAPPING, lenient=True)
        client.jobs.wait(imported["id"])
        failures = list(client.jobs.failures(imported["id"]))
        retried = client.jobs.retry_failures(imported["id"])
        listed = [j["id"] for j in client.jobs.iter(page_size=1)]
    assert isinstance(job, BatchJob)
    assert result.ok
    assert [f.row for f in failures] == [2]
    assert listed == [retried["id"], imported["id"], job.id]


# -- the CLI ---------------------------------------------------------------------------------


def _cli(live: Live, tenant: Tenant, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchops", "jobs", *args, "--url", live.url, "--key", tenant.key],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_lists_every_job_and_retries_failures(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        made = await _batches(client, 3)
        source = await _lenient_import(client, tmp_path)
    retried = await _in_thread(_cli, live, tenant_key, "retry-failures", source["id"])
    assert retried.returncode == 0, retried.stderr
    new_id, kind, state, _ = retried.stdout.strip().split("\t")
    assert (kind, state) == ("import", "queued")
    listed = await _in_thread(_cli, live, tenant_key, "list")
    assert listed.returncode == 0, listed.stderr
    ids = [line.split("\t")[0] for line in listed.stdout.splitlines()]
    assert ids == [new_id, source["id"], *made]
    failures = await _in_thread(_cli, live, tenant_key, "failures", source["id"], "--csv")
    assert failures.stdout.splitlines()[1].startswith("2,BAD_VALUE,")


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)
