"""``options.parallel``: independent reads of a batch run at once, on both backends.

The rule (docs/batch.md, "parallel"): with ``parallel`` > 1, the reads, lists and
searches that depend on no earlier operation (no ``depends_on``, no ``${…}`` reference)
run before the batch's writes, at most ``parallel`` at once — on other connections, each
in a read-only transaction of its own, and on the batch's own connection. They read the
committed data as it was before the batch's writes; a read that depends on a write runs in
the batch's transaction, in order, and sees it. Results stay in input order, and a batch
without writes before its reads answers exactly as with ``parallel: 1``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from batchops.server.records import service as records_service
from tests.server.conftest import Service
from tests.server.test_batch_api import batch

WORDS = ["apple", "banana", "cherry", "damson"]


async def seed(service: Service, n: int = 12) -> None:
    ops: list[dict[str, Any]] = [
        {
            "type": "create",
            "collection": "people",
            "id": f"p{i:02d}",
            "data": {"name": f"{WORDS[i % 4]} person {i}", "team": "ab"[i % 2]},
        }
        for i in range(n)
    ]
    assert (await batch(service, ops)).status_code == 200
    # A search catches SQLite's deferred full-text index up (and commits it), so that a
    # search on a read connection finds every row indexed.
    await batch(service, [{"type": "search", "collection": "people", "query": "person"}])


class ConcurrencySpy:
    """Wraps a records-service function: counts the calls running at once (each holds a
    database connection while it runs) and makes each last ``hold_s``."""

    def __init__(self, hold_s: float = 0.05) -> None:
        self.hold_s = hold_s
        self.running = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.running += 1
                self.calls += 1
                self.peak = max(self.peak, self.running)
            try:
                time.sleep(self.hold_s)
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.running -= 1

        return spied


def searches(n: int) -> list[dict[str, Any]]:
    return [{"type": "search", "collection": "people", "query": WORDS[i % 4]} for i in range(n)]


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A batch answer without what differs between two runs of it."""
    meta = {k: v for k, v in body["meta"].items() if k != "duration_ms"}
    return {"committed": body["committed"], "results": body["results"], "meta": meta}


MIXED_READS: list[dict[str, Any]] = [
    {"type": "search", "collection": "people", "query": "apple"},
    {"type": "read", "collection": "people", "id": "p01"},
    {"type": "read", "collection": "people", "id": "p02"},
    {"type": "read", "collection": "people", "id": "missing"},
    {"id": "g", "method": "GET", "path": "/v1/collections/people/records/p03"},
    {"type": "list", "collection": "people", "options": {"limit": 3}},
    {"type": "search", "collection": "people", "query": "banana", "options": {"limit": 1}},
    {"type": "search", "collection": "people", "query": "cherry", "options": {"limit": -1}},
    {"type": "list", "collection": "people", "options": {"filters": {"team": "b"}}},
    {"type": "read", "collection": "bad name!", "id": "p01"},
    {
        "id": "s",
        "method": "POST",
        "path": "/v1/collections/people/search",
        "body": {"query": "damson person", "filters": {"team": "b"}},
    },
    {"type": "read", "collection": "people", "id": "p05", "options": {"include_deleted": True}},
]


async def test_parallel_reads_answer_in_input_order(service: Service) -> None:
    await seed(service)

    response = await batch(service, MIXED_READS, parallel=4)

    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(MIXED_READS)))
    assert [r["status"] for r in results] == [
        200,
        200,
        200,
        404,
        200,
        200,
        200,
        422,
        200,
        422,
        200,
        200,
    ]
    assert results[1]["body"]["id"] == "p01"
    assert results[4]["body"]["id"] == "p03"
    assert results[11]["body"]["id"] == "p05"


async def test_a_batch_of_reads_answers_alike_with_parallel_4_and_parallel_1(
    service: Service,
) -> None:
    await seed(service)

    one = await batch(service, MIXED_READS, parallel=1)
    four = await batch(service, MIXED_READS, parallel=4)

    assert four.status_code == one.status_code == 207
    assert comparable(four.json()) == comparable(one.json())


async def test_a_batch_that_stops_at_a_failed_read_answers_alike_with_parallel_4_and_1(
    service: Service,
) -> None:
    await seed(service)
    ops: list[dict[str, Any]] = [
        *searches(3),
        {"type": "read", "collection": "people", "id": "missing"},
        *searches(4),
    ]

    one = await batch(service, ops, parallel=1, continue_on_error=False)
    four = await batch(service, ops, parallel=4, continue_on_error=False)

    assert [r["status"] for r in four.json()["results"]] == [200, 200, 200, 404] + [424] * 4
    assert comparable(four.json()) == comparable(one.json())


