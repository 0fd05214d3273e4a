"""POST /v1/batch: the wire contract of docs/batch.md, on both backends."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx
import orjson
import pytest

from batchops._exceptions import (
    StoreError,
    StoreInputError,
    StoreTimeoutError,
    TransientStoreError,
)
from batchops.server.batch import executor
from batchops.server.batch import service as batch_service
from batchops.store.postgres import PostgresTx
from batchops.store.sqlite import SQLiteTx
from tests.server.conftest import Service
from tests.server.test_records_api import PEOPLE, error_of


def create(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"type": "create", "collection": "people", "id": f"p{i}", "data": {"i": i}, **extra}


async def batch(service: Service, operations_: list[dict[str, Any]], **options: Any) -> Any:
    body: dict[str, Any] = {"operations": operations_}
    if options:
        body["options"] = options
    return await service.client.post("/v1/batch", json=body)


async def stored_ids(service: Service) -> list[str]:
    rows = await service.store.run(
        lambda tx: tx.list_records(
            service.tenant, "people", filters={}, after_id=None, limit=10_000
        )
    )
    return [r.id for r in rows]


async def test_both_dialects_run_in_one_request_with_results_in_input_order(
    service: Service,
) -> None:
    response = await batch(
        service,
        [
            {"id": "a", "method": "POST", "path": PEOPLE, "body": {"data": {"name": "Ada"}}},
            {"type": "create", "collection": "people", "id": "g", "data": {"name": "Grace"}},
            {"id": "r", "method": "GET", "path": f"{PEOPLE}/g"},
            {"type": "search", "collection": "people", "query": "grace"},
        ],
    )
    assert response.status_code == 200
    body = response.json()
    assert body["committed"] is True
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert [r["status"] for r in body["results"]] == [201, 201, 200, 200]
    assert [r["type"] for r in body["results"]] == ["create", "create", "read", "search"]
    assert body["results"][0]["id"] == "a"
    assert body["results"][2]["body"]["data"] == {"name": "Grace"}
    assert body["results"][3]["body"]["total"] == 1
    assert body["meta"]["total"] == 4
    assert body["meta"]["succeeded"] == 4
    assert body["meta"]["by_type"] == {
        "create": {"total": 2, "succeeded": 2, "failed": 0, "skipped": 0},
        "read": {"total": 1, "succeeded": 1, "failed": 0, "skipped": 0},
        "search": {"total": 1, "succeeded": 1, "failed": 0, "skipped": 0},
    }


async def test_meta_by_type_counts_how_the_operations_of_each_type_ended(
    service: Service,
) -> None:
    response = await batch(
        service,
        [
            {"ref": "a", "type": "create", "collection": "people", "id": "a", "data": {}},
            {"type": "create", "collection": "people", "id": "a", "data": {}},  # 409
            {"type": "read", "collection": "people", "id": "missing", "ref": "r"},  # 404
            {"type": "read", "collection": "people", "id": "a"},
            {"type": "update", "collection": "people", "id": "a", "data": {}, "depends_on": ["r"]},
        ],
    )
    assert response.status_code == 207
    meta = response.json()["meta"]
    assert meta["by_type"] == {
        "create": {"total": 2, "succeeded": 1, "failed": 1, "skipped": 0},
        "read": {"total": 2, "succeeded": 1, "failed": 1, "skipped": 0},
        "update": {"total": 1, "succeeded": 0, "failed": 0, "skipped": 1},
    }
    assert (meta["succeeded"], meta["failed"], meta["skipped"]) == (2, 2, 1)


async def test_a_reference_feeds_an_earlier_result_into_a_later_path_and_body(
    service: Service,
) -> None:
    response = await batch(
        service,
        [
            {"id": "a", "method": "POST", "path": PEOPLE, "body": {"data": {"name": "Ada"}}},
            {
                "id": "b",
                "method": "PATCH",
                "path": PEOPLE + "/${a.body.id}",
                "body": {"data": {"self": "${a.body.id}", "v": "${a.body.version}"}},
            },
        ],
    )
    results = response.json()["results"]
    created_id = results[0]["body"]["id"]
    assert results[1]["status"] == 200
    assert results[1]["body"]["id"] == created_id
    assert results[1]["body"]["data"] == {"name": "Ada", "self": created_id, "v": 1}


async def test_a_dependent_of_a_failed_operation_is_not_run_and_gets_424(
    service: Service,
) -> None:
    response = await batch(
        service,
        [
            {"id": "a", "method": "GET", "path": f"{PEOPLE}/missing"},
            {
                "id": "b",
                "method": "POST",
                "path": PEOPLE,
                "body": {"data": {}},
                "depends_on": ["a"],
            },
            create(1),
        ],
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [404, 424, 201]
    assert results[1]["error"]["code"] == "FAILED_DEPENDENCY"
    assert response.json()["meta"]["skipped"] == 1
    assert await stored_ids(service) == ["p1"]


async def test_partial_failure_answers_207_and_commits_the_successes(service: Service) -> None:
    await batch(service, [create(1)])
    response = await batch(service, [create(0), create(1), create(2)])
    assert response.status_code == 207
    body = response.json()
    assert [r["status"] for r in body["results"]] == [201, 409, 201]
    assert body["meta"] == {**body["meta"], "succeeded": 2, "failed": 1, "skipped": 0}
    assert await stored_ids(service) == ["p0", "p1", "p2"]


async def test_an_atomic_batch_that_fails_commits_nothing(service: Service) -> None:
    await batch(service, [create(1)])
    response = await batch(service, [create(0), create(1), create(2)], atomic=True)
    assert response.status_code == 409
    body = response.json()
    assert body["committed"] is False
    assert [r["status"] for r in body["results"]] == [424, 409, 424]
    assert body["results"][0]["error"]["code"] == "ROLLED_BACK"
    assert await stored_ids(service) == ["p1"]


async def test_an_atomic_batch_that_succeeds_commits_everything(service: Service) -> None:
    response = await batch(service, [create(0), create(1)], atomic=True)
    assert response.status_code == 200
    assert response.json()["committed"] is True
    assert await stored_ids(service) == ["p0", "p1"]


async def test_an_atomicity_group_is_all_or_nothing_and_the_rest_independent(
    service: Service,
) -> None:
    await batch(service, [create("dup")])
    response = await batch(
        service,
        [
            create(1, atomicity_group="g"),
            create(2),
            create("dup", atomicity_group="g"),
            create(3, atomicity_group="h"),
        ],
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [424, 201, 409, 201]
    assert results[0]["error"]["code"] == "ROLLED_BACK"
    assert await stored_ids(service) == ["p2", "p3", "pdup"]


async def test_continue_on_error_false_stops_at_the_first_failure(service: Service) -> None:
    response = await batch(
        service,
        [create(0), {"type": "read", "collection": "people", "id": "nope"}, create(2)],
        continue_on_error=False,
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 404, 424]
    assert results[2]["error"]["code"] == "SKIPPED"
    assert response.json()["meta"]["skipped"] == 1
    assert await stored_ids(service) == ["p0"]


async def test_suppress_success_returns_only_failures_with_complete_meta(
    service: Service,
) -> None:
    response = await batch(
        service,
        [create(0), {"type": "read", "collection": "people", "id": "nope"}, create(2)],
        suppress_success=True,
    )
    body = response.json()
    assert [r["index"] for r in body["results"]] == [1]
    assert body["meta"]["total"] == 3
    assert body["meta"]["succeeded"] == 2


async def test_validate_only_runs_nothing_and_reports_each_operation(service: Service) -> None:
    response = await batch(
        service,
        [create(0), {"type": "create", "collection": "people", "data": [1]}],
        validate_only=True,
    )
    body = response.json()
    assert body["committed"] is False
    assert [r["status"] for r in body["results"]] == [200, 422]
    assert body["results"][0]["body"]["would_run"] is True
    assert "cost" in body["meta"]
    assert await stored_ids(service) == []


async def test_consecutive_creates_become_one_multi_row_insert(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    for tx_class in (SQLiteTx, PostgresTx):
        real = tx_class.insert_encoded

        def spy(
            self: Any, tenant: str, collection: str, ids: Any, *a: Any, real: Any = real, **kw: Any
        ) -> Any:
            calls.append(len(ids))
            return real(self, tenant, collection, ids, *a, **kw)

        monkeypatch.setattr(tx_class, "insert_encoded", spy)
    ops = [create(i) for i in range(5)]
    ops.append({"type": "read", "collection": "people", "id": "p0"})
    ops.extend(create(i) for i in range(5, 8))
    response = await batch(service, ops)
    assert response.status_code == 200
    assert calls == [5, 3]


async def test_a_malformed_operation_fails_alone_with_the_json_path_of_the_fault(
    service: Service,
) -> None:
    typo = {**create(1), "colour": "red"}
    response = await batch(service, [create(0), typo, create(2), {"method": 5, "path": PEOPLE}])
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 201, 400]
    assert results[1]["error"]["details"]["path"] == "operations[1].colour"
    assert results[3]["error"]["details"]["path"] == "operations[3].method"
    assert await stored_ids(service) == ["p0", "p2"]


async def test_a_malformed_operation_rejects_an_atomic_batch_whole(service: Service) -> None:
    typo = {**create(1), "colour": "red"}
    response = await batch(service, [create(0), typo], atomic=True)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "INVALID_BATCH_REQUEST"
    assert error["details"]["path"] == "operations[1].colour"
    assert await stored_ids(service) == []


@pytest.mark.parametrize("accept", ["application/json", "application/x-ndjson"])
async def test_an_operation_holding_text_that_is_not_utf8_fails_alone_with_a_400(
    service: Service, accept: str
) -> None:
    # Found by tests/fuzz: this answered 500 (msgspec.DecodeError escaped the planner).
    raw = (
        b'{"operations": [' + orjson.dumps(create(0)) + b","
        b'{"type": "create", "collection": "people", "data": {"name": "\xff"}}]}'
    )
    response = await service.client.post(
        "/v1/batch", content=raw, headers={"Content-Type": "application/json", "Accept": accept}
    )
    assert response.status_code in (200, 207), response.text
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    results = lines[:-1] if accept == "application/x-ndjson" else lines[0]["results"]
    assert [r["status"] for r in results] == [201, 400]
    assert results[1]["error"]["details"]["path"] == "operations[1]"
    assert await stored_ids(service) == ["p0"]


async def test_an_operation_depending_on_a_malformed_one_is_a_424(service: Service) -> None:
    typo = {**create(1), "ref": "one", "colour": "red"}
    dependent = {"type": "read", "collection": "people", "id": "p1", "depends_on": ["one"]}
    response = await batch(service, [create(0), typo, dependent])
    assert [r["status"] for r in response.json()["results"]] == [201, 400, 424]


@pytest.mark.parametrize("mode", ["ndjson", "async"])
async def test_a_malformed_operation_fails_alone_in_a_stream_and_in_an_async_batch(
    service: Service, mode: str
) -> None:
    ops = [create(0), {**create(1), "colour": "red"}, create(2)]
    headers = (
        {"Accept": "application/x-ndjson"} if mode == "ndjson" else {"Prefer": "respond-async"}
    )
    response = await service.client.post("/v1/batch", json={"operations": ops}, headers=headers)
    if mode == "ndjson":
        results = [orjson.loads(line) for line in response.text.splitlines()][:-1]
    else:
        assert response.status_code == 202
        job_id = response.json()["id"]
        for _ in range(200):
            job = (await service.client.get(f"/v1/jobs/{job_id}")).json()
            if job["state"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.02)
        results = (await service.client.get(f"/v1/jobs/{job_id}/results")).json()["results"]
    assert [r["status"] for r in results] == [201, 400, 201]
    assert results[1]["error"]["details"]["path"] == "operations[1].colour"
    assert await stored_ids(service) == ["p0", "p2"]


async def test_a_body_that_is_not_a_batch_is_still_a_whole_batch_400(service: Service) -> None:
    response = await service.client.post("/v1/batch", json={"operatons": [create(0)]})
    assert response.status_code == 400
    assert error_of(response)["code"] == "INVALID_BATCH_REQUEST"


async def test_a_reference_to_a_later_operation_is_a_400_naming_it(service: Service) -> None:
    response = await batch(
        service,
        [
            {"type": "read", "collection": "people", "id": "${later.body.id}"},
            {"ref": "later", "type": "create", "collection": "people", "data": {}},
        ],
    )
    assert response.status_code == 400
    assert "later" in error_of(response)["message"]


async def test_too_many_operations_is_a_413_batch_too_large(service: Service) -> None:
    limit = service.settings.max_batch_operations
    response = await batch(service, [create(i) for i in range(limit + 1)])
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "BATCH_TOO_LARGE"
    assert error["details"]["limit"] == limit


async def test_a_body_over_the_byte_limit_is_a_413_batch_too_large(service: Service) -> None:
    big = "x" * (service.settings.max_batch_bytes + 10)
    response = await service.client.post(
        "/v1/batch",
        content=orjson.dumps({"operations": [create(0, data={"blob": big})]}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "BATCH_TOO_LARGE"


async def test_a_nested_batch_path_is_rejected(service: Service) -> None:
    response = await batch(service, [{"method": "POST", "path": "/v1/batch", "body": {}}])
    assert response.status_code == 400
    assert error_of(response)["code"] == "INVALID_BATCH_REQUEST"


async def test_a_path_outside_collections_fails_only_that_operation(service: Service) -> None:
    response = await batch(service, [{"method": "GET", "path": "/v1/admin/users"}, create(1)])
    assert response.status_code == 207
    assert [r["status"] for r in response.json()["results"]] == [400, 201]


async def test_the_batch_id_is_echoed_or_generated(service: Service) -> None:
    given = await service.client.post(
        "/v1/batch", json={"operations": [create(0)]}, headers={"X-Batch-Id": "mine-1"}
    )
    assert given.headers["X-Batch-Id"] == "mine-1"
    assert given.json()["batch_id"] == "mine-1"
    generated = await batch(service, [create(1)])
    assert generated.headers["X-Batch-Id"] == generated.json()["batch_id"] != "mine-1"


async def test_a_gzip_body_is_accepted(service: Service) -> None:
    response = await service.client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps({"operations": [create(0)]})),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert await stored_ids(service) == ["p0"]


async def test_a_non_json_content_type_is_a_415(service: Service) -> None:
    response = await service.client.post(
        "/v1/batch", content=b"operations", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


async def test_an_idempotent_retry_replays_the_stored_response_and_runs_nothing(
    service: Service,
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    body = {"operations": [{"type": "create", "collection": "people", "data": {"n": 1}}]}
    first = await service.client.post("/v1/batch", json=body, headers=headers)
    again = await service.client.post("/v1/batch", json=body, headers=headers)
    assert again.status_code == first.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(await stored_ids(service)) == 1


async def test_an_idempotency_key_reused_with_another_body_is_a_422(service: Service) -> None:
    headers = {"Idempotency-Key": "k-2"}
    await service.client.post("/v1/batch", json={"operations": [create(0)]}, headers=headers)
    other = await service.client.post(
        "/v1/batch", json={"operations": [create(1)]}, headers=headers
    )
    assert other.status_code == 422
    assert error_of(other)["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await stored_ids(service) == ["p0"]


async def test_an_idempotency_key_in_flight_is_a_409(service: Service) -> None:
    body = orjson.dumps({"operations": [create(0)]})
    import hashlib
    import time

    fingerprint = hashlib.sha256(body).hexdigest()
    await service.store.run(
        lambda tx: tx.idempotency_claim(
            service.tenant, "k-3", fingerprint, now=time.time(), stale_after_s=300
        )
    )
    response = await service.client.post(
        "/v1/batch",
        content=body,
        headers={"Idempotency-Key": "k-3", "Content-Type": "application/json"},
    )
    assert response.status_code == 409
    assert error_of(response)["code"] == "IDEMPOTENCY_IN_FLIGHT"
    assert await stored_ids(service) == []


async def test_a_failed_atomic_batch_is_replayed_too(service: Service) -> None:
    await batch(service, [create(1)])
    headers = {"Idempotency-Key": "k-4"}
    body = {"operations": [create(0), create(1)], "options": {"atomic": True}}
    first = await service.client.post("/v1/batch", json=body, headers=headers)
    again = await service.client.post("/v1/batch", json=body, headers=headers)
    assert first.status_code == again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_ndjson_streams_one_line_per_operation_then_meta(service: Service) -> None:
    ops = [create(i) for i in range(120)]
    ops.append({"type": "read", "collection": "people", "id": "nope"})
    response = await service.client.post(
        "/v1/batch", json={"operations": ops}, headers={"Accept": "application/x-ndjson"}
    )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    assert [line["index"] for line in lines[:-1]] == list(range(121))
    assert lines[-1]["meta"]["succeeded"] == 120
    assert lines[-1]["meta"]["failed"] == 1
    assert lines[-1]["status"] == 207
    assert len(await stored_ids(service)) == 120


class SteppingClock:
    """A monotonic clock that moves 10 ms every time it is read."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 0.010
        return self.now

    def perf_counter(self) -> float:
        return self.now


