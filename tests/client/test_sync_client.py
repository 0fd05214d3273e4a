"""The blocking ``Client`` against a real server: streaming, jobs and async batches.

(Its surface is pinned by tests/client/test_sync_surface.py; these check that the bridges
really run: a blocking iterator, the jobs facade, an async batch end to end.)
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from batchops import Success
from batchops.client import AsyncClient, Client
from tests.client.conftest import Live, Tenant

FAST_JOBS = {"job_poll_s": 0.05}


def _creates(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "create", "collection": "s", "id": f"s{i}", "data": {"i": i}} for i in range(n)
    ]


def _wait_done(client: Client, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.jobs.get(job_id)
        if job["state"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}"
        time.sleep(0.02)


def test_stream_batch_is_a_blocking_iterator_of_every_result(
    live: Live, tenant_key: Tenant
) -> None:
    with Client(live.url, tenant_key.key) as client:
        results = list(client.stream_batch(_creates(7), chunk_size=3))

    assert sorted(r.index for r in results) == list(range(7))
    assert all(isinstance(r, Success) for r in results)


def test_leaving_a_blocking_stream_early_leaves_the_client_usable(
    live: Live, tenant_key: Tenant
) -> None:
    with Client(live.url, tenant_key.key) as client:
        stream = client.stream_batch(_creates(6), chunk_size=2, max_concurrent=1)
        first = next(iter(stream))
        stream.close()  # type: ignore[attr-defined]
        again = client.batch([{"type": "read", "collection": "s", "id": "s0"}])

    assert isinstance(first, Success)
    assert again.values()[0]["id"] == "s0"


@pytest.mark.limits(**FAST_JOBS)
def test_an_async_batch_through_the_blocking_client_answers_what_a_sync_batch_would(
    live: Live, tenant_key: Tenant
) -> None:
    with Client(live.url, tenant_key.key) as client:
        job = client.jobs.create_batch(_creates(3))
        assert job["type"] == "batch"
        assert _wait_done(client, job["id"])["state"] == "succeeded"
        answer = client.jobs.results(job["id"])
        events = [e["event"] for e in client.jobs.events(job["id"])]
        listed = [j["id"] for j in client.jobs.list(type="batch")]

    assert [r["status"] for r in answer["results"]] == [201, 201, 201]
    assert answer["committed"] is True
    assert events[-1] == "complete"
    assert job["id"] in listed


@pytest.mark.limits(**FAST_JOBS)
async def test_an_async_batch_retried_with_its_key_is_the_same_job(
    live: Live, tenant_key: Tenant
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        first = await client.jobs.create_batch(_creates(2), idempotency_key="k-1")
        again = await client.jobs.create_batch(_creates(2), idempotency_key="k-1")

    assert again["id"] == first["id"]
