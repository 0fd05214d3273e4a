"""Consecutive updates, replaces and soft deletes of one collection in a batch run as one
group: their rows read (and locked) with one statement and written with one, each
operation still answered as if run alone (both backends)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from batchops.server.batch import executor
from batchops.server.records import service as records_service
from tests.server.conftest import Service
from tests.server.test_batch_api import batch
from tests.server.test_concurrent_writes import stored_record as stored

PEOPLE = "people"


def update(record_id: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "update", "collection": PEOPLE, "id": record_id, "data": data, **extra}


def replace(record_id: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "replace", "collection": PEOPLE, "id": record_id, "data": data, **extra}


def delete(record_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "delete", "collection": PEOPLE, "id": record_id, **extra}


async def seed(service: Service, *ids: str) -> None:
    response = await batch(
        service,
        [{"type": "create", "collection": PEOPLE, "id": i, "data": {"n": 0}} for i in ids],
    )
    assert response.status_code == 200, response.text


class Calls:
    """The store calls each ``update_many`` (or ``name``) made: (items, get_records calls,
    update_records calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str = "update_many") -> None:
        self.groups: list[tuple[int, int, int]] = []
        real = getattr(records_service, name)

        def spy(tx: Any, *args: Any, **kwargs: Any) -> Any:
            counting: Any = _CountingTx(tx)
            outcomes = real(counting, *args, **kwargs)
            self.groups.append((len(outcomes), counting.reads, counting.writes))
            return outcomes

        monkeypatch.setattr(records_service, name, spy)


class _CountingTx:
    def __init__(self, tx: Any) -> None:
        self._tx, self.reads, self.writes = tx, 0, 0

    def get_records(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return self._tx.get_records(*args, **kwargs)

    def update_records(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        return self._tx.update_records(*args, **kwargs)


async def test_consecutive_updates_and_replaces_are_one_read_and_one_write_each_group(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(service, "a", "b", "c")
    calls = Calls(monkeypatch)
    response = await batch(
        service,
        [update("a", {"x": 1}), update("b", {"x": 2}), replace("c", {"y": 3}), replace("a", {})],
    )
    assert response.status_code == 200, response.text
    assert calls.groups == [(2, 1, 1), (2, 1, 1)]
    assert (await stored(service, "b"))["data"] == {"n": 0, "x": 2}
    assert (await stored(service, "c"))["data"] == {"y": 3}


async def test_an_id_updated_twice_in_one_group_gets_both_changes_in_order(
    service: Service,
) -> None:
    await seed(service, "a")
    response = await batch(service, [update("a", {"x": 1}), update("a", {"y": 2, "n": None})])
    results = response.json()["results"]
    assert [(r["body"]["version"], r["body"]["data"]) for r in results] == [
        (2, {"n": 0, "x": 1}),
        (3, {"x": 1, "y": 2}),
    ]
    assert (await stored(service, "a"))["version"] == 3


async def test_each_failing_update_of_a_group_answers_its_own_error_and_the_others_are_written(
    service: Service,
) -> None:
    await seed(service, "a", "b", "c")
    response = await batch(
        service,
        [
            update("a", {"x": 1}),
            update("missing", {"x": 1}),
            update("b", {"x": 1}, if_match=7),
            update("bad id!", {"x": 1}),
            update("c", {"big": 2**70}),
            update("c", {"x": 1}, if_match=1),
        ],
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 404, 409, 422, 422, 200]
    assert results[2]["error"]["code"] == "VERSION_MISMATCH"
    assert results[2]["error"]["details"] == {"id": "b", "expected": 7, "actual": 1}
    assert [(await stored(service, i))["version"] for i in ("a", "b", "c")] == [2, 1, 2]


async def test_stopping_at_the_first_failure_writes_none_of_the_group_after_it(
    service: Service,
) -> None:
    await seed(service, "a", "b")
    response = await batch(
        service,
        [update("a", {"x": 1}), update("missing", {"x": 1}), update("b", {"x": 1})],
        continue_on_error=False,
    )
    assert [r["status"] for r in response.json()["results"]] == [200, 404, 424]
    assert (await stored(service, "a"))["version"] == 2
    assert (await stored(service, "b"))["version"] == 1


async def test_an_atomic_batch_whose_group_fails_writes_nothing(service: Service) -> None:
    await seed(service, "a", "b")
    response = await batch(
        service, [update("a", {"x": 1}), update("b", {"x": 1}, if_match=9)], atomic=True
    )
    assert response.status_code == 409
    assert [r["status"] for r in response.json()["results"]] == [424, 409]
    assert [(await stored(service, i))["version"] for i in ("a", "b")] == [1, 1]


def _without_times(body: bytes) -> bytes:
    return re.sub(
        rb'"(batch_id|updated_at|created_at|duration_ms)":("[^"]*"|[0-9.e+-]+)', b"", body
    )


async def test_a_group_answers_what_the_same_operations_answer_one_by_one(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    operations = [
        update("a", {"x": 1}),
        update("missing", {"x": 1}),
        replace("b", {"z": [1, 2]}),
        update("a", {"x": None, "y": 1}),
        update("b", {"k": 1}, if_match=3),
        delete("a", if_match=3),
        delete("b", if_match=9),
        delete("a"),
    ]
    await seed(service, "a", "b")
    grouped = await batch(service, operations)
    monkeypatch.setattr(executor, "_GROUPED", frozenset({"create", "read"}))
    await service.client.delete(f"/v1/collections/{PEOPLE}/records/a?hard=true")
    await service.client.delete(f"/v1/collections/{PEOPLE}/records/b?hard=true")
    await seed(service, "a", "b")
    single = await batch(service, operations)
    assert grouped.status_code == single.status_code == 207
    assert _without_times(grouped.content) == _without_times(single.content)


async def test_consecutive_soft_deletes_are_one_read_and_one_write_with_their_own_answers(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(service, "a", "b", "c")
    calls = Calls(monkeypatch, "delete_many")
    response = await batch(
        service,
        [delete("a"), delete("missing"), delete("b", if_match=5), delete("c"), delete("a")],
    )
    assert calls.groups == [(5, 1, 1)]
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 404, 409, 200, 404]
    assert results[0]["body"] == {
        "id": "a",
        "collection": PEOPLE,
        "deleted": True,
        "hard": False,
        "version": 2,
    }
    gone = await service.client.get(f"/v1/collections/{PEOPLE}/records/c")
    assert gone.status_code == 404
    assert (await stored(service, "b"))["version"] == 1


async def test_a_hard_delete_is_not_grouped_and_frees_its_id(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(service, "a", "b")
    calls = Calls(monkeypatch, "delete_many")
    response = await batch(
        service, [delete("a", options={"hard": True}), delete("b", options={"hard": True})]
    )
    assert [r["body"]["hard"] for r in response.json()["results"]] == [True, True]
    assert calls.groups == []
    await seed(service, "a")  # the id is free again