async def test_operations_not_started_by_timeout_ms_answer_504_and_write_nothing(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "time", SteppingClock())
    # Alternating kinds so every operation is its own unit with a deadline check before it.
    ops: list[dict[str, Any]] = []
    for i in range(6):
        ops.append(create(i))
        ops.append({"type": "read", "collection": "people", "id": f"p{i}"})
    response = await batch(service, ops, timeout_ms=45)
    results = response.json()["results"]
    statuses = [r["status"] for r in results]
    assert response.status_code == 207
    first_timeout = statuses.index(504)
    assert 0 < first_timeout < len(ops)
    assert set(statuses[first_timeout:]) == {504}
    assert {r["error"]["code"] for r in results[first_timeout:]} == {"TIMEOUT"}
    created_before = {f"p{i}" for i in range(6) if 2 * i < first_timeout}
    assert set(await stored_ids(service)) == created_before
    assert response.json()["meta"]["skipped"] == len(ops) - first_timeout


async def test_counts_sent_as_whole_floats_are_those_integers(service: Service) -> None:
    # Found by schemathesis (tests/contract): JSON has one number type and the OpenAPI
    # document calls these integers, so 2.0 is 2; each was a 400 or a per-operation 400.
    await batch(service, [create(1)])
    ops: list[dict[str, Any]] = [
        {"type": "update", "collection": "people", "id": "p1", "data": {"x": 1}, "if_match": 1.0},
        {"type": "list", "collection": "people", "options": {"limit": 5.0}},
        {
            "method": "POST",
            "path": "/v1/collections/people/search",
            "body": {"query": "x", "limit": 3.0},
        },
    ]
    response = await batch(service, ops, parallel=2.0, max_retries=1.0, timeout_ms=30000.0)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == [200, 200, 200]
    fractional = await batch(service, [create(2)], parallel=1.5)
    assert fractional.status_code == 400
    assert fractional.json()["error"]["details"]["path"] == "options.parallel"
    bad_version = await batch(
        service, [{"type": "delete", "collection": "people", "id": "p1", "if_match": 2.5}]
    )
    assert bad_version.json()["results"][0]["status"] == 400


