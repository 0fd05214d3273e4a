"""The exact requests the SDK sends, read at a recording proxy in front of a real server.

Why pin them: the same call made through two SDK paths (a single call, a bulk helper, a
coalesced call) must ask the server the same thing, or users see different answers — e.g.
a search without a limit must never carry a limit on one path and not on another.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from batchops.client import AsyncClient, Client
from tests.client.conftest import Tenant
from tests.client.fault_proxy import FaultProxy

SEARCH = "/v1/collections/people/search"


def _sent(proxy: FaultProxy) -> list[tuple[str, str, Any]]:
    return [(s.method, s.path, orjson.loads(s.body) if s.body else None) for s in proxy.seen]


def _batch_of(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"operations": list(operations), "options": {}}


def _search(query: str, **options: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "search", "collection": "people", "query": query}
    if options:
        op["options"] = options
    return op


async def test_a_search_without_a_limit_sends_no_limit_on_any_sdk_path(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        people = client.collection("people")
        await people.search("ada")
        await people.search("ada", filters={"team": "core"})
        await people.search_many(["ada", {"query": "ada", "filters": {"team": "core"}}])
    async with AsyncClient(proxy.url, tenant_key.key, coalesce=True) as client:
        await client.collection("people").search("ada")

    assert _sent(proxy) == [
        ("POST", SEARCH, {"query": "ada"}),
        ("POST", SEARCH, {"query": "ada", "filters": {"team": "core"}}),
        ("POST", "/v1/batch", _batch_of(_search("ada"), _search("ada", filters={"team": "core"}))),
        ("POST", "/v1/batch", _batch_of(_search("ada"))),
    ]


async def test_an_explicit_search_limit_is_sent_as_given_on_every_sdk_path(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        people = client.collection("people")
        await people.search("ada", limit=5)
        await people.search_many([{"query": "ada", "limit": 5}])
    async with AsyncClient(proxy.url, tenant_key.key, coalesce=True) as client:
        await client.collection("people").search("ada", limit=5)

    assert _sent(proxy) == [
        ("POST", SEARCH, {"query": "ada", "limit": 5}),
        ("POST", "/v1/batch", _batch_of(_search("ada", limit=5))),
        ("POST", "/v1/batch", _batch_of(_search("ada", limit=5))),
    ]


async def test_a_list_without_a_limit_sends_no_limit_single_or_bulk(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        people = client.collection("people")
        await people.list()
        await people.list_many([{"team": "core"}])

    listing = {"type": "list", "collection": "people"}
    assert _sent(proxy) == [
        ("POST", "/v1/batch", _batch_of(listing)),
        ("POST", "/v1/batch", _batch_of({**listing, "options": {"filters": {"team": "core"}}})),
    ]


async def test_the_blocking_client_sends_what_the_async_one_sends(
    proxy: FaultProxy, tenant_key: Tenant
) -> None:
    def blocking_calls() -> None:
        with Client(proxy.url, tenant_key.key) as client:
            client.collection("people").search("ada")
            client.collection("people").search_many(["ada"])

    # In a thread: the proxy runs on this test's event loop, which must keep running.
    await asyncio.to_thread(blocking_calls)

    assert _sent(proxy) == [
        ("POST", SEARCH, {"query": "ada"}),
        ("POST", "/v1/batch", _batch_of(_search("ada"))),
    ]


@pytest.mark.parametrize("atomic", [False, True])
async def test_an_async_batch_is_one_request_that_prefers_an_async_answer(
    proxy: FaultProxy, tenant_key: Tenant, atomic: bool
) -> None:
    ops = [{"type": "create", "collection": "people", "data": {"name": "Ada"}}]
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        job = await client.jobs.create_batch(ops, atomic=atomic, idempotency_key="nightly-1")

    assert job["type"] == "batch"
    [request] = proxy.seen
    assert request.headers["prefer"] == "respond-async"
    assert request.headers["idempotency-key"] == "nightly-1"
    assert orjson.loads(request.body) == {
        "operations": ops,
        "options": {"atomic": True} if atomic else {},
    }
