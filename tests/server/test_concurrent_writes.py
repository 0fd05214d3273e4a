"""Concurrent writers never lose an acknowledged write (both backends).

Every write of a record bumps its ``version`` by one, so after any mix of concurrent
writes the invariant is: final version = 1 + the number of writes that were acknowledged
(200). A lost update shows as a version lower than that, or as a merged key that vanished.

The app runs in-process and each request's unit of work runs in a store thread: on
PostgreSQL that is a pool of connections working at the same time under READ COMMITTED,
which is where a read-check-write without a row lock lost writes; SQLite serialises
writers, and passes the same tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from batchops.server.settings import Settings
from batchops.store import RecordRow, Tx
from tests.server.conftest import Service, settings_for

PEOPLE = "/v1/collections/people/records"
WORKERS = 8
ROUNDS = 12


@pytest.fixture
def settings(db_url: str) -> Settings:
    """No rate limit: the tests hammer one record on purpose."""
    return settings_for(
        db_url, rate_limit_requests_per_minute=0, rate_limit_operations_per_minute=0
    )


async def _create(client: httpx.AsyncClient, record_id: str, data: dict[str, Any]) -> None:
    response = await client.post(PEOPLE, json={"id": record_id, "data": data})
    assert response.status_code == 201, response.text


async def stored_record(service: Service, record_id: str) -> dict[str, Any]:
    response = await service.client.get(f"{PEOPLE}/{record_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_concurrent_if_match_updates_bump_the_version_once_per_acknowledged_write(
    service: Service,
) -> None:
    await _create(service.client, "p1", {"n": 0})
    acknowledged = 0

    async def worker(w: int) -> None:
        nonlocal acknowledged
        for r in range(ROUNDS):
            version = (await stored_record(service, "p1"))["version"]
            response = await service.client.patch(
                f"{PEOPLE}/p1",
                json={"data": {"last": f"{w}-{r}"}},
                headers={"If-Match": str(version)},
            )
            assert response.status_code in (200, 409), response.text
            if response.status_code == 200:
                acknowledged += 1
                assert response.json()["version"] == version + 1

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    assert acknowledged > 0
    assert (await stored_record(service, "p1"))["version"] == 1 + acknowledged


async def test_concurrent_merge_patches_of_different_fields_keep_every_field(
    service: Service,
) -> None:
    await _create(service.client, "p1", {})
    keys = [f"k{w}_{r}" for w in range(WORKERS) for r in range(ROUNDS)]

    async def worker(w: int) -> None:
        for r in range(ROUNDS):
            response = await service.client.patch(f"{PEOPLE}/p1", json={"data": {f"k{w}_{r}": r}})
            assert response.status_code == 200, response.text

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    stored = await stored_record(service, "p1")
    assert sorted(stored["data"]) == sorted(keys)
    assert stored["version"] == 1 + len(keys)


async def test_concurrent_replaces_with_if_match_bump_the_version_once_per_acknowledged_write(
    service: Service,
) -> None:
    await _create(service.client, "p1", {"w": -1})
    acknowledged = 0

    async def worker(w: int) -> None:
        nonlocal acknowledged
        for _ in range(ROUNDS):
            version = (await stored_record(service, "p1"))["version"]
            response = await service.client.put(
                f"{PEOPLE}/p1", json={"data": {"w": w}}, headers={"If-Match": str(version)}
            )
            assert response.status_code in (200, 409), response.text
            acknowledged += response.status_code == 200

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    assert (await stored_record(service, "p1"))["version"] == 1 + acknowledged


async def _update_in_batches(service: Service, order: Callable[[int], list[str]]) -> None:
    """WORKERS workers at once, ROUNDS batches each: worker w's batch r sets the field
    ``k{w}_{r}`` on every record of ``order(w)``, in that order; each batch must answer 200."""

    async def worker(w: int) -> None:
        for r in range(ROUNDS):
            response = await service.client.post(
                "/v1/batch",
                json={
                    "operations": [
                        {
                            "type": "update",
                            "collection": "people",
                            "id": rid,
                            "data": {f"k{w}_{r}": r},
                        }
                        for rid in order(w)
                    ]
                },
            )
            assert response.status_code == 200, response.text

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


async def test_concurrent_batch_updates_of_different_fields_keep_every_field(
    service: Service,
) -> None:
    await _create(service.client, "p1", {})
    await _create(service.client, "p2", {})
    await _update_in_batches(service, lambda w: ["p1", "p2"])
    for rid in ("p1", "p2"):
        stored = await stored_record(service, rid)
        assert len(stored["data"]) == WORKERS * ROUNDS
        assert stored["version"] == 1 + WORKERS * ROUNDS


async def test_bulk_updates_and_patches_running_together_keep_every_field(
    service: Service,
) -> None:
    for i in range(20):
        await _create(service.client, f"p{i:02d}", {"team": "core"})

    async def bulk(r: int) -> None:
        response = await service.client.post(
            "/v1/bulk/update",
            json={"collection": "people", "filter": {"team": "core"}, "update": {f"b{r}": r}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["updated"] == 20

    async def patcher(w: int) -> None:
        for r in range(ROUNDS):
            response = await service.client.patch(
                f"{PEOPLE}/p{(w * ROUNDS + r) % 20:02d}", json={"data": {f"k{w}_{r}": r}}
            )
            assert response.status_code == 200, response.text

    await asyncio.gather(*(bulk(r) for r in range(6)), *(patcher(w) for w in range(4)))
    total_keys = 0
    total_versions = 0
    for i in range(20):
        stored = await stored_record(service, f"p{i:02d}")
        assert {f"b{r}" for r in range(6)} <= set(stored["data"])
        total_keys += len(stored["data"]) - 1  # all but "team"
        total_versions += stored["version"] - 1
    assert total_keys == 6 * 20 + 4 * ROUNDS
    assert total_versions == total_keys


async def test_a_patch_racing_a_soft_delete_either_lands_before_it_or_gets_a_404(
    service: Service,
) -> None:
    for i in range(10):
        await _create(service.client, f"p{i}", {})
    acknowledged: dict[str, int] = {f"p{i}": 0 for i in range(10)}

    async def patcher(w: int) -> None:
        for r in range(ROUNDS):
            rid = f"p{r % 10}"
            response = await service.client.patch(
                f"{PEOPLE}/{rid}", json={"data": {f"k{w}_{r}": r}}
            )
            assert response.status_code in (200, 404), response.text
            acknowledged[rid] += response.status_code == 200

    async def deleter() -> None:
        for i in range(10):
            await asyncio.sleep(0.005)
            response = await service.client.delete(f"{PEOPLE}/p{i}")
            assert response.status_code == 200, response.text

    await asyncio.gather(*(patcher(w) for w in range(WORKERS)), deleter())
    for rid, count in acknowledged.items():

        def read(tx: Tx, rid: str = rid) -> dict[str, RecordRow]:
            return tx.get_records(service.tenant, "people", [rid], include_deleted=True)

        stored = (await service.store.run(read))[rid]
        assert stored.deleted_at is not None
        # Every acknowledged patch, then the delete: nothing lost, nothing after the delete.
        assert stored.version == 1 + count + 1
        assert len(stored.data) == count


async def test_concurrent_batches_updating_the_same_records_in_opposite_orders_keep_every_field(
    service: Service,
) -> None:
    ids = [f"p{i}" for i in range(6)]
    for rid in ids:
        await _create(service.client, rid, {})
    await _update_in_batches(service, lambda w: ids if w % 2 else ids[::-1])
    for rid in ids:
        stored = await stored_record(service, rid)
        assert len(stored["data"]) == WORKERS * ROUNDS
        assert stored["version"] == 1 + WORKERS * ROUNDS