async def test_an_idempotent_batch_past_its_timeout_still_stores_and_replays_its_answer(
    service: Service,
) -> None:
    # Found by schemathesis (tests/contract): the batch's timeout_ms also bounded the
    # statement storing the Idempotency-Key's answer after the operations, so a batch whose
    # deadline had passed failed whole (a 504 envelope on PostgreSQL, a 500 on SQLite)
    # instead of answering the operations it timed out.
    body = {"operations": [create(i) for i in range(1000)], "options": {"timeout_ms": 1}}
    headers = {"Idempotency-Key": "past-its-deadline"}
    first = await service.client.post("/v1/batch", json=body, headers=headers)
    assert first.status_code in (200, 207), first.text
    assert {r["status"] for r in first.json()["results"]} <= {201, 504}
    again = await service.client.post("/v1/batch", json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.status_code == first.status_code
    assert again.json() == first.json()


async def test_an_atomic_batch_past_its_timeout_rolls_back_whole(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "time", SteppingClock())
    ops: list[dict[str, Any]] = []
    for i in range(4):
        ops.append(create(i))
        ops.append({"type": "read", "collection": "people", "id": f"p{i}"})
    response = await batch(service, ops, timeout_ms=45, atomic=True)
    assert response.status_code == 504
    assert response.json()["committed"] is False
    assert await stored_ids(service) == []


def failing(fail_times: int, error: Exception, real: Any = None) -> Any:
    """A stand-in that raises ``error`` ``fail_times`` times, then calls ``real``."""
    calls = {"n": 0}

    def run(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= fail_times:
            raise error
        return real(*args, **kwargs)

    return run


# A batch of plain creates is planned and written as runs (executor.write_runs); an empty
# depends_on on each operation has the same creates planned and run one by one. Store
# failures must look the same on both.
BOTH_PATHS = pytest.mark.parametrize("path", ["runs", "one by one"])


def break_store(
    monkeypatch: pytest.MonkeyPatch, path: str, fail_times: int, error: Exception
) -> None:
    """Make the batch's database work fail ``fail_times`` times on ``path``."""
    module, name = (executor, "write_runs") if path == "runs" else (batch_service, "run_plan")
    real = getattr(module, name)
    monkeypatch.setattr(module, name, failing(fail_times, error, real))


def creates_on(path: str, *numbers: int) -> list[dict[str, Any]]:
    if path == "runs":
        return [create(i) for i in numbers]
    return [create(i, depends_on=[]) for i in numbers]


@BOTH_PATHS
async def test_max_retries_reruns_the_batch_after_a_busy_database(
    service: Service, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    break_store(monkeypatch, path, 2, TransientStoreError("database is locked"))
    response = await batch(service, creates_on(path, 0, 1), max_retries=2)
    assert response.status_code == 200
    assert await stored_ids(service) == ["p0", "p1"]


@BOTH_PATHS
async def test_a_busy_database_past_max_retries_is_a_503_with_retry_after(
    service: Service, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    break_store(monkeypatch, path, 2, TransientStoreError("database is locked"))
    response = await batch(service, creates_on(path, 0), max_retries=1)
    assert response.status_code == 503
    assert error_of(response)["code"] == "STORE_BUSY"
    assert response.headers["Retry-After"] == "1"
    assert await stored_ids(service) == []


@BOTH_PATHS
@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        # Not transient: a 503 (which clients retry) would send the same request again.
        (StoreError("disk I/O error"), 500, "STORE_ERROR"),
        (StoreInputError("bigint out of range"), 422, "INVALID_VALUE"),
        (StoreTimeoutError("canceling statement"), 504, "TIMEOUT"),
    ],
    ids=["broken", "refused value", "statement timeout"],
)
async def test_a_database_error_that_retrying_cannot_mend_invites_no_retry(
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    error: Exception,
    status: int,
    code: str,
) -> None:
    break_store(monkeypatch, path, 1, error)
    response = await batch(service, creates_on(path, 1))
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert "Retry-After" not in response.headers


@BOTH_PATHS
async def test_an_unexpected_error_in_a_batch_is_a_500_envelope(
    service: Service, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    break_store(monkeypatch, path, 1, RuntimeError("a bug"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app, raise_app_exceptions=False),
        base_url="http://test",
        headers={"Authorization": f"Bearer {service.key}"},
    ) as client:
        response = await client.post("/v1/batch", json={"operations": creates_on(path, 1)})
    assert response.status_code == 500
    assert error_of(response) == {
        "code": "INTERNAL_ERROR",
        "message": "internal server error",
        "details": {},
    }


async def test_another_method_on_the_batch_path_is_a_405_envelope(service: Service) -> None:
    response = await service.client.get("/v1/batch")
    assert response.status_code == 405
    assert error_of(response)["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    "op",
    [
        {"type": "create", "collection": "people", "id": None, "data": {}},
        {"method": "POST", "path": PEOPLE, "body": {"id": None, "data": {}}},
    ],
    ids=["typed", "rest"],
)
async def test_a_create_with_an_explicit_null_id_is_refused_not_given_a_new_id(
    service: Service, op: dict[str, Any]
) -> None:
    response = await batch(service, [op, create(1)])
    results = response.json()["results"]
    assert [r["status"] for r in results] == [400, 201]
    assert results[0]["error"]["details"]["path"].endswith("id")
    assert await stored_ids(service) == ["p1"]


async def test_a_failed_atomicity_group_names_the_records_that_were_committed(
    service: Service,
) -> None:
    # The group fails on its first attempt and the batch is replayed without it: the
    # failing operation's error (kept from that attempt) must name the record the replay
    # committed, not one the rolled-back attempt generated.
    ops: list[dict[str, Any]] = [
        {"ref": "a", "type": "create", "collection": "people", "data": {"n": 1}},
        {
            "ref": "b",
            "type": "update",
            "collection": "people",
            "id": "${a.body.id}",
            "data": {"n": 2},
            "if_match": 9,
            "atomicity_group": "g",
        },
        {"type": "create", "collection": "people", "data": {"n": 3}, "atomicity_group": "g"},
    ]
    response = await batch(service, ops)
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 409, 424]
    created_id = results[0]["body"]["id"]
    assert results[1]["error"]["details"]["id"] == created_id
    assert await stored_ids(service) == [created_id]


@pytest.mark.parametrize("mode", ["json", "ndjson"])
@pytest.mark.parametrize("timeout_ms", [1, 2, 3, 5])
async def test_a_batch_cut_short_by_its_timeout_answers_what_it_committed_and_never_a_5xx(
    service: Service, timeout_ms: int, mode: str
) -> None:
    # A statement cancelled at the batch's deadline (on SQLite an interrupted write takes
    # the whole transaction with it) makes its operations answer 504 TIMEOUT, whatever the
    # timing; the batch itself is a 200/207, and what it says was created is what is stored.
    ops = [{**create(i), "depends_on": []} for i in range(1000)]  # the general path
    headers = {"Accept": "application/x-ndjson"} if mode == "ndjson" else {}
    response = await service.client.post(
        "/v1/batch",
        json={"operations": ops, "options": {"timeout_ms": timeout_ms}},
        headers=headers,
    )
    assert response.status_code in (200, 207), response.text
    if mode == "ndjson":
        results = [orjson.loads(line) for line in response.text.splitlines()][:-1]
    else:
        results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(1000))
    assert {r["status"] for r in results} <= {201, 504}
    stored = set(await stored_ids(service))
    assert stored == {r["body"]["id"] for r in results if r["status"] == 201}
