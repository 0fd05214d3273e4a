"""Runs of plain creates in POST /v1/batch (BatchPlan.runs, executor.write_runs): a batch
of plain creates, written one multi-row insert per run and answered from the stored texts,
gets the same bytes as when each operation is planned and run on its own, and anything
the runs cannot answer exactly is run operation by operation with nothing of the first
try left."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import httpx
import orjson
import pytest

from batchops.server import _ids
from batchops.server.batch import endpoint, executor, planner, wire
from batchops.server.records import service as records_service
from tests.server.conftest import Service
from tests.server.test_batch_api import stored_ids

PEOPLE = "people"


def create(data: Any, collection: str = PEOPLE, **extra: Any) -> dict[str, Any]:
    return {"type": "create", "collection": collection, "data": data, **extra}


VARIED = [
    create({"name": "Ada", "tags": ["math", "engines"], "born": 1815}),
    create({"name": "Zoë ünïcödé ✓ 名前", "nested": {"a": {"b": [1, 2.5, None, True]}}}),
    create({"empty": {}, "list": [], "float": 1e-7, "big": 9_223_372_036_854_775_807}),
    create({"quote": 'say "hi"\\n', "ctl": "\t\u0001"}, id="given-1"),
    create({"n": 1}, collection="teams"),
    create({"n": 2}, collection="teams", id="t:2@x"),
    create({"n": 3}),
]


@pytest.fixture
def deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids and timestamps that repeat from run to run, so two runs can be compared."""
    counter = itertools.count()

    def ids(count: int) -> list[str]:
        return [f"id-{next(counter):04d}" for _ in range(count)]

    monkeypatch.setattr(_ids, "new_record_ids", ids)
    monkeypatch.setattr(_ids, "now_iso", lambda: "2026-12-02T00:00:00.000Z")


def one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan every batch operation by operation (never as runs)."""
    monkeypatch.setattr(planner, "_create_runs", lambda operations, plain: None)


def run_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the plans written as runs (each entry: the operations of one plan)."""
    calls: list[int] = []
    real = executor.write_runs

    def spy(tx: Any, tenant: str, plan: Any, **kw: Any) -> Any:
        calls.append(plan.count)
        return real(tx, tenant, plan, **kw)

    monkeypatch.setattr(executor, "write_runs", spy)
    return calls


def without_duration(body: bytes) -> bytes:
    return re.sub(rb'"duration_ms":[0-9.e+-]+', b'"duration_ms":0', body)


async def post(
    service: Service,
    operations_: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
    **options: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"operations": operations_}
    if options:
        body["options"] = options
    return await (client or service.client).post(
        "/v1/batch",
        content=orjson.dumps(body),
        headers={"X-Batch-Id": "b-1", "Content-Type": "application/json", **(headers or {})},
    )


def rest(op: dict[str, Any]) -> dict[str, Any]:
    """The same create in the REST dialect (its ``ref`` becomes the operation's ``id``)."""
    body: dict[str, Any] = {"data": op["data"]}
    if "id" in op:
        body["id"] = op["id"]
    out: dict[str, Any] = {
        "method": "POST",
        "path": f"/v1/collections/{op['collection']}/records",
        "body": body,
    }
    if "ref" in op:
        out["id"] = op["ref"]
    return out


# Names label results; a name is the client's text, so it must come back JSON-escaped.
NAMES = ["a", None, 'say-"hi"\\', "é", None, "f", "g"]
NAMED = [
    op if name is None else {**op, "ref": name} for op, name in zip(VARIED, NAMES, strict=True)
]


@pytest.mark.parametrize(
    ("operations_", "options"),
    [
        (VARIED, {}),
        (VARIED, {"atomic": True}),
        (VARIED, {"suppress_success": True}),
        (NAMED, {}),
        ([rest(op) for op in VARIED], {}),
        ([rest(op) for op in NAMED], {"atomic": True}),
        ([rest(op) if i % 2 else op for i, op in enumerate(NAMED)], {}),
    ],
    ids=[
        "typed",
        "typed atomic",
        "typed suppress_success",
        "named",
        "REST",
        "REST named atomic",
        "mixed dialects",
    ],
)
async def test_runs_of_plain_creates_answer_byte_for_byte_as_operations_one_by_one(
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    deterministic: None,
    operations_: list[dict[str, Any]],
    options: dict[str, Any],
) -> None:
    calls = run_calls(monkeypatch)
    runs = await post(service, operations_, **options)
    assert calls == [len(operations_)]
    one_by_one(monkeypatch)
    monkeypatch.setattr(_ids, "new_record_ids", _restarted_ids())
    other_tenant = await service.client_for(f"t_{uuid.uuid4().hex[:10]}")
    single = await post(service, operations_, client=other_tenant, **options)
    assert calls == [len(operations_)]  # the second batch was not planned as runs
    assert runs.status_code == single.status_code == 200
    assert without_duration(runs.content) == without_duration(single.content)


