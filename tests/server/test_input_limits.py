"""A client mistake is never a 5xx: extreme input gets a 4xx envelope naming the fault
(both backends, REST and both batch dialects). The limits are in
batchops.server.limits and docs/limits.md."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from batchops._exceptions import ValidationError
from batchops.server.limits import (
    MAX_FILTER_SEGMENTS,
    MAX_FILTERS,
    MAX_JSON_DEPTH,
    MAX_QUERY_CHARS,
    MAX_SEARCH_TERMS,
)
from tests.server.conftest import Service

PEOPLE = "/v1/collections/people/records"
SEARCH = "/v1/collections/people/search"
BIG = 2**70


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error


def nested(depth: int) -> dict[str, Any]:
    """An object nesting ``depth`` levels (itself included)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def deep_text(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


async def batch_op(service: Service, op: dict[str, Any]) -> dict[str, Any]:
    """Send one operation in a batch; its result (the batch itself must be a 200/207)."""
    response = await service.client.post("/v1/batch", json={"operations": [op]})
    assert response.status_code in (200, 207), response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


# -- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", PEOPLE),
        ("PATCH", f"{PEOPLE}/p1"),
        ("PUT", f"{PEOPLE}/p1"),
        ("POST", SEARCH),
        ("POST", "/v1/bulk/update"),
        ("POST", "/v1/bulk/delete"),
        ("POST", "/v1/webhooks"),
    ],
)
async def test_a_body_too_deep_to_decode_is_a_400_naming_where_it_goes_too_deep(
    service: Service, method: str, path: str
) -> None:
    response = await service.client.request(
        method,
        path,
        content=b'{"data":' + deep_text(2000) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "JSON_TOO_DEEP"
    assert error["details"]["path"].startswith("data.a.a")


async def test_a_batch_too_deep_to_decode_is_a_400_naming_the_operation(
    service: Service,
) -> None:
    body = (
        b'{"operations":[{"type":"create","collection":"people","data":{}},'
        b'{"type":"create","collection":"people","data":' + deep_text(2000) + b"}]}"
    )
    response = await service.client.post(
        "/v1/batch", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "INVALID_BATCH_REQUEST"
    assert error["details"]["path"].startswith("operations[1].data.a.a")


async def test_record_data_at_the_depth_limit_is_stored(service: Service) -> None:
    response = await service.client.post(PEOPLE, json={"data": nested(MAX_JSON_DEPTH)})
    assert response.status_code == 201, response.text


async def test_record_data_past_the_depth_limit_is_a_422_naming_the_path(
    service: Service,
) -> None:
    response = await service.client.post(PEOPLE, json={"data": nested(MAX_JSON_DEPTH + 1)})
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "JSON_TOO_DEEP"
    assert error["details"]["path"] == "data" + ".a" * MAX_JSON_DEPTH


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 900])
@pytest.mark.parametrize("dialect", ["typed", "rest"])
async def test_a_create_in_a_batch_past_the_depth_limit_fails_alone_with_a_422(
    service: Service, depth: int, dialect: str
) -> None:
    op: dict[str, Any] = (
        {"type": "create", "collection": "people", "data": nested(depth)}
        if dialect == "typed"
        else {"method": "POST", "path": PEOPLE, "body": {"data": nested(depth)}}
    )
    response = await service.client.post(
        "/v1/batch",
        json={"operations": [{"type": "create", "collection": "people", "data": {}}, op]},
    )
    assert response.status_code == 207, response.text
    first, second = response.json()["results"]
    assert first["status"] == 201
    assert second["status"] == 422
    assert second["error"]["code"] == "JSON_TOO_DEEP"


# -- integers beyond 64 bits -----------------------------------------------------------------


async def test_a_filter_on_an_integer_beyond_64_bits_is_a_422_over_rest(service: Service) -> None:
    response = await service.client.get(PEOPLE, params={"n": str(BIG)})
    assert response.status_code == 422, response.text
    assert error_of(response)["details"]["path"] == "filters.n"


@pytest.mark.parametrize("kind", ["list", "search"])
async def test_a_filter_on_an_integer_beyond_64_bits_is_a_422_in_a_batch(
    service: Service, kind: str
) -> None:
    op: dict[str, Any] = {"type": kind, "collection": "people", "options": {"filters": {"n": BIG}}}
    if kind == "search":
        op["query"] = "ada"
    result = await batch_op(service, op)
    assert result["status"] == 422, result
    assert result["error"]["details"]["path"].endswith("filters.n")


async def test_a_search_filter_on_an_integer_beyond_64_bits_is_a_422_over_rest(
    service: Service,
) -> None:
    response = await service.client.post(SEARCH, json={"query": "ada", "filters": {"n": -BIG}})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("operation", ["update", "delete"])
