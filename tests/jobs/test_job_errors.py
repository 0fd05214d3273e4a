"""A job the database refuses ends with the store's own error code, never INTERNAL_ERROR
(both backends)."""

from __future__ import annotations

from typing import Any

import pytest

from batchops._exceptions import StoreInputError, StoreTimeoutError, TransientStoreError
from batchops.server.jobs.runner import JobRunner
from batchops.server.records import service as records_service
from tests.jobs.conftest import upload, wait_done
from tests.server.conftest import Service


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreInputError("bigint out of range"), "INVALID_VALUE"),
        (StoreTimeoutError("x"), "TIMEOUT"),
    ],
)
async def test_a_job_whose_chunk_the_database_refuses_fails_with_the_store_error_code(
    service: Service, monkeypatch: pytest.MonkeyPatch, error: Exception, code: str
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(records_service, "create_prepared", refuse)
    response = await upload(service.client, b"name\nada\n", collection="people")
    job = await wait_done(service.client, response.json()["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == code


async def test_a_job_whose_database_stays_busy_resumes_from_its_checkpoint_and_succeeds(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Busy past the chunk's own retries (3): before, the job failed STORE_BUSY and the
    # upload had to be sent again. Now it runs again from its checkpoint after a pause.
    monkeypatch.setattr(JobRunner, "BUSY_PAUSE_S", 0.01, raising=False)
    real = records_service.create_prepared
    calls = 0

    def busy_for_a_while(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if 2 <= calls <= 6:  # the second chunk, through its unit's retries and then some
            raise TransientStoreError("database is locked (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(records_service, "create_prepared", busy_for_a_while)
    rows = b"name\n" + b"".join(b"n%d\n" % i for i in range(5))
    response = await upload(service.client, rows, collection="people", chunk_size=2)
    job = await wait_done(service.client, response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["succeeded"] == 5
    page = await service.client.get("/v1/collections/people/records", params={"limit": 100})
    assert sorted(r["data"]["name"] for r in page.json()["records"]) == [f"n{i}" for i in range(5)]


async def test_a_job_whose_database_stays_busy_fails_with_store_busy_in_the_end(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobRunner, "BUSY_PAUSE_S", 0.01, raising=False)

    def always_busy(*args: Any, **kwargs: Any) -> None:
        raise TransientStoreError("database is locked (injected)")

    monkeypatch.setattr(records_service, "create_prepared", always_busy)
    response = await upload(service.client, b"name\nada\n", collection="people")
    job = await wait_done(service.client, response.json()["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "STORE_BUSY"
