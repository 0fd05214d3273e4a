"""POST /v1/bulk/update and /v1/bulk/delete, inline and as jobs, on both backends."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.jobs.conftest import Service, records, wait_done


async def _seed(client: httpx.AsyncClient, collection: str, items: list[dict[str, Any]]) -> None:
    ops = [{"type": "create", "collection": collection, "data": d} for d in items]
    for start in range(0, len(ops), 1000):
        response = await client.post("/v1/batch", json={"operations": ops[start : start + 1000]})
        assert response.status_code == 200, response.text


def _people(n: int) -> list[dict[str, Any]]:
    return [
        {"n": i, "status": "draft" if i % 2 == 0 else "live", "profile": {"team": "a"}}
        for i in range(n)
    ]


async def _by_n(client: httpx.AsyncClient, collection: str) -> dict[int, dict[str, Any]]:
    return {r["data"]["n"]: r for r in await records(client, collection)}


async def test_bulk_update_patches_exactly_the_matching_records_bumping_version_once(
    service: Service,
) -> None:
    await _seed(service.client, "people", _people(10))
    response = await service.client.post(
        "/v1/bulk/update",
        json={
            "collection": "people",
            "filter": {"status": "draft"},
            "update": {"archived": True, "profile": {"team": None, "level": 2}},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    after = await _by_n(service.client, "people")
    drafts = sorted(r["id"] for r in after.values() if r["data"]["status"] == "draft")
    assert body == {
        "operation": "update",
        "collection": "people",
        "dry_run": False,
        "matched": 5,
        "updated": 5,
        "ids": drafts,
    }
    for n, record in after.items():
        if n % 2 == 0:
            assert record["version"] == 2
            assert record["data"] == {
                "n": n,
                "status": "draft",
                "archived": True,
                "profile": {"level": 2},
            }
        else:
            assert record["version"] == 1
            assert "archived" not in record["data"]


async def test_bulk_update_filters_on_dot_paths_with_list_semantics(service: Service) -> None:
    await _seed(
        service.client, "people", [{"n": 1, "p": {"age": 42}}, {"n": 2, "p": {"age": "42"}}]
    )
    response = await service.client.post(
        "/v1/bulk/update",
        json={"collection": "people", "filter": {"p.age": 42}, "update": {"hit": True}},
    )
    assert response.json()["matched"] == 1
    after = await _by_n(service.client, "people")
    assert after[1]["data"]["hit"] is True
    assert "hit" not in after[2]["data"]


async def test_dry_run_counts_and_lists_ids_but_writes_nothing(service: Service) -> None:
    await _seed(service.client, "people", _people(6))
    before = await _by_n(service.client, "people")
    for path, extra in (("update", {"update": {"x": 1}}), ("delete", {})):
        response = await service.client.post(
            f"/v1/bulk/{path}",
            json={"collection": "people", "filter": {"status": "live"}, "dry_run": True, **extra},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["dry_run"] is True
        assert body["matched"] == 3
        assert body[f"{path}d"] == 0
        assert body["ids"] == sorted(r["id"] for r in before.values() if r["data"]["n"] % 2)
    assert await _by_n(service.client, "people") == before


async def test_limit_caps_how_many_records_are_affected_in_id_order(service: Service) -> None:
    await _seed(service.client, "people", _people(10))
    ordered = sorted(r["id"] for r in await records(service.client, "people"))
    response = await service.client.post(
        "/v1/bulk/update",
        json={"collection": "people", "filter": {}, "update": {"x": 1}, "limit": 3},
    )
    assert response.json()["ids"] == ordered[:3]
    assert response.json()["updated"] == 3
    versions = {r["id"]: r["version"] for r in await records(service.client, "people")}
    assert [versions[i] for i in ordered] == [2, 2, 2] + [1] * 7


async def test_a_count_sent_as_a_whole_float_is_that_integer(service: Service) -> None:
    # Found by schemathesis (tests/contract): JSON has one number type and the OpenAPI
    # document calls these integers, so 3.0 is 3; it was a 422.
    await _seed(service.client, "people", _people(5))
    response = await service.client.post(
        "/v1/bulk/update",
        json={
            "collection": "people",
            "filter": {},
            "update": {"x": 1},
            "limit": 3.0,
            "chunk_size": 2.0,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == 3
    fractional = await service.client.post(
        "/v1/bulk/update",
        json={"collection": "people", "filter": {}, "update": {"x": 1}, "limit": 2.5},
    )
    assert fractional.status_code == 422
    assert fractional.json()["error"]["details"]["path"] == "limit"


async def test_soft_delete_keeps_the_id_taken_and_hard_delete_frees_it(service: Service) -> None:
    await _seed(service.client, "people", _people(4))
    ids = sorted(r["id"] for r in await records(service.client, "people"))
    soft = await service.client.post(
        "/v1/bulk/delete", json={"collection": "people", "filter": {"status": "draft"}}
    )
    assert soft.status_code == 200, soft.text
    assert soft.json()["soft"] is True
    assert soft.json()["deleted"] == 2
    gone = soft.json()["ids"]
    assert len(await records(service.client, "people")) == 2
    reuse = await service.client.post(
        "/v1/collections/people/records", json={"id": gone[0], "data": {}}
    )
    assert reuse.status_code == 409  # a soft-deleted id stays taken
    hard = await service.client.post(
        "/v1/bulk/delete", json={"collection": "people", "filter": {}, "soft": False}
    )
    assert hard.json()["deleted"] == 2
    assert await records(service.client, "people") == []
    for record_id in ids[:1] + [i for i in ids if i not in gone][:1]:
        again = await service.client.post(
            "/v1/collections/people/records", json={"id": record_id, "data": {}}
        )
        assert again.status_code == (409 if record_id in gone else 201)


async def test_delete_by_ids_reports_the_ids_not_found(service: Service) -> None:
    await _seed(service.client, "people", _people(4))
    ids = sorted(r["id"] for r in await records(service.client, "people"))
    response = await service.client.post(
        "/v1/bulk/delete",
        json={"collection": "people", "ids": [ids[2], ids[0], "nope", ids[0]]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ids"] == [ids[0], ids[2]]
    assert body["not_found"] == ["nope"]
    assert body["deleted"] == 2
    left = sorted(r["id"] for r in await records(service.client, "people"))
    assert left == [ids[1], ids[3]]


@pytest.mark.limits(bulk_inline_max=10)
async def test_a_large_bulk_update_runs_as_a_job_in_chunks_with_the_right_counts(
    service: Service,
) -> None:
    await _seed(service.client, "people", _people(95))
    response = await service.client.post(
        "/v1/bulk/update",
        json={
            "collection": "people",
            "filter": {"status": "draft"},
            "update": {"v": 2},
            "chunk_size": 7,
        },
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["type"] == "bulk_update"
    assert job["total"] == 48
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    done = await wait_done(service.client, job["id"])
    assert done["state"] == "succeeded", done
    assert (done["total"], done["processed"], done["succeeded"], done["failed"]) == (48, 48, 48, 0)
    assert done["checkpoint"] == 7  # chunks of 7: the 7th finds the last 6
    after = await _by_n(service.client, "people")
    assert {n for n, r in after.items() if r["data"].get("v") == 2} == set(range(0, 95, 2))
    assert {r["version"] for n, r in after.items() if n % 2 == 0} == {2}
    assert {r["version"] for n, r in after.items() if n % 2} == {1}
    results = await service.client.get(f"/v1/jobs/{job['id']}/results")
    assert results.status_code == 200
    body = results.json()
    assert body["matched"] == body["updated"] == 48
    assert body["ids"] == sorted(r["id"] for n, r in after.items() if n % 2 == 0)


@pytest.mark.limits(bulk_inline_max=5)
async def test_large_bulk_deletes_by_filter_and_by_ids_run_as_jobs(service: Service) -> None:
    await _seed(service.client, "people", _people(30))
    ids = sorted(r["id"] for r in await records(service.client, "people"))
    by_filter = await service.client.post(
        "/v1/bulk/delete",
        json={"collection": "people", "filter": {"status": "draft"}, "chunk_size": 4, "limit": 12},
    )
    assert by_filter.status_code == 202, by_filter.text
    assert by_filter.json()["total"] == 12
    done = await wait_done(service.client, by_filter.json()["id"])
    assert (done["state"], done["succeeded"]) == ("succeeded", 12)
    assert len(await records(service.client, "people")) == 18
    left = sorted(r["id"] for r in await records(service.client, "people"))
    by_ids = await service.client.post(
        "/v1/bulk/delete",
        json={
            "collection": "people",
            "ids": [*left[:8], "missing-1"],
            "soft": False,
            "chunk_size": 3,
        },
    )
    assert by_ids.status_code == 202, by_ids.text
    assert by_ids.json()["type"] == "bulk_delete"
    done = await wait_done(service.client, by_ids.json()["id"])
    assert (done["state"], done["succeeded"], done["failed"]) == ("succeeded", 8, 1)
    assert sorted(r["id"] for r in await records(service.client, "people")) == left[8:]
    failures = await service.client.get(f"/v1/jobs/{by_ids.json()['id']}/failures")
    line = orjson.loads(failures.content.splitlines()[0])
    assert (line["code"], line["input"]) == ("NOT_FOUND", "missing-1")
    results = (await service.client.get(f"/v1/jobs/{by_ids.json()['id']}/results")).json()
    assert results["ids"] == left[:8]
    assert results["not_found"] == ["missing-1"]
    assert (results["deleted"], results["soft"]) == (8, False)
    assert ids  # the seeded ids were all there


@pytest.mark.limits(bulk_inline_max=5)
async def test_a_large_dry_run_job_counts_but_writes_nothing(service: Service) -> None:
    await _seed(service.client, "people", _people(20))
    before = await _by_n(service.client, "people")
    response = await service.client.post(
        "/v1/bulk/update",
        json={"collection": "people", "filter": {}, "update": {"x": 1}, "dry_run": True},
    )
    assert response.status_code == 202
    done = await wait_done(service.client, response.json()["id"])
    assert done["succeeded"] == 20
    results = (await service.client.get(f"/v1/jobs/{done['id']}/results")).json()
    assert (results["matched"], results["updated"], len(results["ids"])) == (20, 0, 20)
    assert await _by_n(service.client, "people") == before


async def test_bulk_changes_are_scoped_to_the_callers_tenant(service: Service) -> None:
    await _seed(service.client, "people", _people(4))
    other = await service.client_for(f"t_other_bulk_{uuid.uuid4().hex[:8]}")
    await _seed(other, "people", _people(4))
    mine = sorted(r["id"] for r in await records(service.client, "people"))
    response = await other.post(
        "/v1/bulk/update", json={"collection": "people", "filter": {}, "update": {"x": 1}}
    )
    assert response.json()["matched"] == 4
    assert not set(response.json()["ids"]) & set(mine)
    deleted = await other.post("/v1/bulk/delete", json={"collection": "people", "ids": mine})
    assert deleted.json()["not_found"] == mine
    assert {r["version"] for r in await records(service.client, "people")} == {1}


@pytest.mark.parametrize(
    ("path", "body", "status", "where"),
    [
        ("update", [], 400, ""),
        ("update", {"filter": {}, "update": {}}, 400, "collection"),
        ("update", {"collection": "p", "update": {}}, 400, "filter"),
        ("update", {"collection": "p", "filter": {}}, 400, "update"),
        ("update", {"collection": "p", "filter": {}, "update": 3}, 422, "update"),
        ("update", {"collection": "p", "filter": [], "update": {}}, 422, "filter"),
        ("update", {"collection": "p", "filter": {"a": [1]}, "update": {}}, 422, "filter.a"),
        ("update", {"collection": "p", "filter": {}, "update": {}, "limit": 0}, 422, "limit"),
        ("update", {"collection": "p", "filter": {}, "update": {}, "dry_run": "y"}, 422, "dry_run"),
        ("update", {"collection": "p", "filter": {}, "update": {}, "bogus": 1}, 400, "bogus"),
        ("update", {"collection": "", "filter": {}, "update": {}}, 422, "collection"),
        ("delete", {"collection": "p"}, 400, "filter"),
        ("delete", {"collection": "p", "filter": {}, "ids": ["a"]}, 400, "ids"),
        ("delete", {"collection": "p", "ids": []}, 422, "ids"),
        ("delete", {"collection": "p", "ids": ["a", 2]}, 422, "ids[1]"),
        ("delete", {"collection": "p", "filter": {}, "soft": "no"}, 422, "soft"),
        ("delete", {"collection": "p", "filter": {}, "chunk_size": 10**6}, 422, "chunk_size"),
    ],
)
async def test_bad_bulk_requests_answer_the_envelope_with_the_field_path(
    service: Service, path: str, body: Any, status: int, where: str
) -> None:
    response = await service.client.post(f"/v1/bulk/{path}", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["details"]["path"] == where, error


@pytest.mark.limits(bulk_inline_max=1)
@pytest.mark.parametrize(
    ("update", "code", "where"),
    [
        pytest.param(b'{"a": "x\\u0000"}', "VALIDATION_ERROR", "update.a", id="nul"),
        pytest.param(
            b'{"a": ' + b"9" * 30 + b"}", "VALIDATION_ERROR", "update.a", id="past-64-bits"
        ),
        pytest.param(
            b'{"p": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}",
            "JSON_TOO_DEEP",
            "update.p.a",
            id="nested-past-128-levels",
        ),
    ],
)
async def test_a_patch_the_records_api_refuses_is_a_422_before_any_job_is_made(
    service: Service, update: bytes, code: str, where: str
) -> None:
    # Found by tests/fuzz: with more matches than the inline maximum, the patch was stored
    # in a job that then failed INTERNAL_ERROR (NUL, too deep; a NUL on PostgreSQL: 422
    # INVALID_VALUE from the job insert), or the job insert itself raised (a 500 past 64
    # bits). Inline, the same patch was already a 422.
    await _seed(service.client, "people", _people(3))
    body = b'{"collection": "people", "filter": {}, "update": ' + update + b"}"
    response = await service.client.post(
        "/v1/bulk/update", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["details"]["path"].startswith(where)
    assert (await service.client.get("/v1/jobs")).json() == {"jobs": [], "next_cursor": None}


async def test_bulk_requests_need_json_and_a_key(service: Service) -> None:
    response = await service.client.post(
        "/v1/bulk/update", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"]
    response = await service.client.post(
        "/v1/bulk/update", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    anonymous = httpx.AsyncClient(transport=service.client._transport, base_url="http://test")
    async with anonymous:
        response = await anonymous.post("/v1/bulk/delete", json={"collection": "p", "filter": {}})
    assert response.status_code == 401


async def test_results_of_an_import_job_or_a_missing_job_answer_clearly(service: Service) -> None:
    missing = await service.client.get("/v1/jobs/nope/results")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "JOB_NOT_FOUND"
    upload = await service.client.post(
        "/v1/imports",
        params={"collection": "c"},
        content=b"a\n1\n",
        headers={"Content-Type": "text/csv"},
    )
    job = await wait_done(service.client, upload.json()["id"])
    response = await service.client.get(f"/v1/jobs/{job['id']}/results")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NO_RESULTS"
