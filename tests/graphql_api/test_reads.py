"""Reads: aliased ``record`` fields coalesce into one store call (the DataLoader), a
missing record is null, and a bad name is its field's own error. Each behaviour on both
paths: literal arguments (the fast path) and variables (graphql-core's full path)."""

from __future__ import annotations

import pytest

from tests.graphql_api.conftest import StoreSpy, gql, seed
from tests.server.conftest import Service

FIELDS = "id collection data version createdAt updatedAt"


def _aliased(refs: list[tuple[str, str]], *, variables: bool) -> tuple[str, dict[str, str]]:
    """A document reading each (collection, id) under its own alias."""
    if not variables:
        body = " ".join(
            f'a{i}: record(collection: "{c}", id: "{r}") {{ {FIELDS} }}'
            for i, (c, r) in enumerate(refs)
        )
        return "{ " + body + " }", {}
    definitions = ", ".join(f"$c{i}: String!, $r{i}: ID!" for i in range(len(refs)))
    body = " ".join(
        f"a{i}: record(collection: $c{i}, id: $r{i}) {{ {FIELDS} }}" for i in range(len(refs))
    )
    values = {f"c{i}": c for i, (c, _) in enumerate(refs)} | {
        f"r{i}": r for i, (_, r) in enumerate(refs)
    }
    return f"query({definitions}) {{ {body} }}", values


PATHS = pytest.mark.parametrize("variables", [False, True], ids=["literals", "variables"])


@PATHS
async def test_a_hundred_aliased_reads_of_one_collection_are_one_store_call(
    service: Service, spy: StoreSpy, variables: bool
) -> None:
    await seed(service, "people", {f"p{i:03d}": {"i": i} for i in range(100)})
    spy.reset()
    query, values = _aliased([("people", f"p{i:03d}") for i in range(100)], variables=variables)
    answer = await gql(service.client, query, values)
    assert "errors" not in answer
    assert [answer["data"][f"a{i}"]["data"] for i in range(100)] == [{"i": i} for i in range(100)]
    # One unit of work for the key check and the reads, and one read for all 100 ids.
    assert spy.runs == 1
    assert spy.reads == [("people", [f"p{i:03d}" for i in range(100)])]


@PATHS
async def test_aliased_reads_of_two_collections_are_one_read_per_collection_in_one_call(
    service: Service, spy: StoreSpy, variables: bool
) -> None:
    await seed(service, "people", {"p1": {}, "p2": {}})
    await seed(service, "teams", {"t1": {}})
    spy.reset()
    refs = [("people", "p1"), ("teams", "t1"), ("people", "p2")]
    query, values = _aliased(refs, variables=variables)
    answer = await gql(service.client, query, values)
    assert [answer["data"][f"a{i}"]["id"] for i in range(3)] == ["p1", "t1", "p2"]
    assert spy.runs == 1
    assert spy.reads == [("people", ["p1", "p2"]), ("teams", ["t1"])]


@PATHS
async def test_a_missing_record_is_null_and_the_others_are_read(
    service: Service, variables: bool
) -> None:
    await seed(service, "people", {"p1": {"name": "Ada"}})
    query, values = _aliased([("people", "nope"), ("people", "p1")], variables=variables)
    answer = await gql(service.client, query, values)
    assert "errors" not in answer
    assert answer["data"]["a0"] is None
    assert answer["data"]["a1"]["data"] == {"name": "Ada"}


@PATHS
async def test_a_bad_record_id_is_its_fields_validation_error_and_the_others_are_read(
    service: Service, variables: bool
) -> None:
    await seed(service, "people", {"p1": {}})
    query, values = _aliased([("people", "p1"), ("people", "bad!id")], variables=variables)
    answer = await gql(service.client, query, values)
    assert answer["data"]["a0"]["id"] == "p1"
    assert answer["data"]["a1"] is None
    (error,) = answer["errors"]
    assert error["path"] == ["a1"]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert error["extensions"]["status"] == 422
    assert error["extensions"]["details"]["path"] == "id"


@PATHS
async def test_a_bad_collection_name_fails_each_of_its_fields(
    service: Service, variables: bool
) -> None:
    query, values = _aliased([("-bad", "x"), ("-bad", "y")], variables=variables)
    answer = await gql(service.client, query, values)
    assert answer["data"] == {"a0": None, "a1": None}
    assert sorted(e["path"][0] for e in answer["errors"]) == ["a0", "a1"]
    assert {e["extensions"]["details"]["path"] for e in answer["errors"]} == {"collection"}


async def test_records_answers_in_the_order_asked_with_null_for_each_missing_one(
    service: Service, spy: StoreSpy
) -> None:
    await seed(service, "people", {"p1": {}, "p2": {}})
    spy.reset()
    answer = await gql(
        service.client, '{ records(collection: "people", ids: ["p2", "zz", "p1"]) { id } }'
    )
    assert answer["data"]["records"] == [{"id": "p2"}, None, {"id": "p1"}]
    assert spy.reads == [("people", ["p2", "zz", "p1"])]


async def test_another_tenants_record_is_null(service: Service) -> None:
    other = await service.client_for("someone_else")
    await other.post(
        "/v1/collections/people/records", json={"id": "theirs", "data": {"secret": True}}
    )
    answer = await gql(service.client, '{ record(collection: "people", id: "theirs") { id } }')
    assert answer == {"data": {"record": None}}


async def test_include_deleted_reads_a_soft_deleted_record_with_its_deleted_at(
    service: Service,
) -> None:
    await seed(service, "people", {"p1": {}})
    deleted = await service.client.delete("/v1/collections/people/records/p1")
    assert deleted.status_code == 200
    query = '{ gone: record(collection: "people", id: "p1") { id } '
    query += 'kept: record(collection: "people", id: "p1", includeDeleted: true) '
    query += "{ id version deletedAt } }"
    answer = await gql(service.client, query)
    assert answer["data"]["gone"] is None
    assert answer["data"]["kept"]["version"] == 2
    assert answer["data"]["kept"]["deletedAt"] is not None


async def test_list_and_search_answer_pages_as_rest_does(service: Service) -> None:
    await seed(service, "people", {"p1": {"name": "Ada"}, "p2": {"name": "Grace"}})
    query = """{
      first: list(collection: "people", limit: 1) { records { id } nextCursor }
      found: search(collection: "people", query: "grace") { total results { record { id } } }
    }"""
    answer = await gql(service.client, query)
    first = answer["data"]["first"]
    assert [r["id"] for r in first["records"]] == ["p1"]
    rest = await service.client.get("/v1/collections/people/records?limit=1")
    assert first["nextCursor"] == rest.json()["next_cursor"]
    after = await gql(
        service.client,
        'query($c: String) { list(collection: "people", cursor: $c) { records { id } } }',
        {"c": first["nextCursor"]},
    )
    assert [r["id"] for r in after["data"]["list"]["records"]] == ["p2"]
    assert answer["data"]["found"] == {"total": 1, "results": [{"record": {"id": "p2"}}]}
