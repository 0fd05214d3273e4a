"""The SDK against a real server (both backends), through a fault-injecting proxy."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from batchops import BatchTooLargeError, NotFoundError, RetryPolicy
from batchops._exceptions import InvalidRequestError
from batchops._results import Failure, Success
from batchops.client import AsyncClient, Client
from batchops.store import Store
from tests.client.conftest import Tenant, all_records
from tests.client.fault_proxy import FaultProxy

FAST_RETRY = RetryPolicy(attempts=30, initial_backoff=0.01, max_backoff=0.05)


async def test_creates_through_faults_land_exactly_once(
    proxy: FaultProxy, tenant_key: Tenant, store: Store
) -> None:
    proxy.seed = 7
    proxy.p429 = proxy.p503 = proxy.p_drop_before = proxy.p_drop_after = 0.06
    proxy.p_op503 = 0.3
    await proxy.stop()
    await proxy.start()  # re-seed
    ids = [f"p{i:05d}" for i in range(2000)]
    async with AsyncClient(proxy.url, tenant_key.key, max_concurrent=4, retry=FAST_RETRY) as c:
        result = await c.collection("people").create_many(
            ({"id": i, "data": {"n": n}} for n, i in enumerate(ids)), chunk_size=50
        )
    assert [f.error for f in result.failures()] == []
    assert [r.index for r in result] == list(range(2000))
    assert [v["id"] for v in result.values()] == ids
    faults = {s.fault for s in proxy.seen}
    assert {"429", "503", "drop_before", "drop_after", "op503"} <= faults
    rows = await all_records(store, tenant_key.name, "people")
    assert sorted(r.id for r in rows) == ids
    assert all(r.version == 1 for r in rows)
    assert sorted(r.data["n"] for r in rows) == list(range(2000))


async def test_a_408_for_a_stalled_body_is_sent_again_and_lands_once(
    proxy: FaultProxy, tenant_key: Tenant, store: Store
) -> None:
    # The server answers 408 when a request body stops arriving, and applies nothing of
    # it: the request may be repeated as it was (RFC 9110 §15.5.9), and the SDK does.
    proxy.first_408 = 2
    ids = [f"p{i}" for i in range(5)]
    async with AsyncClient(proxy.url, tenant_key.key, retry=FAST_RETRY) as client:
        result = await client.collection("people").create_many(
            {"id": i, "data": {"n": n}} for n, i in enumerate(ids)
        )
    assert [f.error for f in result.failures()] == []
    assert [s.fault for s in proxy.seen].count("408") == 2
    rows = await all_records(store, tenant_key.name, "people")
    assert sorted(r.id for r in rows) == ids


async def test_results_come_in_input_order_and_a_missing_record_is_a_404_failure(
    live: Any, tenant_key: Tenant
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        people = client.collection("people")
        await people.create_many([{"id": f"r{i}", "data": {"i": i}} for i in range(5)])
        result = await people.get_many(["r3", "nope", "r0", "r4"], chunk_size=2)
    assert [r.index for r in result] == [0, 1, 2, 3]
    assert isinstance(result[0], Success)
    assert result[0].value["data"] == {"i": 3}
    failure = result[1]
    assert isinstance(failure, Failure)
    assert isinstance(failure.error, NotFoundError)
    assert failure.error.status_code == 404
    assert [v["id"] for v in result.values()] == ["r3", "r0", "r4"]


async def test_requests_are_split_by_operation_count(proxy: FaultProxy, tenant_key: Tenant) -> None:
    async with AsyncClient(proxy.url, tenant_key.key, max_concurrent=1) as client:
        result = await client.collection("c").create_many(
            ({"data": {"i": i}} for i in range(20)), chunk_size=7
        )
    assert result.ok
    assert [len(s.operations()) for s in proxy.batches()] == [7, 7, 6]


async def test_requests_are_split_by_bytes_within_the_limit(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    # Each op encodes to exactly 1,000 bytes; budget = 4096 - 512 reserved = 3584, and
    # each op costs 1,001 with its comma: 3 per request.
    def op(i: int) -> dict[str, Any]:
        data: dict[str, Any] = {"i": i, "pad": ""}
        base = {"type": "create", "collection": "c", "data": data}
        data["pad"] = "x" * (1000 - len(orjson.dumps(base)))
        assert len(orjson.dumps(base)) == 1000
        return base

    async with AsyncClient(
        proxy.url, tenant_key.key, max_concurrent=1, max_batch_bytes=4096
    ) as client:
        result = await client.batch(op(i) for i in range(10))
    assert result.ok
    batches = proxy.batches()
    assert [len(s.operations()) for s in batches] == [3, 3, 3, 1]
    assert all(len(s.body) <= 4096 for s in batches)


async def test_referenced_operations_stay_in_the_referrers_request(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    ops = [
        {"type": "create", "collection": "c", "data": {"x": 0}},
        {"ref": "a", "type": "create", "collection": "c", "data": {"x": 1}},
        {"type": "update", "collection": "c", "id": "${a.body.id}", "data": {"y": 1}},
        {"type": "update", "collection": "c", "id": "r", "data": {}, "depends_on": ["a"]},
        {"type": "create", "collection": "c", "data": {"x": 2}},
    ]
    async with AsyncClient(proxy.url, tenant_key.key, max_concurrent=1) as client:
        result = await client.batch(ops, chunk_size=3)
    # The cut before op 1 keeps a with its two referrers; op 3 fails only as a 404.
    assert [len(s.operations()) for s in proxy.batches()] == [1, 3, 1]
    assert [r.is_success for r in result] == [True, True, True, False, True]
    assert isinstance(result[3], Failure)
    assert isinstance(result[3].error, NotFoundError)
    assert isinstance(result[2], Success)
    assert result[2].value["data"] == {"x": 1, "y": 1}


async def test_a_tied_group_bigger_than_a_request_is_refused_naming_the_operation(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    ops = [
        {"ref": "a", "type": "create", "collection": "c", "data": {}},
        {"ref": "b", "type": "update", "collection": "c", "id": "${a.body.id}", "data": {}},
        {"ref": "c", "type": "update", "collection": "c", "id": "${b.body.id}", "data": {}},
    ]
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        result = await client.batch(ops, chunk_size=2)
    assert [len(s.operations()) for s in proxy.batches()] == [2]
    failure = result[2]
    assert isinstance(failure, Failure)
    assert isinstance(failure.error, InvalidRequestError)
    assert failure.error.code == "REFERENCE_ACROSS_REQUESTS"
    assert "operation 2 ('c')" in failure.error.message


async def test_an_atomic_batch_over_the_limit_is_refused_before_sending(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    async with AsyncClient(proxy.url, tenant_key.key, max_batch_operations=10) as client:
        with pytest.raises(BatchTooLargeError, match="nothing was sent"):
            await client.batch(
                ({"type": "create", "collection": "c", "data": {}} for _ in range(11)),
                atomic=True,
            )
        ok = await client.batch(
            [{"type": "create", "collection": "c", "data": {}}] * 10, atomic=True
        )
    assert ok.ok
    assert [len(s.operations()) for s in proxy.batches()] == [10]


async def test_coalesce_merges_50_concurrent_gets_into_few_requests(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        await client.collection("people").create_many(
            [{"id": f"g{i}", "data": {"i": i}} for i in range(50)]
        )
    before = len(proxy.seen)
    async with AsyncClient(proxy.url, tenant_key.key, coalesce=True) as client:
        people = client.collection("people")
        records = await asyncio.gather(*(people.get(f"g{i}") for i in range(50)))
        with pytest.raises(NotFoundError):
            await people.get("missing")
    assert [r["data"]["i"] for r in records] == list(range(50))
    requests = proxy.seen[before:]
    assert len(requests) <= 3
    assert sum(len(s.operations()) for s in requests) == 51


async def test_single_calls_create_read_update_replace_delete_list_search(
    live: Any, tenant_key: Tenant
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        people = client.collection("people")
        ada = await people.create({"name": "Ada Lovelace", "team": "r"}, id="ada")
        assert ada["id"] == "ada"
        assert (await people.get("ada"))["data"]["name"] == "Ada Lovelace"
        updated = await people.update("ada", {"team": "core"})
        assert updated["data"] == {"name": "Ada Lovelace", "team": "core"}
        replaced = await people.replace("ada", {"name": "Ada"})
        assert replaced["data"] == {"name": "Ada"}
        page = await people.list(filters={"name": "Ada"})
        assert [r["id"] for r in page["records"]] == ["ada"]
        found = await people.search("ada")
        assert [r["record"]["id"] for r in found["results"]] == ["ada"]
        await people.delete("ada")
        with pytest.raises(NotFoundError):
            await people.get("ada")


async def test_validate_only_runs_nothing(live: Any, tenant_key: Tenant, store: Store) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        result = await client.batch(
            [{"type": "create", "collection": "v", "data": {}}], validate_only=True
        )
    assert result.ok
    assert await all_records(store, tenant_key.name, "v") == []


def test_the_sync_client_delegates_to_the_async_one(live: Any, tenant_key: Tenant) -> None:
    with Client(live.url, tenant_key.key) as client:
        people = client.collection("people")
        people.create({"name": "Bo"}, id="bo")
        assert people.get("bo")["data"] == {"name": "Bo"}
        result = people.get_many(["bo", "nobody"])
        assert [r.is_success for r in result] == [True, False]
        batch = client.batch([{"type": "read", "collection": "people", "id": "bo"}])
        assert batch.values()[0]["id"] == "bo"
