"""Fuzzing the REST records routes: bodies, path parameters, query strings and headers.

Every answer is a success or a 4xx error envelope (see tests/fuzz/harness.py), on both
backends; the server answers ``/healthz`` within 1 s throughout.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import examples
from tests.fuzz.harness import JSON, Fuzzer
from tests.fuzz.strategies import (
    deep_text,
    dumps,
    extreme_shapes,
    hostile_body,
    hostile_query_values,
    hostile_segments,
    hostile_values,
    pick,
)

PEOPLE = "/v1/collections/people/records"
DATA = {
    "name": "Ada Lovelace",
    "age": 36,
    "score": 9.5,
    "active": True,
    "tags": ["math", "code"],
    "profile": {"team": "core", "city": "London", "manager": None},
}
CREATE = {"id": "p_new", "data": DATA}
WRITE = {"data": DATA}
SEARCH = {"query": "ada lovelace", "filters": {"profile.team": "core", "age": 36}, "limit": 5}

CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/merge-patch+json",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
    "application/json, text/plain",
    "application/jsonx",
)
IF_MATCH = ('"1"', "1", "0", "-1", 'W/"1"', "*", '"1", "2"', "9" * 19, "9" * 18, "", "é", "1 ")


async def seed(fuzzer: Fuzzer) -> None:
    """Records the fuzzed requests can find: ``p1`` live, ``p2`` soft-deleted."""
    client = fuzzer.client
    for record_id in ("p1", "p2"):
        response = await client.post(PEOPLE, json={"id": record_id, "data": DATA})
        assert response.status_code == 201, response.text
    response = await client.delete(f"{PEOPLE}/p2")
    assert response.status_code == 200, response.text


def json_headers() -> st.SearchStrategy[dict[str, str]]:
    """Mostly ``Content-Type: application/json``; sometimes another type, a gzip that is
    not gzip, an unknown encoding, or a hostile ``If-Match``."""
    plain = st.just(dict(JSON))
    odd = st.fixed_dictionaries(
        {"Content-Type": st.sampled_from(CONTENT_TYPES)},
        optional={
            "Content-Encoding": st.sampled_from(("gzip", "br", "identity", "gzip, gzip", "")),
            "If-Match": st.sampled_from(IF_MATCH),
        },
    )
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else plain)


async def test_hostile_bodies_on_create_patch_and_put_are_answered_without_a_5xx(
    fuzzer: Fuzzer,
) -> None:
    await seed(fuzzer)
    routes = st.sampled_from(
        [("POST", PEOPLE, CREATE), ("PATCH", f"{PEOPLE}/p1", WRITE), ("PUT", f"{PEOPLE}/p1", WRITE)]
    )

    @examples(400)
    @given(
        route=routes.flatmap(lambda r: st.tuples(st.just(r), hostile_body(r[2]))),
        headers=json_headers(),
    )
    def example(route: tuple[tuple[str, str, Any], bytes], headers: dict[str, str]) -> None:
        (method, url, _), body = route
        fuzzer.request(method, url, content=body, headers=headers)

    await fuzzer.run(example)


async def test_hostile_collections_and_ids_in_record_paths_are_answered_without_a_5xx(
    fuzzer: Fuzzer,
) -> None:
    await seed(fuzzer)
    collections = st.sampled_from(["people"]) | hostile_segments()
    ids = st.sampled_from(["p1", "p2", "nope"]) | hostile_segments()
    flags = st.sampled_from(["", "?include_deleted=true", "?hard=true", "?hard=1"]) | (
        st.tuples(st.sampled_from(["include_deleted", "hard"]), hostile_query_values()).map(
            lambda kv: f"?{kv[0]}={kv[1]}"
        )
    )
    calls = st.sampled_from(
        [("GET", ""), ("PATCH", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/restore")]
    )

    @examples(400)
    @given(
        call=calls,
        collection=collections,
        record_id=ids,
        query=flags,
        if_match=st.none() | st.sampled_from(IF_MATCH),
    )
    def example(
        call: tuple[str, str], collection: str, record_id: str, query: str, if_match: str | None
    ) -> None:
        method, tail = call
        url = f"/v1/collections/{collection}/records/{record_id}{tail}{query}"
        headers = dict(JSON)
        if if_match is not None:
            headers["If-Match"] = if_match
        body = dumps(WRITE) if method in ("PATCH", "PUT") else b""
        fuzzer.request(method, url, content=body, headers=headers)

    await fuzzer.run(example)


@st.composite
def list_queries(draw: st.DrawFn) -> str:
    """A list query string: filters on ordinary, hostile, 300-segment and 1,000 paths,
    ``limit`` and ``cursor`` with hostile values, repeated keys."""
    parts: list[str] = []
    kind = draw(st.sampled_from(("some", "many_filters", "long_path", "repeated")))
    if kind == "many_filters":
        count = draw(st.sampled_from((64, 65, 1000)))
        parts += [f"f{i}={i}" for i in range(count)]
    elif kind == "long_path":
        segments = draw(st.sampled_from((32, 33, 300)))
        parts.append(".".join(["a"] * segments) + "=1")
    elif kind == "repeated":
        name = draw(st.sampled_from(("limit", "cursor", "name", "")))
        parts += [f"{name}=1", f"{name}=2"]
    names = st.sampled_from(["name", "age", "profile.team", "tags.0", "limit", "cursor"]) | (
        hostile_segments()
    )
    for name, value in draw(st.lists(st.tuples(names, hostile_query_values()), max_size=4)):
        parts.append(f"{name}={value}")
    return "&".join(parts)


async def test_hostile_list_query_strings_are_answered_without_a_5xx(fuzzer: Fuzzer) -> None:
    await seed(fuzzer)

    @examples(300)
    @given(query=list_queries(), collection=st.just("people") | hostile_segments())
    def example(query: str, collection: str) -> None:
        fuzzer.request("GET", f"/v1/collections/{collection}/records?{query}")

    await fuzzer.run(example)


async def test_a_list_cursor_of_any_text_is_answered_without_a_5xx(fuzzer: Fuzzer) -> None:
    await seed(fuzzer)
    cursors = st.one_of(
        hostile_query_values(),
        st.binary(max_size=48).map(lambda b: quote(base64.b64encode(b), safe="")),
        st.sampled_from(("eyJ9", "e30", "bnVsbA", "WzFd", "eyJpZCI6MX0", "=" * 8)),
    )

    @examples(100)
    @given(cursor=cursors)
    def example(cursor: str) -> None:
        fuzzer.request("GET", f"{PEOPLE}?limit=1&cursor={cursor}")

    await fuzzer.run(example)


def search_values() -> st.SearchStrategy[Any]:
    """Replacements weighted toward what a search meets: long queries, many words and
    filters, deep filter paths."""
    return st.one_of(hostile_values(), extreme_shapes(), deep_text())


async def test_hostile_search_bodies_are_answered_without_a_5xx(fuzzer: Fuzzer) -> None:
    await seed(fuzzer)

    @examples(300)
    @given(body=hostile_body(SEARCH, search_values()), headers=json_headers())
    def example(body: bytes, headers: dict[str, str]) -> None:
        fuzzer.request("POST", "/v1/collections/people/search", content=body, headers=headers)

    await fuzzer.run(example)


async def test_any_method_on_any_records_path_is_answered_without_a_5xx(fuzzer: Fuzzer) -> None:
    """Methods a path does not take, on paths no route has: a 404 or 405 envelope."""
    paths = st.sampled_from(
        [
            PEOPLE,
            f"{PEOPLE}/p1",
            f"{PEOPLE}/p1/restore",
            "/v1/collections/people/search",
            "/v1/collections/people",
            "/v1/collections",
            f"{PEOPLE}/p1/extra/segments",
            "/v1/batch",
            "/v1/bulk/update",
        ]
    )
    methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])

    @examples(100)
    @given(method=methods, path=paths, pick_query=pick(["", "limit=1"]))
    def example(method: str, path: str, pick_query: str) -> None:
        fuzzer.request(method, f"{path}?{pick_query}", content=b"{}", headers=JSON)

    await fuzzer.run(example)