@pytest.mark.parametrize("parallel", [2, 3])
async def test_independent_searches_run_exactly_parallel_at_once(
    service: Service, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    await seed(service)
    spy = ConcurrencySpy()
    monkeypatch.setattr(records_service, "search", spy.wrap(records_service.search))

    response = await batch(service, searches(12), parallel=parallel)

    assert response.status_code == 200
    assert spy.calls == 12
    assert spy.peak == parallel


async def test_with_parallel_1_the_searches_run_one_at_a_time(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(service)
    spy = ConcurrencySpy(hold_s=0.01)
    monkeypatch.setattr(records_service, "search", spy.wrap(records_service.search))

    response = await batch(service, searches(6))

    assert response.status_code == 200
    assert spy.peak == 1


async def test_a_read_that_depends_on_an_earlier_create_sees_it(service: Service) -> None:
    await seed(service)
    ops: list[dict[str, Any]] = [
        {"ref": "new", "type": "create", "collection": "people", "data": {"name": "zelda"}},
        {"type": "read", "collection": "people", "id": "${new.body.id}"},
        {"type": "search", "collection": "people", "query": "zelda", "depends_on": ["new"]},
        {
            "type": "list",
            "collection": "people",
            "options": {"filters": {"name": "zelda"}},
            "depends_on": ["new"],
        },
    ]

    response = await batch(service, ops, parallel=4)

    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 200, 200, 200]
    assert results[1]["body"]["data"] == {"name": "zelda"}
    assert results[2]["body"]["total"] == 1
    assert [r["data"] for r in results[3]["body"]["records"]] == [{"name": "zelda"}]


async def test_an_independent_read_after_a_write_reads_the_data_as_before_the_batch(
    service: Service,
) -> None:
    await seed(service)
    ops: list[dict[str, Any]] = [
        {"type": "create", "collection": "people", "id": "z1", "data": {"name": "zelda"}},
        {"type": "update", "collection": "people", "id": "p01", "data": {"team": "z"}},
        {"type": "read", "collection": "people", "id": "z1"},
        {"type": "read", "collection": "people", "id": "p01"},
        {"type": "search", "collection": "people", "query": "zelda"},
        {"type": "list", "collection": "people", "options": {"filters": {"team": "z"}}},
    ]

    response = await batch(service, ops, parallel=4)

    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 200, 404, 200, 200, 200]
    assert results[3]["body"]["data"]["team"] == "b"
    assert results[4]["body"]["total"] == 0
    assert results[5]["body"]["records"] == []
    # ... and the writes themselves committed.
    after = await batch(service, ops[2:], parallel=4)
    assert [r["status"] for r in after.json()["results"]] == [200, 200, 200, 200]


async def test_with_parallel_1_a_read_after_a_write_still_sees_it(service: Service) -> None:
    await seed(service)
    ops: list[dict[str, Any]] = [
        {"type": "create", "collection": "people", "id": "z1", "data": {"name": "zelda"}},
        {"type": "read", "collection": "people", "id": "z1"},
    ]

    response = await batch(service, ops, parallel=1)

    assert [r["status"] for r in response.json()["results"]] == [201, 200]


async def test_an_atomic_batch_fails_at_its_first_failed_read_in_input_order(
    service: Service,
) -> None:
    await seed(service)
    ops: list[dict[str, Any]] = [
        {"type": "create", "collection": "people", "id": "z1", "data": {"name": "zelda"}},
        *searches(3),
        {"type": "read", "collection": "people", "id": "missing-1"},
        {
            "type": "read",
            "collection": "people",
            "id": "missing-2",
            "options": {"include_deleted": True},
        },
    ]

    one = await batch(service, ops, parallel=1, atomic=True, continue_on_error=False)
    four = await batch(service, ops, parallel=4, atomic=True, continue_on_error=False)

    assert four.status_code == 404
    assert four.json()["results"][4]["status"] == 404
    assert comparable(four.json()) == comparable(one.json())
    rolled_back = await batch(service, [ops[4] | {"id": "z1"}])
    assert rolled_back.json()["results"][0]["status"] == 404


async def test_operations_not_started_by_the_deadline_answer_timeout_reads_first(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(service)
    spy = ConcurrencySpy(hold_s=0.2)
    monkeypatch.setattr(records_service, "search", spy.wrap(records_service.search))
    ops: list[dict[str, Any]] = [
        {"type": "create", "collection": "people", "id": "z1", "data": {"name": "zelda"}},
        *searches(8),
    ]

    response = await batch(service, ops, parallel=2, timeout_ms=300)

    statuses = [r["status"] for r in response.json()["results"]]
    # The independent reads run first, two at a time: the first two finish, the last
    # ones never start, and neither does the create after them.
    assert statuses[0] == 504
    assert statuses[1:3] == [200, 200]
    assert statuses[-1] == 504
    assert spy.calls < 8
