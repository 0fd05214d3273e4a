"""The lists of jobs (``GET /v1/jobs``) and of a job's webhook deliveries
(``GET /v1/jobs/{id}/deliveries``) take a page size by the one rule of every list: the
records list's (``?limit=`` 1-1000, default 100), with the same 422 — never FastAPI's own
400, never a 5xx (both backends)."""

from __future__ import annotations

import pytest

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