async def test_a_bulk_filter_or_limit_beyond_64_bits_is_a_422(
    service: Service, operation: str
) -> None:
    body: dict[str, Any] = {"collection": "people", "filter": {"n": BIG}}
    if operation == "update":
        body["update"] = {"x": 1}
    response = await service.client.post(f"/v1/bulk/{operation}", json=body)
    assert response.status_code == 422, response.text
    body["filter"] = {}
    body["limit"] = BIG
    response = await service.client.post(f"/v1/bulk/{operation}", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["details"]["path"] == "limit"


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param(b"18446744073709551616", id="past-64-bits"),
        pytest.param(b"-" + b"9" * 400, id="400-digits"),
        pytest.param(b"[" * 300 + b"]" * 300, id="nested-past-the-encoders-depth"),
    ],
)
async def test_a_search_limit_the_encoder_cannot_write_is_a_422_naming_it(
    service: Service, limit: bytes
) -> None:
    # Found by tests/fuzz: the 422 echoed the value in details.value, and orjson cannot
    # write an integer past 64 bits or nesting past 254 levels: the error became a 500.
    body = b'{"query": "ada", "limit": ' + limit + b"}"
    response = await service.client.post(
        SEARCH, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert error_of(response)["details"]["path"] == "limit"


@pytest.mark.parametrize("version", [2**63, 2**64, BIG, 1e300])
async def test_a_typed_if_match_beyond_64_bits_fails_its_operation_alone_with_a_400(
    service: Service, version: float
) -> None:
    # Found by tests/fuzz: the operation's 409 VERSION_MISMATCH echoed the version in
    # details.expected, which orjson cannot write: the whole batch answered 500.
    created = await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    assert created.status_code == 201, created.text
    op = {"type": "update", "collection": "people", "id": "p1", "data": {}, "if_match": version}
    result = await batch_op(service, op)
    assert result["status"] == 400, result
    assert result["error"]["details"]["path"] == "operations[0].if_match"


@pytest.mark.parametrize("limit", ["99999999999999999999999", "²", "1e3", "-1", "9" * 5000])
async def test_a_list_limit_that_is_not_a_small_integer_is_a_4xx(
    service: Service, limit: str
) -> None:
    response = await service.client.get(PEOPLE, params={"limit": limit})
    assert response.status_code in (400, 422), response.text
    assert error_of(response)["details"]["path"] == "limit"


# -- NUL: refused on both backends, with the path --------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"name": "a\x00b"}, "data.name"),
        ({"tags": ["ok", "\x00"]}, "data.tags[1]"),
        ({"a\x00": 1}, "data"),
        ({"deep": {"er": {"k\x00": "v"}}}, "data.deep.er"),
    ],
)
async def test_a_nul_in_record_data_is_a_422_naming_its_path(
    service: Service, data: dict[str, Any], path: str
) -> None:
    response = await service.client.post(PEOPLE, json={"data": data})
    assert response.status_code == 422, response.text
    assert error_of(response)["details"]["path"] == path
    listed = await service.client.get(PEOPLE)
    assert listed.json()["records"] == []


async def test_a_nul_in_a_patch_or_replace_is_a_422_and_changes_nothing(service: Service) -> None:
    await service.client.post(PEOPLE, json={"id": "p1", "data": {"name": "Ada"}})
    patched = await service.client.patch(f"{PEOPLE}/p1", json={"data": {"name": "\x00"}})
    replaced = await service.client.put(f"{PEOPLE}/p1", json={"data": {"x\x00": 1}})
    assert (patched.status_code, replaced.status_code) == (422, 422)
    stored = (await service.client.get(f"{PEOPLE}/p1")).json()
    assert (stored["data"], stored["version"]) == ({"name": "Ada"}, 1)


async def test_a_nul_in_a_batch_create_fails_that_operation_alone(service: Service) -> None:
    response = await service.client.post(
        "/v1/batch",
        json={
            "operations": [
                {"type": "create", "collection": "people", "data": {"n": 1}},
                {"type": "create", "collection": "people", "data": {"n": "\x00"}},
            ]
        },
    )
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422]
    assert results[1]["error"]["details"]["path"].endswith("data.n")


async def test_a_nul_in_a_filter_value_is_a_422(service: Service) -> None:
    response = await service.client.get(PEOPLE, params={"name": "a\x00"})
    assert response.status_code == 422, response.text
    assert error_of(response)["details"]["path"] == "filters.name"
    result = await batch_op(
        service,
        {"type": "list", "collection": "people", "options": {"filters": {"name": "\x00"}}},
    )
    assert result["status"] == 422