def _restarted_ids() -> Any:
    counter = itertools.count()
    return lambda count: [f"id-{next(counter):04d}" for _ in range(count)]


async def test_each_run_of_one_collection_is_one_insert(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[tuple[str, int]] = []
    real = records_service.create_prepared

    def spy(tx: Any, tenant: str, prepared: records_service.PreparedCreates) -> Any:
        inserts.append((prepared.collection, len(prepared.json)))
        return real(tx, tenant, prepared)

    monkeypatch.setattr(records_service, "create_prepared", spy)
    response = await post(service, VARIED)
    assert response.status_code == 200
    assert inserts == [(PEOPLE, 4), ("teams", 2), (PEOPLE, 1)]


async def test_the_records_runs_write_read_back_as_sent(service: Service) -> None:
    response = await post(service, VARIED)
    results = response.json()["results"]
    for op, result in zip(VARIED, results, strict=True):
        got = await service.client.get(
            f"/v1/collections/{op['collection']}/records/{result['body']['id']}"
        )
        assert got.status_code == 200
        assert got.json() == result["body"]
        assert got.json()["data"] == op["data"]


REST_CREATE = {"method": "POST", "path": "/v1/collections/people/records", "body": {"data": {}}}


@pytest.mark.parametrize(
    "operations_",
    [
        [create({"a": 1}, ref="x"), create({"b": "${x.body.id}"})],
        [create({"a": 1}), {"type": "read", "collection": PEOPLE, "id": "nope"}],
        [create({"a": 1}, ref="x"), create({"b": 2}, depends_on=["x"])],
        [create({"a": 1}, depends_on=[])],
        [create({"a": 1}, atomicity_group="g")],
        [{**REST_CREATE, "path": "/v1/collections/peo%70le/records"}],
        [{**REST_CREATE, "path": "/v1/collections/people/records?x=1"}],
        [{**REST_CREATE, "headers": {"If-Match": "1"}}],
        [create({"a": 1}, ref="same"), create({"b": 2}, ref="same")],
        [create({"a": 1}, ref="has space")],
    ],
    ids=[
        "reference",
        "another type",
        "depends_on",
        "empty depends_on",
        "atomicity group",
        "escaped path",
        "query string",
        "REST headers",
        "repeated name",
        "invalid name",
    ],
)
async def test_a_batch_that_is_not_only_plain_creates_is_run_operation_by_operation(
    service: Service, monkeypatch: pytest.MonkeyPatch, operations_: list[dict[str, Any]]
) -> None:
    calls = run_calls(monkeypatch)
    response = await post(service, operations_)
    assert response.status_code in (200, 207, 400)
    assert calls == []


async def test_validate_only_is_not_planned_as_runs_and_writes_nothing(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = run_calls(monkeypatch)
    response = await post(service, [create({"a": 1})], validate_only=True)
    assert response.json()["results"][0]["body"] == {"valid": True, "would_run": True}
    assert calls == []
    assert await stored_ids(service) == []


async def test_an_existing_id_undoes_the_runs_and_answers_one_by_one_with_nothing_doubled(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(service, [create({"v": 0}, id="taken")])
    calls = run_calls(monkeypatch)
    response = await post(
        service, [create({"v": 1}, id="a"), create({"v": 2}, id="taken"), create({"v": 3})]
    )
    assert calls == [3]  # the runs were tried, rolled back, and each operation answered
    assert response.status_code == 207
    assert [r["status"] for r in response.json()["results"]] == [201, 409, 201]
    assert response.json()["results"][1]["error"]["code"] == "ALREADY_EXISTS"
    ids = await stored_ids(service)
    assert len(ids) == 3  # "taken", "a" and one generated id: the runs' try left nothing
    assert {"a", "taken"} <= set(ids)


async def test_a_repeated_id_in_one_batch_is_a_409_for_the_second(service: Service) -> None:
    response = await post(service, [create({"v": 1}, id="twice"), create({"v": 2}, id="twice")])
    assert [r["status"] for r in response.json()["results"]] == [201, 409]
    got = await service.client.get("/v1/collections/people/records/twice")
    assert got.json()["data"] == {"v": 1}


async def test_an_integer_beyond_64_bits_is_a_422_for_its_operation_not_a_500(
    service: Service,
) -> None:
    body = (
        b'{"operations": [{"type": "create", "collection": "people", "data": {"ok": 1}},'
        b'{"type": "create", "collection": "people", "data": {"n": {"deep": [0, '
        b"123456789012345678901234567890]}}}]}"
    )
    response = await service.client.post(
        "/v1/batch", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert results[0]["status"] == 201
    assert results[1]["status"] == 422
    assert results[1]["error"]["details"]["path"] == "data.n.deep[1]"
    assert len(await stored_ids(service)) == 1


async def test_an_atomic_batch_with_a_bad_create_commits_nothing(service: Service) -> None:
    response = await post(
        service, [create({"v": 1}), create({"v": 2}, id="bad id!"), create({"v": 3})], atomic=True
    )
    assert response.status_code == 422
    assert response.json()["committed"] is False
    assert [r["status"] for r in response.json()["results"]] == [424, 422, 424]
    assert await stored_ids(service) == []


async def test_stopping_at_the_first_failure_writes_none_of_the_later_creates(
    service: Service,
) -> None:
    response = await post(
        service,
        [create({"v": 1}, id="one"), create({"v": 2}, id="bad id!"), create({"v": 3}, id="three")],
        continue_on_error=False,
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 424]
    assert results[2]["error"]["code"] == "SKIPPED"
    assert await stored_ids(service) == ["one"]


async def test_an_idempotent_retry_of_a_batch_of_runs_replays_the_same_bytes(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = run_calls(monkeypatch)
    headers = {"Idempotency-Key": "k-1"}
    first = await post(service, VARIED[:3], headers=headers)
    again = await post(service, VARIED[:3], headers=headers)
    assert calls == [3]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert len(await stored_ids(service)) == 3


async def test_a_batch_of_runs_past_its_timeout_answers_504s_and_writes_nothing(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = run_calls(monkeypatch)
    monkeypatch.setattr(endpoint, "options_deadline", lambda options, default: 0.0)
    response = await post(service, [create({"v": 1}), create({"v": 2})], timeout_ms=1)
    assert calls == [2]
    assert [r["status"] for r in response.json()["results"]] == [504, 504]
    assert await stored_ids(service) == []


async def test_an_idempotent_retry_of_a_batch_whose_runs_were_undone_replays_its_207(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(service, [create({"v": 0}, id="taken")])
    calls = run_calls(monkeypatch)
    headers = {"Idempotency-Key": "k-2"}
    operations_ = [create({"v": 1}), create({"v": 2}, id="taken")]
    first = await post(service, operations_, headers=headers)
    again = await post(service, operations_, headers=headers)
    assert calls == [2]
    assert first.status_code == again.status_code == 207
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert len(await stored_ids(service)) == 2


async def test_a_batch_whose_runs_are_undone_is_decoded_once_and_runs_in_one_transaction(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(service, [create({"v": 0}, id="taken")])
    decodes: list[int] = []
    real_decode = wire.decode_batch

    def decode_spy(body: bytes, **kw: Any) -> Any:
        decodes.append(len(body))
        return real_decode(body, **kw)

    transactions: list[Any] = []
    real_run = service.store.run

    async def run_spy(fn: Any, **kw: Any) -> Any:
        transactions.append(fn)
        return await real_run(fn, **kw)

    monkeypatch.setattr("batchops.server.batch.planner.decode_batch", decode_spy)
    monkeypatch.setattr(service.store, "run", run_spy)
    calls = run_calls(monkeypatch)
    response = await post(service, [create({"v": 1}), create({"v": 2}, id="taken")])
    assert calls == [2]
    assert [r["status"] for r in response.json()["results"]] == [201, 409]
    assert len(decodes) == 1  # the operations run one by one were made from the texts
    assert len(transactions) == 1  # the runs, undone, and the operations one by one


async def test_a_stream_of_plain_creates_is_not_planned_as_runs(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = run_calls(monkeypatch)
    response = await post(
        service, VARIED[:3], headers={"Accept": "application/x-ndjson"}, continue_on_error=True
    )
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert [line["status"] for line in lines[:3]] == [201, 201, 201]
    assert lines[3]["meta"]["by_type"] == {
        "create": {"total": 3, "succeeded": 3, "failed": 0, "skipped": 0}
    }
    assert calls == []
    assert len(await stored_ids(service)) == 3
