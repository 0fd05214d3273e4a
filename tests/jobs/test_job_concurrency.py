"""Job write paths racing other writers lose nothing and create nothing twice (both
backends): upsert imports against each other, a bulk update job against patches.

Each upsert chunk looks its keys up, then replaces what it found and creates the rest. Two
jobs on the same collection and key, at the same time, both found nothing for a new key
and both created it; on PostgreSQL their chunks now take a transaction lock on
(tenant, collection, key field), so the second sees what the first committed.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.jobs.conftest import records, upload, wait_done
from tests.server.conftest import Service

JOBS = 4
ROWS = 300


def _file(job: int) -> bytes:
    # Every job writes the same keys, each with its own value.
    lines = ["email,job"] + [f"u{i}@x.org,{job}" for i in range(ROWS)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.limits(job_concurrency=JOBS)
async def test_concurrent_upsert_imports_of_the_same_keys_create_each_key_once(
    service: Service,
) -> None:
    responses = await asyncio.gather(
        *(
            upload(
                service.client,
                _file(job),
                collection="users",
                upsert_key="email",
                chunk_size=50,
            )
            for job in range(JOBS)
        )
    )
    jobs = await asyncio.gather(
        *(wait_done(service.client, r.json()["id"], timeout_s=120) for r in responses)
    )
    assert [job["state"] for job in jobs] == ["succeeded"] * JOBS
    rows = await records(service.client, "users")
    per_key = Counter(row["data"]["email"] for row in rows)
    assert len(per_key) == ROWS
    assert set(per_key.values()) == {1}
    # Every write after the first one of a key replaced it: JOBS writes in all.
    assert sum(row["version"] for row in rows) == ROWS * JOBS


@pytest.mark.limits(bulk_inline_max=5, rate_limit_requests_per_minute=0)
async def test_a_bulk_update_job_and_concurrent_patches_keep_every_field(
    service: Service,
) -> None:
    for i in range(60):
        created = await service.client.post(
            "/v1/collections/people/records", json={"id": f"p{i:02d}", "data": {"team": "a"}}
        )
        assert created.status_code == 201

    async def patches(w: int) -> int:
        done = 0
        for i in range(60):
            response = await service.client.patch(
                f"/v1/collections/people/records/p{i:02d}", json={"data": {f"w{w}": i}}
            )
            assert response.status_code == 200, response.text
            done += 1
        return done

    submitted = await service.client.post(
        "/v1/bulk/update",
        json={
            "collection": "people",
            "filter": {"team": "a"},
            "update": {"bulk": True},
            "chunk_size": 7,
        },
    )
    assert submitted.status_code == 202, submitted.text
    patched = await asyncio.gather(*(patches(w) for w in range(3)))
    job = await wait_done(service.client, submitted.json()["id"], timeout_s=60)
    assert (job["state"], job["succeeded"]) == ("succeeded", 60)
    rows = await records(service.client, "people")
    assert all({"bulk", "w0", "w1", "w2"} <= set(row["data"]) for row in rows)
    # One version per acknowledged write: the create, the bulk update, every patch.
    assert sum(row["version"] for row in rows) == 60 * 2 + sum(patched)
