"""Mutations: record mutations run in document order, as ONE batch per run of them, each
failure its own error (with the REST code) while the others keep their data; ``@atomic``
is all or nothing. Each behaviour on the fast path (literals) and the full path
(variables) where both apply."""

from __future__ import annotations

from typing import Any

import pytest

from tests.graphql_api.conftest import StoreSpy, gql, seed
from tests.server.conftest import Service


async def _ids(service: Service, collection: str) -> list[str]:
    page = await service.client.get(f"/v1/collections/{collection}/records")
    return [r["id"] for r in page.json()["records"]]


def _creates(n: int, *, variables: bool, collection: str = "m") -> tuple[str, dict[str, Any]]:
    if not variables:
        body = " ".join(
            f'c{i}: createRecord(collection: "{collection}", id: "r{i:03d}", data: {{n: {i}}}) '
            "{ id version }"
            for i in range(n)
        )
        return "mutation { " + body + " }", {}
    body = " ".join(
        f'c{i}: createRecord(collection: "{collection}", id: "r{i:03d}", data: $d{i}) '
        "{ id version }"
        for i in range(n)
    )
    definitions = ", ".join(f"$d{i}: JSON!" for i in range(n))
    return f"mutation({definitions}) {{ {body} }}", {f"d{i}": {"n": i} for i in range(n)}


PATHS = pytest.mark.parametrize("variables", [False, True], ids=["literals", "variables"])


@PATHS
async def test_a_hundred_aliased_creates_are_one_unit_of_work_and_one_insert(
    service: Service, spy: StoreSpy, variables: bool
) -> None:
    query, values = _creates(100, variables=variables)
    answer = await gql(service.client, query, values)
    assert "errors" not in answer
    assert [answer["data"][f"c{i}"] for i in range(100)] == [
        {"id": f"r{i:03d}", "version": 1} for i in range(100)
    ]
    assert spy.runs == 1
    assert spy.inserts == [("m", 100)]
    assert await _ids(service, "m") == [f"r{i:03d}" for i in range(100)]


@PATHS
async def test_mutations_run_in_document_order_so_a_later_field_sees_an_earlier_one(
    service: Service, variables: bool
) -> None:
    query = """mutation($data: JSON!) {
      a: createRecord(collection: "people", id: "p1", data: {n: 1}) { version }
      b: updateRecord(collection: "people", id: "p1", data: $data, ifVersion: 1) { version data }
      c: deleteRecord(collection: "people", id: "p1", ifVersion: 2) { deleted hard version }
      d: restoreRecord(collection: "people", id: "p1", ifVersion: 3) { version }
      e: replaceRecord(collection: "people", id: "p1", data: {only: true}) { version data }
    }"""
    if not variables:
        query = query.replace("($data: JSON!)", "").replace("$data", "{n: 2}")
    answer = await gql(service.client, query, {"data": {"n": 2}} if variables else None)
    assert "errors" not in answer, answer
    assert answer["data"] == {
        "a": {"version": 1},
        "b": {"version": 2, "data": {"n": 2}},
        "c": {"deleted": True, "hard": False, "version": 3},
        "d": {"version": 4},
        "e": {"version": 5, "data": {"only": True}},
    }


@PATHS
async def test_each_failed_mutation_is_its_own_error_and_the_others_commit(
    service: Service, variables: bool
) -> None:
    await seed(service, "people", {"p1": {}})
    query = """mutation($v: Int) {
      ok1: createRecord(collection: "people", id: "p2", data: {}) { id }
      dup: createRecord(collection: "people", id: "p1", data: {}) { id }
      stale: updateRecord(collection: "people", id: "p1", data: {}, ifVersion: $v) { id }
      gone: deleteRecord(collection: "people", id: "nope") { id }
      bad: createRecord(collection: "people", id: "x", data: [1]) { id }
      ok2: createRecord(collection: "people", id: "p3", data: {}) { id }
    }"""
    if not variables:
        query = query.replace("($v: Int)", "").replace("$v", "7")
    answer = await gql(service.client, query, {"v": 7} if variables else None)
    assert answer["data"] == {
        "ok1": {"id": "p2"},
        "dup": None,
        "stale": None,
        "gone": None,
        "bad": None,
        "ok2": {"id": "p3"},
    }
    codes = {
        e["path"][0]: (e["extensions"]["code"], e["extensions"]["status"]) for e in answer["errors"]
    }
    assert codes == {
        "dup": ("ALREADY_EXISTS", 409),
        "stale": ("VERSION_MISMATCH", 409),
        "gone": ("NOT_FOUND", 404),
        "bad": ("VALIDATION_ERROR", 422),
    }
    stale = next(e for e in answer["errors"] if e["path"] == ["stale"])
    assert stale["extensions"]["details"] == {"id": "p1", "expected": 7, "actual": 1}
    assert await _ids(service, "people") == ["p1", "p2", "p3"]


