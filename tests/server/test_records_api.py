"""The records REST API, as a user sees it (both backends)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.conftest import Service

PEOPLE = "/v1/collections/people/records"


def error_of(response: Any) -> dict[str, Any]:
    """The error envelope's inner object (asserting the envelope shape)."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


async def test_creating_a_record_returns_201_with_a_generated_time_ordered_id(
    service: Service,
) -> None:
    first = await service.client.post(PEOPLE, json={"data": {"name": "Ada"}})
    second = await service.client.post(PEOPLE, json={"data": {"name": "Grace"}})
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"id", "collection", "data", "version", "created_at", "updated_at"}
    assert body["collection"] == "people"
    assert body["data"] == {"name": "Ada"}
    assert body["version"] == 1
    assert first.json()["id"] < second.json()["id"]


async def test_creating_a_record_with_an_existing_id_is_a_409(service: Service) -> None:
    assert (await service.client.post(PEOPLE, json={"id": "p1", "data": {}})).status_code == 201
    again = await service.client.post(PEOPLE, json={"id": "p1", "data": {"x": 1}})
    assert again.status_code == 409
    assert error_of(again)["code"] == "ALREADY_EXISTS"
    stored = await service.client.get(f"{PEOPLE}/p1")
    assert stored.json()["data"] == {}


async def test_reading_a_missing_record_is_a_404_envelope(service: Service) -> None:
    response = await service.client.get(f"{PEOPLE}/nope")
    assert response.status_code == 404
    assert error_of(response)["details"] == {"collection": "people", "id": "nope"}


async def test_patch_is_a_json_merge_patch_and_bumps_the_version(service: Service) -> None:
    await service.client.post(
        PEOPLE,
        json={"id": "p1", "data": {"name": "Ada", "tags": ["x"], "addr": {"c": "L", "z": 1}}},
    )
    response = await service.client.patch(
        f"{PEOPLE}/p1", json={"data": {"tags": None, "addr": {"z": None, "n": 2}}}
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"name": "Ada", "addr": {"c": "L", "n": 2}}
    assert response.json()["version"] == 2


async def test_put_replaces_the_data_whole(service: Service) -> None:
    await service.client.post(PEOPLE, json={"id": "p1", "data": {"name": "Ada", "age": 36}})
    response = await service.client.put(f"{PEOPLE}/p1", json={"data": {"name": "Ada L."}})
    assert response.json()["data"] == {"name": "Ada L."}
    assert response.json()["version"] == 2


async def test_if_match_with_a_stale_version_is_a_409_and_changes_nothing(
    service: Service,
) -> None:
    await service.client.post(PEOPLE, json={"id": "p1", "data": {"n": 1}})
    await service.client.patch(f"{PEOPLE}/p1", json={"data": {"n": 2}})
    stale = await service.client.patch(
        f"{PEOPLE}/p1", json={"data": {"n": 3}}, headers={"If-Match": "1"}
    )
    assert stale.status_code == 409
    assert error_of(stale)["code"] == "VERSION_MISMATCH"
    fresh = await service.client.patch(
        f"{PEOPLE}/p1", json={"data": {"n": 3}}, headers={"If-Match": "2"}
    )
    assert fresh.status_code == 200
    assert fresh.json()["data"] == {"n": 3}


async def test_delete_is_soft_by_default_and_keeps_the_id_taken(service: Service) -> None:
    await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    deleted = await service.client.delete(f"{PEOPLE}/p1")
    assert deleted.status_code == 200
    assert deleted.json()["hard"] is False
    assert (await service.client.get(f"{PEOPLE}/p1")).status_code == 404
    reuse = await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    assert reuse.status_code == 409


async def test_hard_delete_removes_the_row(service: Service) -> None:
    await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    deleted = await service.client.delete(f"{PEOPLE}/p1", params={"hard": "true"})
    assert deleted.json()["hard"] is True
    rows = await service.store.run(
        lambda tx: tx.get_records(service.tenant, "people", ["p1"], include_deleted=True)
    )
    assert rows == {}


async def test_list_filters_on_dot_paths_and_pages_with_a_cursor(service: Service) -> None:
    for i in range(5):
        team = "core" if i % 2 == 0 else "web"
        await service.client.post(
            PEOPLE, json={"id": f"p{i}", "data": {"org": {"team": team}, "n": i}}
        )
    first = await service.client.get(PEOPLE, params={"org.team": "core", "limit": "2"})
    assert [r["id"] for r in first.json()["records"]] == ["p0", "p2"]
    cursor = first.json()["next_cursor"]
    assert cursor
    second = await service.client.get(
        PEOPLE, params={"org.team": "core", "limit": "2", "cursor": cursor}
    )
    assert [r["id"] for r in second.json()["records"]] == ["p4"]
    assert second.json()["next_cursor"] is None


