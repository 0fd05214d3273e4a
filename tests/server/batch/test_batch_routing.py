"""Routing REST and typed operations into one normalised shape, with structural checks."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from batchops._exceptions import (
    APIError,
    InvalidBatchRequestError,
    InvalidRequestError,
    MethodNotAllowedError,
    ValidationError,
)
from batchops.server.batch.routing import (
    Route,
    route_rest,
    route_typed,
)
from batchops.server.records import service
from batchops.server.records.params import parse_if_match, parse_query_value

RECORDS = "/v1/collections/people/records"


def rest_error(method: str, path: str, body: Any = msgspec.UNSET, **headers: str) -> APIError:
    with pytest.raises(APIError) as info:
        route_rest(method, path, body, headers)
    return info.value


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", RECORDS, {"data": {"n": 1}}, Route("create", "people", data={"n": 1})),
        ("GET", f"{RECORDS}/r1", msgspec.UNSET, Route("read", "people", record_id="r1")),
        ("PATCH", f"{RECORDS}/r1", {"data": {"n": 2}}, Route("update", "people", "r1", {"n": 2})),
        ("PUT", f"{RECORDS}/r1", {"data": {"n": 3}}, Route("replace", "people", "r1", {"n": 3})),
        (
            "DELETE",
            f"{RECORDS}/r1",
            msgspec.UNSET,
            Route("delete", "people", "r1"),
        ),
    ],
)
def test_each_rest_route_maps_to_its_operation_type(
    method: str, path: str, body: Any, expected: Route
) -> None:
    assert route_rest(method, path, body) == expected


def test_create_takes_an_explicit_record_id_from_the_body() -> None:
    route = route_rest("POST", RECORDS, {"id": "r9", "data": {}})
    assert route.record_id == "r9"


def test_delete_with_hard_true_sets_the_hard_param() -> None:
    assert route_rest("DELETE", f"{RECORDS}/r1?hard=true").params == {"hard": True}


@pytest.mark.parametrize(
    ("query", "sent"),
    [("true", True), ("false", False), ("1", "1"), ("TRUE", "TRUE"), ("null", "null"), ("", "")],
)
def test_a_flag_in_a_query_string_is_exactly_true_or_false_else_the_services_422(
    query: str, sent: Any
) -> None:
    # One rule with REST (records.params.parse_flag_param): true and false are the
    # booleans, any other text is passed on as sent and the records service refuses it.
    delete = route_rest("DELETE", f"{RECORDS}/r1?hard={query}")
    read = route_rest("GET", f"{RECORDS}/r1?include_deleted={query}")
    assert delete.params == {"hard": sent}
    assert read.params == ({} if sent is False else {"include_deleted": sent})
    for route, name in ((delete, "hard"), (read, "include_deleted")):
        if isinstance(sent, bool):
            service.check(route.type, "people", record_id="r1", params=route.params)
            continue
        with pytest.raises(ValidationError) as info:
            service.check(route.type, "people", record_id="r1", params=route.params)
        assert (info.value.status_code, info.value.details["path"]) == (422, name)


@pytest.mark.parametrize("flag", [1, 0, "true", "yes", [], {}])
def test_a_typed_flag_is_a_json_boolean_else_the_services_422(flag: Any) -> None:
    delete = route_typed("delete", "people", record_id="r1", options={"hard": flag})
    read = route_typed("read", "people", record_id="r1", options={"include_deleted": flag})
    assert (delete.params, read.params) == ({"hard": flag}, {"include_deleted": flag})
    for route, name in ((delete, "hard"), (read, "include_deleted")):
        with pytest.raises(ValidationError) as info:
            service.check(route.type, "people", record_id="r1", params=route.params)
        assert (info.value.status_code, info.value.details["path"]) == (422, name)


def test_a_read_that_does_not_include_deleted_records_has_no_params() -> None:
    # Such reads of one collection share one statement (the executor groups reads
    # without params).
    for include in (None, False):
        route = route_typed("read", "people", record_id="r1", options={"include_deleted": include})
        assert route.params == {}


def test_search_takes_query_filters_and_limit_from_the_body() -> None:
    route = route_rest(
        "POST", "/v1/collections/people/search", {"query": "ada", "filters": {"t": 1}, "limit": 5}
    )
    assert (route.type, route.query, route.params) == (
        "search",
        "ada",
        {"filters": {"t": 1}, "limit": 5},
    )


def test_list_query_string_becomes_equality_filters_with_json_scalars_decoded() -> None:
    route = route_rest("GET", f"{RECORDS}?team=core&age=42&active=true&zip=007&code=%2242%22")
    assert route.params["filters"] == {
        "team": "core",
        "age": 42,
        "active": True,
        "zip": "007",
        "code": "42",
    }


def test_list_reserves_limit_and_cursor() -> None:
    route = route_rest("GET", f"{RECORDS}?limit=10&cursor=123&profile.team=core")
    assert route.params == {"filters": {"profile.team": "core"}, "limit": 10, "cursor": "123"}


def test_a_list_without_limit_leaves_the_default_to_the_records_service() -> None:
    # One default for REST and both dialects: the service's (DEFAULT_PAGE_SIZE).
    assert route_rest("GET", RECORDS).params["limit"] is None
    assert route_typed("search", "people", query="ada").params["limit"] is None


def test_a_list_filter_holding_a_reference_stays_a_template() -> None:
    route = route_rest("GET", f"{RECORDS}?owner=${{a.body.id}}")
    assert route.params["filters"] == {"owner": "${a.body.id}"}


@pytest.mark.parametrize(
    ("query", "sent"),
    [("limit=0", 0), ("limit=1001", 1001), ("limit=ten", "ten"), ("limit=true", "true")],
)
def test_a_limit_outside_one_to_a_thousand_is_the_records_services_422(
    query: str, sent: Any
) -> None:
    # Routing passes the limit on as sent; the service judges it as it does over REST.
    route = route_rest("GET", f"{RECORDS}?{query}")
    assert route.params["limit"] == sent
    with pytest.raises(ValidationError) as info:
        service.check("list", "people", params=route.params)
    assert (info.value.status_code, info.value.details["path"]) == (422, "limit")


def test_a_repeated_query_parameter_is_rejected() -> None:
    assert rest_error("GET", f"{RECORDS}?team=a&team=b").details["parameter"] == "team"


def test_path_segments_are_percent_decoded() -> None:
    assert route_rest("GET", "/v1/collections/my%20people/records/r%2F1").record_id == "r/1"


def test_a_segment_holding_a_reference_stays_template_text() -> None:
    route = route_rest("PATCH", f"{RECORDS}/${{a.body.id}}", {"data": {}})
    assert route.record_id == "${a.body.id}"


def test_a_percent_encoded_reference_is_refused() -> None:
    err = rest_error("GET", f"{RECORDS}/%24%7Ba.body.id%7D")
    assert err.details["path"] == "path"


def test_a_nested_batch_rejects_the_whole_batch() -> None:
    with pytest.raises(InvalidBatchRequestError):
        route_rest("POST", "/v1/batch", {"operations": []})


@pytest.mark.parametrize("path", ["/v1/jobs", "/v2/collections/p/records", "collections/p", "/v1/"])
def test_an_unknown_path_is_an_unsupported_operation(path: str) -> None:
    err = rest_error("GET", path)
    assert (err.status_code, err.code) == (400, "UNSUPPORTED_OPERATION")


def test_a_wrong_method_on_a_known_path_is_a_405_listing_the_allowed_ones() -> None:
    err = rest_error("DELETE", RECORDS)
    assert isinstance(err, MethodNotAllowedError)
    assert err.details["allowed"] == ["GET", "POST"]


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", RECORDS, msgspec.UNSET, "body"),
        ("POST", RECORDS, {"name": "x"}, "body.name"),
        ("PATCH", f"{RECORDS}/r1", {}, "body.data"),
        ("GET", f"{RECORDS}/r1", {"data": {}}, "body"),
        ("POST", "/v1/collections/p/search", {"query": 5}, "body.query"),
    ],
)
def test_structural_body_faults_are_per_operation_400s(
    method: str, path: str, body: Any, where: str
) -> None:
    err = rest_error(method, path, body)
    assert (err.status_code, err.details["path"]) == (400, where)


def test_an_if_match_header_becomes_the_expected_version() -> None:
    route = route_rest("PUT", f"{RECORDS}/r1", {"data": {}}, {"if-match": '"7"'})
    assert route.if_match == 7


def test_an_invalid_if_match_header_is_a_per_operation_400() -> None:
    err = rest_error("PUT", f"{RECORDS}/r1", {"data": {}}, **{"If-Match": 'W/"7"'})
    assert err.details["path"] == "headers.If-Match"


@pytest.mark.parametrize(
    ("value", "version"), [("3", 3), ('"3"', 3), (" 12 ", 12), ("\t5\t", 5), (' "6" ', 6)]
)
def test_parse_if_match_accepts_a_bare_or_quoted_version(value: str, version: int) -> None:
    assert parse_if_match(value) == version


@pytest.mark.parametrize("value", ["\u00a03", "3\n", "\x0b3", "\u20033"])
def test_parse_if_match_takes_only_the_whitespace_http_allows_around_the_version(
    value: str,
) -> None:
    # RFC 9110's optional whitespace is spaces and tabs, and the OpenAPI document says so
    # (IF_MATCH_PARAM's pattern); any other space is a malformed header.
    with pytest.raises(InvalidRequestError):
        parse_if_match(value)


def test_parse_query_value_decodes_only_json_scalars() -> None:
    raw = ["42", "-1.5", "false", "null", '"x"', "[1]", "abc", "1e3"]
    assert [parse_query_value(v) for v in raw] == [42, -1.5, False, None, "x", "[1]", "abc", 1000.0]


def test_a_typed_list_takes_filters_limit_and_cursor_from_options() -> None:
    route = route_typed("list", "people", options={"filters": {"a": 1}, "limit": 3, "cursor": "c"})
    assert route.params == {"filters": {"a": 1}, "limit": 3, "cursor": "c"}


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"type": "create"}, "data"),
        ({"type": "update", "record_id": "r1"}, "data"),
        ({"type": "read"}, "id"),
        ({"type": "search"}, "query"),
        ({"type": "read", "record_id": "r1", "data": {}}, "data"),
        ({"type": "search", "query": "q", "options": {"limt": 5}}, "options.limt"),
        ({"type": "create", "data": {}, "if_match": 3}, "if_match"),
    ],
)
def test_typed_structural_faults_are_per_operation_400s(kwargs: dict[str, Any], where: str) -> None:
    op_type = kwargs.pop("type")
    with pytest.raises(InvalidRequestError) as info:
        route_typed(op_type, "people", **kwargs)
    assert info.value.details["path"] == where
