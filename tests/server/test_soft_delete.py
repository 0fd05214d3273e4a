"""Soft-deleted records: what every call answers, over REST and in both batch dialects
(both backends).

A soft delete keeps the row (and its id taken). Reads answer 404 unless they ask to include
deleted records; ``restore`` brings the record back; a hard delete removes it for good —
a soft-deleted one too — and frees its id; a create with a taken id says which case it is.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.conftest import Service

PEOPLE = "/v1/collections/people/records"


async def _soft_deleted(service: Service, record_id: str = "p1") -> None:
    created = await service.client.post(PEOPLE, json={"id": record_id, "data": {"n": 1}})
    assert created.status_code == 201
    deleted = await service.client.delete(f"{PEOPLE}/{record_id}")
    assert deleted.status_code == 200
    assert deleted.json()["version"] == 2


async def _op(service: Service, op: dict[str, Any]) -> dict[str, Any]:
    response = await service.client.post("/v1/batch", json={"operations": [op]})
    assert response.status_code in (200, 207), response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def _typed(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "collection": "people", "id": "p1", **fields}


async def test_a_soft_deleted_record_reads_as_404_unless_deleted_ones_are_included(
    service: Service,
) -> None:
    await _soft_deleted(service)
    assert (await service.client.get(f"{PEOPLE}/p1")).status_code == 404
    shown = await service.client.get(f"{PEOPLE}/p1", params={"include_deleted": "true"})
    assert shown.status_code == 200
    body = shown.json()
    assert (body["data"], body["version"]) == ({"n": 1}, 2)
    assert body["deleted_at"] == body["updated_at"]


async def test_a_live_record_read_with_deleted_ones_included_has_no_deleted_at(
    service: Service,
) -> None:
    await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    shown = await service.client.get(f"{PEOPLE}/p1", params={"include_deleted": "true"})
    assert "deleted_at" not in shown.json()


async def test_creating_with_the_id_of_a_soft_deleted_record_is_a_409_that_says_so(
    service: Service,
) -> None:
    await _soft_deleted(service)
    again = await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "ALREADY_EXISTS"
    assert error["details"] == {"collection": "people", "id": "p1", "deleted": True}
    assert "restore" in error["message"]


async def test_restoring_a_soft_deleted_record_brings_it_back_with_a_new_version(
    service: Service,
) -> None:
    await _soft_deleted(service)
    restored = await service.client.post(f"{PEOPLE}/p1/restore")
    assert restored.status_code == 200
    assert restored.json()["version"] == 3
    assert "deleted_at" not in restored.json()
    shown = await service.client.get(f"{PEOPLE}/p1")
    assert (shown.status_code, shown.json()["data"]) == (200, {"n": 1})


async def test_restoring_a_live_record_is_a_409_and_a_missing_one_a_404(service: Service) -> None:
    await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    live = await service.client.post(f"{PEOPLE}/p1/restore")
    assert (live.status_code, live.json()["error"]["code"]) == (409, "NOT_DELETED")
    missing = await service.client.post(f"{PEOPLE}/nope/restore")
    assert missing.status_code == 404


async def test_restore_honours_if_match(service: Service) -> None:
    await _soft_deleted(service)
    stale = await service.client.post(f"{PEOPLE}/p1/restore", headers={"If-Match": "1"})
    assert stale.status_code == 409
    current = await service.client.post(f"{PEOPLE}/p1/restore", headers={"If-Match": "2"})
    assert current.status_code == 200


async def test_a_hard_delete_purges_a_soft_deleted_record_and_frees_its_id(
    service: Service,
) -> None:
    await _soft_deleted(service)
    purged = await service.client.delete(f"{PEOPLE}/p1", params={"hard": "true"})
    assert purged.status_code == 200
    assert purged.json()["hard"] is True
    gone = await service.client.get(f"{PEOPLE}/p1", params={"include_deleted": "true"})
    assert gone.status_code == 404
    reused = await service.client.post(PEOPLE, json={"id": "p1", "data": {"n": 9}})
    assert reused.status_code == 201


async def test_a_soft_delete_of_a_soft_deleted_record_is_a_404(service: Service) -> None:
    await _soft_deleted(service)
    assert (await service.client.delete(f"{PEOPLE}/p1")).status_code == 404


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_changing_a_soft_deleted_record_is_a_404(service: Service, method: str) -> None:
    await _soft_deleted(service)
    response = await service.client.request(method, f"{PEOPLE}/p1", json={"data": {"x": 1}})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "op",
    [
        _typed("read", options={"include_deleted": True}),
        {"method": "GET", "path": f"{PEOPLE}/p1?include_deleted=true"},
    ],
    ids=["typed", "rest"],
)
async def test_a_batch_read_may_include_a_soft_deleted_record(
    service: Service, op: dict[str, Any]
) -> None:
    await _soft_deleted(service)
    result = await _op(service, op)
    assert result["status"] == 200
    assert "deleted_at" in result["body"]


@pytest.mark.parametrize(
    "op",
    [_typed("restore"), {"method": "POST", "path": f"{PEOPLE}/p1/restore"}],
    ids=["typed", "rest"],
)
async def test_a_batch_may_restore_a_soft_deleted_record(
    service: Service, op: dict[str, Any]
) -> None:
    await _soft_deleted(service)
    result = await _op(service, op)
    assert (result["status"], result["body"]["version"]) == (200, 3)
    assert (await service.client.get(f"{PEOPLE}/p1")).status_code == 200


@pytest.mark.parametrize(
    "op",
    [
        _typed("delete", options={"hard": True}),
        {"method": "DELETE", "path": f"{PEOPLE}/p1?hard=true"},
    ],
    ids=["typed", "rest"],
)
async def test_a_batch_hard_delete_purges_a_soft_deleted_record(
    service: Service, op: dict[str, Any]
) -> None:
    await _soft_deleted(service)
    result = await _op(service, op)
    assert result["status"] == 200
    created = await _op(service, {"type": "create", "collection": "people", "id": "p1", "data": {}})
    assert created["status"] == 201


@pytest.mark.parametrize("value", ["1", "yes", "TRUE"])
@pytest.mark.parametrize("way", ["rest", "batch-rest-dialect", "batch-typed-dialect"])
async def test_a_hard_flag_other_than_true_or_false_is_a_422_and_deletes_nothing(
    service: Service, way: str, value: str
) -> None:
    # FastAPI's bool took ?hard=1, yes and TRUE as true: the record was purged.
    await service.client.post(PEOPLE, json={"id": "p1", "data": {}})
    if way == "rest":
        response = await service.client.delete(f"{PEOPLE}/p1", params={"hard": value})
        status, error = response.status_code, response.json()["error"]
    else:
        op = (
            {"method": "DELETE", "path": f"{PEOPLE}/p1?hard={value}"}
            if way == "batch-rest-dialect"
            else _typed("delete", options={"hard": value})
        )
        result = await _op(service, op)
        status, error = result["status"], result["error"]
    assert (status, error["code"], error["details"]) == (
        422,
        "VALIDATION_ERROR",
        {"path": "hard", "value": value},
    )
    assert (await service.client.get(f"{PEOPLE}/p1")).json()["version"] == 1


@pytest.mark.parametrize(
    "op",
    [
        {"method": "DELETE", "path": f"{PEOPLE}/p1?hard=${{a.body.data.purge}}"},
        _typed("delete", options={"hard": "${a.body.data.purge}"}),
        {"method": "GET", "path": f"{PEOPLE}/p1?include_deleted=${{a.body.data.purge}}"},
        _typed("read", options={"include_deleted": "${a.body.data.purge}"}),
    ],
    ids=["rest-delete", "typed-delete", "rest-read", "typed-read"],
)
async def test_a_flag_may_be_a_reference_to_an_earlier_boolean(
    service: Service, op: dict[str, Any]
) -> None:
    # Judged by the records service after the reference is resolved, like a limit.
    await _soft_deleted(service)
    created = {"ref": "a", "type": "create", "collection": "people", "data": {"purge": True}}
    response = await service.client.post("/v1/batch", json={"operations": [created, op]})
    result = response.json()["results"][1]
    assert result["status"] == 200, result
    if "hard" in str(op):
        assert result["body"]["hard"] is True
    else:
        assert "deleted_at" in result["body"]


@pytest.mark.parametrize(
    "op",
    [
        {"method": "DELETE", "path": f"{PEOPLE}/p1?hard=yes"},
        _typed("delete", options={"hard": "yes"}),
        {"method": "GET", "path": f"{PEOPLE}/p1?include_deleted=1"},
        _typed("read", options={"include_deleted": 1}),
    ],
    ids=["rest-delete", "typed-delete", "rest-read", "typed-read"],
)
async def test_a_validate_only_batch_judges_a_flag_as_a_run_would(
    service: Service, op: dict[str, Any]
) -> None:
    response = await service.client.post(
        "/v1/batch", json={"operations": [op], "options": {"validate_only": True}}
    )
    (result,) = response.json()["results"]
    path = "hard" if "hard" in str(op) else "include_deleted"
    assert (result["status"], result["error"]["details"]["path"]) == (422, path)


async def test_a_batch_create_over_a_soft_deleted_id_says_it_is_deleted(service: Service) -> None:
    await _soft_deleted(service)
    result = await _op(service, {"type": "create", "collection": "people", "id": "p1", "data": {}})
    assert result["status"] == 409
    assert result["error"]["details"]["deleted"] is True