async def test_list_compares_numbers_in_the_query_string_as_numbers(service: Service) -> None:
    await service.client.post(PEOPLE, json={"id": "a", "data": {"n": 3}})
    await service.client.post(PEOPLE, json={"id": "b", "data": {"n": "3"}})
    as_number = await service.client.get(PEOPLE, params={"n": "3"})
    as_string = await service.client.get(PEOPLE, params={"n": '"3"'})
    assert [r["id"] for r in as_number.json()["records"]] == ["a"]
    assert [r["id"] for r in as_string.json()["records"]] == ["b"]


async def test_search_ranks_records_by_their_text_and_honours_filters(service: Service) -> None:
    await service.client.post(
        PEOPLE, json={"id": "a", "data": {"bio": "Ada wrote the first program", "team": "x"}}
    )
    await service.client.post(
        PEOPLE, json={"id": "b", "data": {"bio": "program program program", "team": "y"}}
    )
    await service.client.post(PEOPLE, json={"id": "c", "data": {"bio": "nothing here"}})
    found = await service.client.post("/v1/collections/people/search", json={"query": "program"})
    assert found.status_code == 200
    ids = [hit["record"]["id"] for hit in found.json()["results"]]
    assert ids == ["b", "a"]
    assert found.json()["total"] == 2
    filtered = await service.client.post(
        "/v1/collections/people/search", json={"query": "program", "filters": {"team": "x"}}
    )
    assert [hit["record"]["id"] for hit in filtered.json()["results"]] == ["a"]


async def test_a_search_limit_sent_as_a_whole_float_is_that_integer(service: Service) -> None:
    # Found by schemathesis (tests/contract): JSON has one number type and the OpenAPI
    # document calls `limit` an integer, so 1.0 is 1; it was a 422.
    for record_id in ("a", "b"):
        await service.client.post(PEOPLE, json={"id": record_id, "data": {"bio": "program"}})
    search = "/v1/collections/people/search"
    found = await service.client.post(search, json={"query": "program", "limit": 1.0})
    assert found.status_code == 200, found.text
    assert len(found.json()["results"]) == 1
    fractional = await service.client.post(search, json={"query": "program", "limit": 1.5})
    assert fractional.status_code == 422
    assert error_of(fractional)["details"]["path"] == "limit"


async def test_data_that_is_not_an_object_is_a_422_naming_the_field(service: Service) -> None:
    response = await service.client.post(PEOPLE, json={"data": [1, 2]})
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == "data"


BIG = b"123456789012345678901234567890"


async def test_an_integer_beyond_64_bits_is_a_422_naming_it_not_a_silent_float(
    service: Service,
) -> None:
    response = await service.client.post(
        PEOPLE,
        content=b'{"data": {"ok": 1, "n": [' + BIG + b"]}}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == "data.n[0]"
    listed = await service.client.get(PEOPLE)
    assert listed.json()["records"] == []


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_writing_an_integer_beyond_64_bits_into_a_record_is_a_422(
    service: Service, method: str
) -> None:
    created = (await service.client.post(PEOPLE, json={"data": {"n": 1}})).json()
    response = await service.client.request(
        method,
        f"{PEOPLE}/{created['id']}",
        content=b'{"data": {"n": ' + BIG + b"}}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == "data.n"
    got = await service.client.get(f"{PEOPLE}/{created['id']}")
    assert got.json()["data"] == {"n": 1}
    assert got.json()["version"] == 1


async def test_unknown_body_fields_are_a_400_naming_the_field(service: Service) -> None:
    response = await service.client.post(PEOPLE, json={"data": {}, "dat": {}})
    assert response.status_code == 400
    assert error_of(response)["details"]["path"] == "dat"


async def test_a_body_that_is_not_json_is_a_400_and_writes_nothing(service: Service) -> None:
    response = await service.client.post(
        PEOPLE, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    listed = await service.client.get(PEOPLE)
    assert listed.json()["records"] == []


async def test_a_body_that_is_not_declared_json_is_a_415(service: Service) -> None:
    response = await service.client.post(
        PEOPLE, content=b"name=ada", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_an_invalid_collection_name_is_a_422(service: Service) -> None:
    response = await service.client.post("/v1/collections/-bad!/records", json={"data": {}})
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == "collection"


async def test_an_unknown_route_answers_with_the_envelope(service: Service) -> None:
    response = await service.client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "NOT_FOUND"


async def test_openapi_docs_are_served(service: Service) -> None:
    assert (await service.client.get("/docs")).status_code == 200
    schema = (await service.client.get("/openapi.json")).json()
    assert "/v1/batch" in schema["paths"]
    assert "/v1/collections/{collection}/records" in schema["paths"]


async def test_creating_with_an_explicit_null_id_is_a_422_not_a_generated_id(
    service: Service,
) -> None:
    response = await service.client.post(PEOPLE, json={"id": None, "data": {}})
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == "id"
    assert (await service.client.get(PEOPLE)).json()["records"] == []