@PATHS
async def test_an_atomic_mutation_that_fails_writes_nothing(
    service: Service, variables: bool
) -> None:
    await seed(service, "people", {"p1": {}})
    query = """mutation($id: ID!) @atomic {
      a: createRecord(collection: "people", id: "p2", data: {}) { id }
      b: createRecord(collection: "people", id: $id, data: {}) { id }
      c: updateRecord(collection: "people", id: "p1", data: {x: 1}) { id }
    }"""
    if not variables:
        query = query.replace("($id: ID!)", "").replace("$id", '"p1"')
    answer = await gql(service.client, query, {"id": "p1"} if variables else None)
    assert answer["data"] == {"a": None, "b": None, "c": None}
    codes = {e["path"][0]: e["extensions"]["code"] for e in answer["errors"]}
    assert codes == {"a": "ROLLED_BACK", "b": "ALREADY_EXISTS", "c": "ROLLED_BACK"}
    assert await _ids(service, "people") == ["p1"]
    record = await service.client.get("/v1/collections/people/records/p1")
    assert record.json()["version"] == 1


async def test_an_atomic_mutation_that_succeeds_applies_every_field(service: Service) -> None:
    query = """mutation @atomic {
      a: createRecord(collection: "people", id: "p1", data: {}) { id }
      b: updateRecord(collection: "people", id: "p1", data: {x: 1}) { version }
    }"""
    answer = await gql(service.client, query)
    assert answer == {"data": {"a": {"id": "p1"}, "b": {"version": 2}}}


async def test_an_atomic_mutation_with_a_bulk_field_is_refused_whole_and_writes_nothing(
    service: Service,
) -> None:
    await seed(service, "people", {"p1": {}})
    query = """mutation @atomic {
      a: createRecord(collection: "people", id: "p2", data: {}) { id }
      b: bulkUpdate(collection: "people", filter: {}, update: {x: 1}) { updatedCount }
    }"""
    answer = await gql(service.client, query)
    assert answer["data"] == {"a": None, "b": None}
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"INVALID_REQUEST"}
    assert await _ids(service, "people") == ["p1"]
    record = await service.client.get("/v1/collections/people/records/p1")
    assert record.json()["data"] == {}


async def test_record_mutations_around_another_field_run_before_and_after_it(
    service: Service, spy: StoreSpy
) -> None:
    query = """mutation {
      a: createRecord(collection: "people", id: "p1", data: {team: "x"}) { id }
      b: createRecord(collection: "people", id: "p2", data: {team: "x"}) { id }
      bulk: bulkUpdate(collection: "people", filter: {team: "x"}, update: {seen: true}) {
        updatedCount ids
      }
      c: createRecord(collection: "people", id: "p3", data: {team: "x"}) { id }
    }"""
    answer = await gql(service.client, query)
    assert answer["data"]["bulk"] == {"updatedCount": 2, "ids": ["p1", "p2"]}
    # The run before the bulk field was one insert of two; the one after, its own.
    assert spy.inserts == [("people", 2), ("people", 1)]
    p3 = await service.client.get("/v1/collections/people/records/p3")
    assert p3.json()["data"] == {"team": "x"}


async def test_a_string_that_looks_like_a_batch_reference_is_stored_as_it_is(
    service: Service,
) -> None:
    query = """mutation {
      a: createRecord(collection: "people", id: "p1", data: {note: "${a.body.id}"}) { data }
      b: updateRecord(collection: "people", id: "p1", data: {more: "$${x}"}) { data }
    }"""
    answer = await gql(service.client, query)
    assert answer["data"]["b"]["data"] == {"note": "${a.body.id}", "more": "$${x}"}


async def test_a_generated_id_is_a_fresh_id_per_create(service: Service) -> None:
    answer = await gql(
        service.client,
        'mutation { a: createRecord(collection: "p", data: {}) { id } '
        'b: createRecord(collection: "p", data: {}) { id } }',
    )
    first, second = answer["data"]["a"]["id"], answer["data"]["b"]["id"]
    assert first != second
    assert sorted(await _ids(service, "p")) == sorted([first, second])


async def test_the_batch_a_mutation_runs_as_is_named_by_x_batch_id(service: Service) -> None:
    response = await service.client.post(
        "/graphql",
        json={
            "query": 'mutation { batch(operations: [{type: "list", collection: "p"}]) { batchId } }'
        },
        headers={"X-Batch-Id": "my-batch-7"},
    )
    assert response.json() == {"data": {"batch": {"batchId": "my-batch-7"}}}
    bad = await service.client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"X-Batch-Id": "x" * 129}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["path"] == "headers.X-Batch-Id"
