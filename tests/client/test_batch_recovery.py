"""Whole-request errors the SDK settles itself instead of copying onto every operation.

- a 429 for more operations than the key's per-minute budget: never retried; the request
  is split within the budget (later requests are cut within it too), or, atomic, fails;
- a whole-request 4xx that names one operation: that operation fails alone, the others
  are sent again once; a 413 without a name halves the request.

Fake-transport tests pin the exact requests; live tests run the real server (both
backends) through the recording proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from batchops import (
    BatchOverRateLimitError,
    InvalidBatchRequestError,
    RateLimitedError,
    RetryPolicy,
)
from batchops._results import Failure
from batchops.client import AsyncClient
from batchops.client._batch import BatchRunner
from batchops.client._transport import Reply
from batchops.engine import is_overload, is_transient
from batchops.store import Store
from tests.client.conftest import Tenant, all_records
from tests.client.fake_batch_server import Answer, FakeServer
from tests.client.fault_proxy import FaultProxy


def ok(ops: list[dict[str, Any]]) -> Reply:
    results = [{"index": i, "status": 201, "body": op.get("data")} for i, op in enumerate(ops)]
    return Reply(207, orjson.dumps({"results": results}), None, None, False)


def error(status: int, code: str, details: dict[str, Any], retry_after: float | None) -> Reply:
    envelope = {"error": {"code": code, "message": f"{code} test", "details": details}}
    return Reply(status, orjson.dumps(envelope), retry_after, None, False)


def over_budget(limit: int) -> Answer:
    """The server's rate limiter with a budget of ``limit`` operations a minute that is
    never spent: only a request of more operations is refused."""

    def answer(ops: list[dict[str, Any]]) -> Reply:
        if len(ops) > limit:
            details = {"limit": limit, "operations": len(ops)}
            return error(429, "RATE_LIMITED", details, 60.0)
        return ok(ops)

    return answer


def refusing(
    bad: Callable[[dict[str, Any]], bool], details: Callable[[int], dict[str, Any]]
) -> Answer:
    """A 400 for the whole request while it holds an operation ``bad`` says is bad,
    naming it by ``details(position)``."""

    def answer(ops: list[dict[str, Any]]) -> Reply:
        for position, op in enumerate(ops):
            if bad(op):
                return error(400, "INVALID_BATCH_REQUEST", details(position), None)
        return ok(ops)

    return answer


def runner(server: FakeServer, *, max_ops: int = 1000) -> BatchRunner:
    return BatchRunner(
        server,
        max_batch_operations=max_ops,
        max_batch_bytes=1 << 20,
        max_concurrent=1,
        retry=RetryPolicy(attempts=8, initial_backoff=0.001, max_backoff=0.001),
    )


def creates(count: int) -> list[dict[str, Any]]:
    return [{"type": "create", "collection": "c", "data": {"i": i}} for i in range(count)]


# -- a 429 that no wait clears ------------------------------------------------------------


def test_a_429_over_the_whole_budget_is_neither_transient_nor_overload() -> None:
    reply = error(429, "RATE_LIMITED", {"limit": 10, "operations": 12}, 60.0)
    exc = reply.error()
    assert isinstance(exc, BatchOverRateLimitError)
    assert (exc.limit, exc.retry_after) == (10, None)
    assert not is_transient(exc)
    assert not is_overload(exc)


def test_a_429_for_a_spent_budget_stays_a_transient_rate_limit() -> None:
    exc = error(429, "RATE_LIMITED", {"limit": 10, "unit": "operations/minute"}, 7.0).error()
    assert type(exc) is RateLimitedError
    assert is_transient(exc)


async def test_a_request_over_the_budget_is_split_and_later_requests_are_cut_within_it() -> None:
    server = FakeServer(over_budget(10))
    result = await runner(server).execute(creates(30), chunk_size=15)
    assert result.ok
    assert server.sizes == [15, 10, 5, 10, 5]
    assert result.values() == [{"i": i} for i in range(30)]


async def test_an_atomic_request_over_the_budget_fails_at_once_without_a_retry() -> None:
    server = FakeServer(over_budget(10))
    result = await runner(server).execute(creates(12), atomic=True)
    assert server.sizes == [12]
    assert len(result.failures()) == 12
    assert all(isinstance(f.error, BatchOverRateLimitError) for f in result.failures())


async def test_a_single_operation_over_the_budget_fails_at_once() -> None:
    server = FakeServer(over_budget(0))
    result = await runner(server).execute(creates(1))
    assert server.sizes == [1]
    [failure] = result.failures()
    assert isinstance(failure.error, BatchOverRateLimitError)
    assert failure.attempts == 1


# -- a whole-request 4xx that names an operation ------------------------------------------


def is_17(op: dict[str, Any]) -> bool:
    return bool(op["data"]["i"] == 17)


async def test_a_400_naming_details_index_fails_that_operation_and_resends_the_others_once() -> (
    None
):
    server = FakeServer(refusing(is_17, lambda i: {"index": i, "path": f"operations[{i}]"}))
    result = await runner(server).execute(creates(1000))
    assert server.sizes == [1000, 999]
    [failure] = result.failures()
    assert failure.index == 17
    assert isinstance(failure.error, InvalidBatchRequestError)
    assert (failure.error.code, failure.attempts) == ("INVALID_BATCH_REQUEST", 1)
    assert len(result.successes()) == 999


async def test_a_400_naming_only_a_path_fails_that_operation() -> None:
    server = FakeServer(refusing(is_17, lambda i: {"path": f"operations[{i}].ref"}))
    result = await runner(server).execute(creates(40))
    assert server.sizes == [40, 39]
    assert [f.index for f in result.failures()] == [17]


async def test_each_resent_request_has_an_idempotency_key_of_its_own() -> None:
    keys: list[str] = []

    class KeyedServer(FakeServer):
        async def request(
            self,
            method: str,
            path: str,
            *,
            body: bytes | None = None,
            headers: dict[str, str] | None = None,
        ) -> Reply:
            keys.append((headers or {})["Idempotency-Key"])
            return await super().request(method, path, body=body, headers=headers)

    server = KeyedServer(refusing(is_17, lambda i: {"index": i}))
    await runner(server).execute(creates(20))
    assert len(keys) == len(set(keys)) == 2


async def test_with_continue_on_error_false_the_operations_after_the_named_one_are_not_sent() -> (
    None
):
    server = FakeServer(refusing(is_17, lambda i: {"index": i}))
    result = await runner(server).execute(creates(20), continue_on_error=False)
    assert server.sizes == [20, 17]
    assert len(result.successes()) == 17
    assert [(f.index, f.status) for f in result.failures()] == [(17, "failed")] + [
        (i, "skipped") for i in range(18, 20)
    ]


async def test_a_400_naming_no_operation_fails_the_request_once_without_a_retry() -> None:
    server = FakeServer(refusing(is_17, lambda i: {"path": "options.parallel"}))
    result = await runner(server).execute(creates(20))
    assert server.sizes == [20]
    assert len(result.failures()) == 20


async def test_a_413_without_a_name_halves_the_request() -> None:
    def answer(ops: list[dict[str, Any]]) -> Reply:
        if len(ops) > 8:
            return error(413, "PAYLOAD_TOO_LARGE", {}, None)
        return ok(ops)

    server = FakeServer(answer)
    result = await runner(server).execute(creates(20))
    assert result.ok
    assert server.sizes == [20, 10, 5, 5, 10, 5, 5]


# -- live: the real server ------------------------------------------------------------------


@pytest.mark.limits(rate_limit_operations_per_minute=10)
async def test_live_an_atomic_batch_over_the_minute_budget_fails_in_one_request(
    proxy: FaultProxy, tenant_key: Tenant, store: Store
) -> None:
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        result = await client.batch(creates(12), atomic=True)
    assert [len(s.operations()) for s in proxy.batches()] == [12]
    assert all(isinstance(f.error, BatchOverRateLimitError) for f in result.failures())
    assert len(result.failures()) == 12
    assert await all_records(store, tenant_key.name, "c") == []


@pytest.mark.limits(rate_limit_operations_per_minute=10)
async def test_live_a_batch_over_the_minute_budget_is_split_within_it(
    proxy: FaultProxy, tenant_key: Tenant, store: Store
) -> None:
    # One attempt per request: after the first 10 the budget is spent for a minute, and
    # the last 2 get the ordinary (transient) 429, which the test does not wait out.
    async with AsyncClient(proxy.url, tenant_key.key, retry=RetryPolicy(attempts=1)) as client:
        result = await client.collection("c").create_many({"data": {"i": i}} for i in range(12))
    assert [len(s.operations()) for s in proxy.batches()] == [12, 10, 2]
    assert len(result.successes()) == 10
    assert [type(f.error) for f in result.failures()] == [RateLimitedError, RateLimitedError]
    assert len(await all_records(store, tenant_key.name, "c")) == 10


async def test_live_one_malformed_operation_among_1000_fails_alone_in_one_request(
    proxy: FaultProxy, tenant_key: Tenant, store: Store
) -> None:
    ops = creates(1000)
    ops[17] = {"type": "create", "collection": "c", "data": "not an object"}
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        result = await client.batch(ops)
    assert [len(s.operations()) for s in proxy.batches()] == [1000]
    [failure] = result.failures()
    assert failure.index == 17
    assert isinstance(failure, Failure)
    assert 400 <= failure.error.status_code < 500  # type: ignore[attr-defined]
    assert len(await all_records(store, tenant_key.name, "c")) == 999


async def test_live_a_whole_request_400_naming_one_operation_fails_it_alone(
    proxy: FaultProxy, tenant_key: Tenant, store: Store
) -> None:
    # A name the server refuses ("bad name": whitespace) is a whole-request 400 naming
    # operation 17: the server cannot plan the batch around it.
    ops = creates(1000)
    ops[17] = {"ref": "bad name", "type": "create", "collection": "c", "data": {"i": 17}}
    async with AsyncClient(proxy.url, tenant_key.key) as client:
        result = await client.batch(ops)
    assert [len(s.operations()) for s in proxy.batches()] == [1000, 999]
    [failure] = result.failures()
    assert failure.index == 17
    assert isinstance(failure.error, InvalidBatchRequestError)
    assert failure.error.code == "INVALID_BATCH_REQUEST"
    assert failure.error.details["index"] == 17
    rows = await all_records(store, tenant_key.name, "c")
    assert len(rows) == 999
    assert 17 not in {row.data["i"] for row in rows}


async def test_live_a_bulk_helper_with_target_ms_adapts_its_requests_end_to_end(
    proxy: FaultProxy, tenant_key: Tenant, store: Store
) -> None:
    # A target no request misses: sizes grow by a twentieth of the cap (200) from a tenth.
    async with AsyncClient(proxy.url, tenant_key.key, max_concurrent=1) as client:
        result = await client.collection("c").create_many(
            ({"data": {"i": i}} for i in range(300)), chunk_size=200, target_ms=60_000
        )
    assert result.ok
    assert [len(s.operations()) for s in proxy.batches()] == [20, 30, 40, 50, 60, 70, 30]
    assert len(await all_records(store, tenant_key.name, "c")) == 300


async def test_a_resumable_run_splits_the_refused_request_but_keeps_later_cuts() -> None:
    server = FakeServer(over_budget(10))
    results = [
        r async for r in runner(server).stream(creates(30), chunk_size=15, idempotency_prefix="p")
    ]
    assert all(r.is_success for r in results)
    # Each request of 15 is split the same way; the second is still cut at 15, as a rerun
    # with the same prefix must cut it.
    assert server.sizes == [15, 10, 5, 15, 10, 5]
