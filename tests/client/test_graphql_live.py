"""The SDK's GraphQL calls against the real server over TCP (``live``: the app under
uvicorn), on both backends: aliased reads and mutations in one document, an array of
operations in one POST, errors read out of ``extensions``, and the blocking client."""

from __future__ import annotations

import asyncio

import pytest

from batchops import BatchTooLargeError
from batchops.client import AsyncClient, Client, GraphQLRequest
from batchops.store import Store
from tests.client.conftest import Live, Tenant, all_records


async def test_aliased_creates_and_reads_in_one_document_each(
    live: Live, tenant_key: Tenant, store: Store
) -> None:
    creates = " ".join(
        f'c{i}: createRecord(collection: "people", id: "p{i:02d}", data: {{n: {i}}}) {{ id }}'
        for i in range(50)
    )
    reads = " ".join(
        f'r{i}: record(collection: "people", id: "p{i:02d}") {{ data version }}' for i in range(50)
    )
    async with AsyncClient(live.url, tenant_key.key) as client:
        written = await client.graphql(f"mutation {{ {creates} }}")
        read = await client.graphql(f"{{ {reads} }}")
    assert written.ok
    assert read.ok
    assert read.data == {f"r{i}": {"data": {"n": i}, "version": 1} for i in range(50)}
    rows = await all_records(store, tenant_key.name, "people")
    assert [row.id for row in rows] == [f"p{i:02d}" for i in range(50)]


async def test_an_array_of_operations_is_one_post_answered_in_order(
    live: Live, tenant_key: Tenant
) -> None:
    update = (
        'mutation($v: Int!) { updateRecord(collection: "people", id: "p1", '
        "data: {v: $v}, ifVersion: $v) { version } }"
    )
    async with AsyncClient(live.url, tenant_key.key) as client:
        await client.graphql(
            'mutation { createRecord(collection: "people", id: "p1", data: {}) { id } }'
        )
        answers = await client.graphql_batch(
            [GraphQLRequest(update, {"v": v}) for v in (1, 2, 3)]
            + ['{ record(collection: "people", id: "p1") { version data } }']
        )
    assert [a.data for a in answers] == [
        {"updateRecord": {"version": 2}},
        {"updateRecord": {"version": 3}},
        {"updateRecord": {"version": 4}},
        {"record": {"version": 4, "data": {"v": 3}}},
    ]


async def test_a_failed_field_comes_back_with_its_rest_code_beside_the_others_data(
    live: Live, tenant_key: Tenant
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        answer = await client.graphql(
            'mutation { a: createRecord(collection: "people", id: "p1", data: {}) { id } '
            'b: updateRecord(collection: "people", id: "p1", data: {}, ifVersion: 9) { id } }'
        )
    assert answer.data == {"a": {"id": "p1"}, "b": None}
    (error,) = answer.errors
    assert (error.code, error.status, error.path) == ("VERSION_MISMATCH", 409, ["b"])
    assert error.details == {"id": "p1", "expected": 9, "actual": 1}


@pytest.mark.limits(max_batch_operations=2)
async def test_an_array_over_the_servers_limit_raises_batch_too_large(
    live: Live, tenant_key: Tenant
) -> None:
    async with AsyncClient(live.url, tenant_key.key) as client:
        with pytest.raises(BatchTooLargeError):
            await client.graphql_batch(["{ __typename }"] * 3)


async def test_the_blocking_client_answers_as_the_async_one(live: Live, tenant_key: Tenant) -> None:
    def run() -> object:
        with Client(live.url, tenant_key.key) as client:
            return client.graphql(
                "query($c: String!) { list(collection: $c) { records { id } } }",
                {"c": "nobody"},
            ).data

    assert await asyncio.to_thread(run) == {"list": {"records": []}}
