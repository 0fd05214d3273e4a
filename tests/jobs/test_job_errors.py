"""A job the database refuses ends with the store's own error code, never INTERNAL_ERROR
(both backends)."""

from __future__ import annotations

from typing import Any

import pytest

from batchops._exceptions import StoreInputError, StoreTimeoutError
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