@pytest.mark.parametrize("decoded", ["a\x00b", "\x00", "bad id with spaces"])
async def test_a_cursor_that_is_not_one_of_ours_is_a_400(service: Service, decoded: str) -> None:
    cursor = base64.urlsafe_b64encode(decoded.encode()).decode().rstrip("=")
    response = await service.client.get(PEOPLE, params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert error_of(response)["details"]["path"] == "cursor"


@pytest.mark.parametrize("path", [f"{PEOPLE}/a%00b", "/v1/collections/pe%00ople/records"])
async def test_a_nul_in_an_id_or_a_collection_name_is_a_422(service: Service, path: str) -> None:
    response = await service.client.get(path)
    assert response.status_code == 422, response.text


async def test_a_nul_in_a_search_query_is_a_word_separator(service: Service) -> None:
    await service.client.post(PEOPLE, json={"data": {"name": "ada lovelace"}})
    response = await service.client.post(SEARCH, json={"query": "ada\x00lovelace"})
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1


# -- search terms ----------------------------------------------------------------------------


async def test_a_search_with_more_distinct_words_than_the_cap_is_a_422(service: Service) -> None:
    query = " ".join(f"w{i}" for i in range(MAX_SEARCH_TERMS + 1))
    response = await service.client.post(SEARCH, json={"query": query})
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "TOO_MANY_SEARCH_TERMS"
    result = await batch_op(service, {"type": "search", "collection": "people", "query": query})
    assert result["status"] == 422
    assert result["error"]["code"] == "TOO_MANY_SEARCH_TERMS"


async def test_repeated_search_words_count_once(service: Service) -> None:
    await service.client.post(PEOPLE, json={"data": {"name": "ada"}})
    response = await service.client.post(SEARCH, json={"query": "ada " * 1000})
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1


async def test_a_search_query_longer_than_the_cap_is_a_422(service: Service) -> None:
    response = await service.client.post(SEARCH, json={"query": "a" * (MAX_QUERY_CHARS + 1)})
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "QUERY_TOO_LONG"


async def test_a_search_at_the_caps_is_answered(service: Service) -> None:
    query = " ".join(f"w{i}" for i in range(MAX_SEARCH_TERMS))
    response = await service.client.post(SEARCH, json={"query": query})
    assert response.status_code == 200, response.text


# -- filters ---------------------------------------------------------------------------------


async def test_more_filters_than_the_cap_are_a_422(service: Service) -> None:
    filters = {f"f{i}": i for i in range(MAX_FILTERS + 1)}
    response = await service.client.get(PEOPLE, params={k: str(v) for k, v in filters.items()})
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "TOO_MANY_FILTERS"
    for kind in ("list", "search"):
        op: dict[str, Any] = {"type": kind, "collection": "people", "options": {"filters": filters}}
        if kind == "search":
            op["query"] = "x"
        result = await batch_op(service, op)
        assert result["status"] == 422, result
    bulk = await service.client.post(
        "/v1/bulk/delete", json={"collection": "people", "filter": filters}
    )
    assert bulk.status_code == 422, bulk.text


async def test_filters_at_the_cap_are_answered(service: Service) -> None:
    params = {f"f{i}": str(i) for i in range(MAX_FILTERS)}
    response = await service.client.get(PEOPLE, params=params)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("segments", [MAX_FILTER_SEGMENTS + 1, 300])
async def test_a_filter_path_with_too_many_segments_is_a_422(
    service: Service, segments: int
) -> None:
    path = ".".join(["a"] * segments)
    response = await service.client.get(PEOPLE, params={path: "1"})
    assert response.status_code == 422, response.text
    response = await service.client.post(SEARCH, json={"query": "x", "filters": {path: 1}})
    assert response.status_code == 422, response.text


async def test_a_filter_path_at_the_segment_cap_is_answered(service: Service) -> None:
    path = ".".join(["a"] * MAX_FILTER_SEGMENTS)
    response = await service.client.get(PEOPLE, params={path: "1"})
    assert response.status_code == 200, response.text


# -- query strings ---------------------------------------------------------------------------


async def test_a_repeated_query_parameter_is_a_400_over_rest_as_in_a_batch(
    service: Service,
) -> None:
    response = await service.client.get(f"{PEOPLE}?team=a&team=b")
    assert response.status_code == 400, response.text
    assert error_of(response)["details"]["parameter"] == "team"
    result = await batch_op(service, {"method": "GET", "path": f"{PEOPLE}?team=a&team=b"})
    assert result["status"] == 400


def test_an_error_echoing_a_value_json_cannot_hold_still_renders_as_an_envelope() -> None:
    # Any error that names what the client sent must stay a writable 4xx, whatever it was.
    error = ValidationError(
        "bad", details={"value": 2**70, "path": "a\ud800", "deep": [1, -(2**64)]}
    )
    envelope = orjson.loads(orjson.dumps(error.to_envelope()))
    assert envelope == {
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "bad",
            "details": {"value": str(2**70), "path": "a\\ud800", "deep": [1, str(-(2**64))]},
        }
    }
