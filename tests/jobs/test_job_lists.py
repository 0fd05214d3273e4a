"""The lists of jobs (``GET /v1/jobs``) and of a job's webhook deliveries
(``GET /v1/jobs/{id}/deliveries``) take a page size by the one rule of every list: the
records list's (``?limit=`` 1-1000, default 100), with the same 422 — never FastAPI's own
400, never a 5xx (both backends)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from batchops.server import _ids
from batchops.store.base import JobRow, Tx
from tests.jobs.conftest import BAD_LIMITS, limit_error, wait_done
from tests.server.conftest import Service

RECORDS = "/v1/collections/people/records"


async def _async_batch(service: Service) -> str:
    """A finished job (an async batch of one create): its id."""
    response = await service.client.post(
        "/v1/batch",
        json={"operations": [{"type": "create", "collection": "people", "data": {}}]},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    await wait_done(service.client, job_id)
    return job_id


@pytest.mark.parametrize("limit", BAD_LIMITS, ids=repr)
async def test_a_job_list_limit_no_list_takes_is_the_records_lists_422(
    service: Service, limit: str
) -> None:
    job_id = await _async_batch(service)
    expected = await limit_error(service.client, RECORDS, limit)
    assert expected[0] == 422
    assert (expected[1]["code"], expected[1]["details"]["path"]) == ("VALIDATION_ERROR", "limit")
    for path in ("/v1/jobs", f"/v1/jobs/{job_id}/deliveries"):
        assert await limit_error(service.client, path, limit) == expected, path


async def test_a_job_list_takes_a_page_size_from_1_to_1000(service: Service) -> None:
    first, second = await _async_batch(service), await _async_batch(service)
    for limit, expected in (("1", [second]), ("1000", [second, first]), ("05", [second, first])):
        response = await service.client.get("/v1/jobs", params={"limit": limit})
        assert response.status_code == 200, response.text
        assert [job["id"] for job in response.json()["jobs"]] == expected
    deliveries = await service.client.get(f"/v1/jobs/{first}/deliveries", params={"limit": "1"})
    assert deliveries.json() == {"deliveries": []}


# -- keyset paging: ?cursor= ---------------------------------------------------------------


async def _stored_jobs(service: Service, tenant: str, count: int) -> list[str]:
    """``count`` finished jobs of ``tenant``, stored as they are (no runner involved): every
    other one an import, every third failed; three at a time share a ``created_at`` so the
    id must break ties. Their ids, newest first (the list's order)."""
    rows = [
        JobRow(
            id=_ids.new_record_id(),
            tenant=tenant,
            type="import" if n % 2 else "batch",
            state="failed" if n % 3 == 0 else "succeeded",
            collection="people",
            options={},
            created_at=f"2026-01-01T00:00:{n // 3:02d}.000Z",
            revision=1,
        )
        for n in range(count)
    ]

    def insert(tx: Tx) -> None:
        for row in rows:
            tx.insert_job(row)

    await service.store.run(insert)
    return [row.id for row in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]


async def _pages(
    client: httpx.AsyncClient, limit: int, **filters: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page of ``GET /v1/jobs`` followed through ``next_cursor``: the ids seen, in
    order, and the jobs."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": str(limit), **filters, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["jobs"]) <= limit
        seen += body["jobs"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return [job["id"] for job in seen], seen
        assert pages < 100, "the cursor does not move on"


@pytest.mark.limits(role="api")
async def test_paging_the_job_list_shows_each_job_once_newest_first(service: Service) -> None:
    expected = await _stored_jobs(service, service.tenant, 11)
    for limit in (1, 3, 4, 11, 12):
        seen, _ = await _pages(service.client, limit)
        assert seen == expected, limit


@pytest.mark.limits(role="api")
async def test_the_last_page_of_jobs_has_no_next_cursor(service: Service) -> None:
    await _stored_jobs(service, service.tenant, 4)
    first = (await service.client.get("/v1/jobs", params={"limit": "2"})).json()
    assert first["next_cursor"] is not None
    last = (
        await service.client.get("/v1/jobs", params={"limit": "2", "cursor": first["next_cursor"]})
    ).json()
    assert len(last["jobs"]) == 2
    assert last["next_cursor"] is None


@pytest.mark.limits(role="api")
async def test_paging_the_job_list_keeps_its_filters_on_every_page(service: Service) -> None:
    everything = await _stored_jobs(service, service.tenant, 12)
    _, all_jobs = await _pages(service.client, 100)
    by_id = {job["id"]: job for job in all_jobs}
    expected = [
        i for i in everything if by_id[i]["type"] == "import" and by_id[i]["state"] == "succeeded"
    ]
    assert expected  # (the set-up makes some)
    seen, jobs = await _pages(service.client, 2, type="import", state="succeeded")
    assert seen == expected
    assert {(job["type"], job["state"]) for job in jobs} == {("import", "succeeded")}


@pytest.mark.limits(role="api")
async def test_a_cursor_from_another_filter_set_pages_on_from_its_point(
    service: Service,
) -> None:
    everything = await _stored_jobs(service, service.tenant, 9)
    other = await service.client_for(f"{service.tenant}_other")
    await _stored_jobs(service, f"{service.tenant}_other", 9)
    page = (await service.client.get("/v1/jobs", params={"limit": "3", "type": "batch"})).json()
    cursor = page["next_cursor"]
    # The cursor is a position (created_at, id): used without the filter, the list goes on
    # from there, the caller's own jobs only; used by another tenant, theirs only.
    rest = (await service.client.get("/v1/jobs", params={"cursor": cursor})).json()
    position = everything.index(page["jobs"][-1]["id"])
    assert [job["id"] for job in rest["jobs"]] == everything[position + 1 :]
    theirs = (await other.get("/v1/jobs", params={"cursor": cursor})).json()["jobs"]
    assert not {job["id"] for job in theirs} & set(everything)


def _forged(created_at: str, job_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at, job_id])).decode().rstrip("=")


FORGED = [
    "x!",
    "bm9wZQ",  # "nope"
    "W10",  # []
    "WzEsMl0",  # [1,2]
    "%%%",
    # Positions this API never hands out, holding what a database may refuse (a NUL):
    # refused as cursors on both backends, never the store's error.
    _forged("2026-01-01T00:00:00.000Z\x00", "01a2466e-d01f-76c2-9eec-b46813169d84"),
    _forged("2026-01-01T00:00:00.000Z", "id\x00"),
    _forged("yesterday", "01a2466e-d01f-76c2-9eec-b46813169d84"),
]


@pytest.mark.parametrize("cursor", FORGED, ids=repr)
async def test_a_cursor_the_api_did_not_hand_out_is_a_400_naming_cursor(
    service: Service, cursor: str
) -> None:
    response = await service.client.get("/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]["path"]) == ("INVALID_REQUEST", "cursor")
