"""Structured logs: one access line per request with every field, in JSON and text;
``X-Request-Id`` taken when sane, generated otherwise, echoed always; a job's life as lines
that carry its id. On both backends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchops.server.jobs import runner as runner_module
from batchops.server.observability.logs import formatter
from batchops.store.base import Store
from tests.jobs.conftest import upload, wait_done
from tests.jobs.test_job_context import ended, queue, store
from tests.jobs.test_job_leases import claim_as, lapse, running
from tests.server.observability.conftest import Service

__all__ = ["store"]

FIELDS = {
    "method",
    "path",
    "status",
    "duration_ms",
    "bytes",
    "request_id",
    "tenant",
    "key_id",
    "batch_id",
}


class Line:
    """A captured record's ``extra`` fields as attributes (typed: LogRecord has none)."""

    def __init__(self, record: logging.LogRecord) -> None:
        self.record = record
        self.fields: dict[str, Any] = vars(record)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


def access_lines(caplog: pytest.LogCaptureFixture) -> list[Line]:
    return [Line(r) for r in caplog.records if r.name == "batchops.access"]


def job_lines(caplog: pytest.LogCaptureFixture, job_id: str) -> list[Line]:
    return [
        Line(r)
        for r in caplog.records
        if r.name == "batchops.jobs" and vars(r).get("job_id") == job_id
    ]


async def test_a_request_writes_one_access_line_with_every_field(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.access")
    created = await service.client.post("/v1/collections/people/records", json={"data": {}})
    record_id = created.json()["id"]
    response = await service.client.get(f"/v1/collections/people/records/{record_id}")

    line = access_lines(caplog)[-1]
    assert len(access_lines(caplog)) == 2
    assert set(line.fields) >= FIELDS
    assert (line.method, line.path, line.status) == (
        "GET",
        "/v1/collections/{collection}/records/{record_id}",
        200,
    )
    assert line.bytes == len(response.content)
    assert line.duration_ms > 0
    assert line.tenant == service.tenant
    assert service.key.startswith(f"bo_{line.key_id}_")
    assert line.request_id == response.headers["x-request-id"]
    assert line.batch_id is None


async def test_a_batch_access_line_carries_the_batch_id(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.access")
    operations = [{"type": "create", "collection": "people", "data": {}}]
    response = await service.client.post(
        "/v1/batch", json={"operations": operations}, headers={"X-Batch-Id": "nightly-7"}
    )
    assert response.status_code == 200

    (line,) = access_lines(caplog)
    assert (line.path, line.status, line.batch_id) == ("/v1/batch", 200, "nightly-7")
    assert line.tenant == service.tenant


async def test_a_request_without_a_valid_key_logs_no_tenant(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.access")
    response = await service.client.get(
        "/v1/collections/people/records", headers={"Authorization": "Bearer bo_nope_nope"}
    )
    assert response.status_code == 401

    (line,) = access_lines(caplog)
    assert (line.status, line.tenant, line.key_id) == (401, None, None)


async def test_the_json_format_renders_the_access_line_as_one_object(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.access")
    await service.client.get("/v1/collections/people/records")
    (line,) = access_lines(caplog)

    rendered = formatter("json").format(line.record)

    assert "\n" not in rendered
    parsed = orjson.loads(rendered)
    assert FIELDS | {"timestamp", "level", "logger", "event"} <= set(parsed)
    assert (parsed["logger"], parsed["event"], parsed["level"]) == (
        "batchops.access",
        "request",
        "info",
    )
    assert (parsed["path"], parsed["status"]) == ("/v1/collections/{collection}/records", 200)
    assert parsed["tenant"] == service.tenant


async def test_the_text_format_renders_the_access_line_as_key_value_pairs(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.access")
    response = await service.client.get("/v1/collections/people/records")
    (line,) = access_lines(caplog)

    rendered = formatter("text").format(line.record)

    assert "\n" not in rendered
    assert "batchops.access: request" in rendered
    for pair in (
        "method=GET",
        "path=/v1/collections/{collection}/records",
        "status=200",
        f"bytes={len(response.content)}",
        f"request_id={response.headers['x-request-id']}",
        f"tenant={service.tenant}",
        f"key_id={line.key_id}",
        "duration_ms=",
    ):
        assert pair in rendered


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log_format"):
        formatter("xml")


async def test_a_sane_request_id_is_taken_and_echoed(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.access")
    response = await service.client.get("/healthz", headers={"X-Request-Id": "trace-abc_123:z"})

    assert response.headers["x-request-id"] == "trace-abc_123:z"
    assert access_lines(caplog)[-1].request_id == "trace-abc_123:z"


async def test_a_missing_request_id_is_generated_anew_for_each_request(
    service: Service,
) -> None:
    first = (await service.client.get("/healthz")).headers["x-request-id"]
    second = (await service.client.get("/healthz")).headers["x-request-id"]

    assert len(first) == 32
    assert int(first, 16) >= 0
    assert first != second


@pytest.mark.parametrize(
    "hostile",
    ["x" * 129, "a\x01b", "tab\there", "with space", "del\x7f", "caf\u00e9", ""],
    ids=["too-long", "control", "tab", "space", "del", "non-ascii", "empty"],
)
async def test_a_hostile_request_id_is_replaced(service: Service, hostile: str) -> None:
    response = await service.client.get(
        "/healthz", headers=[(b"x-request-id", hostile.encode("latin-1"))]
    )

    echoed = response.headers["x-request-id"]
    assert echoed != hostile
    assert len(echoed) == 32
    assert int(echoed, 16) >= 0


async def test_an_error_answer_echoes_the_request_id_too(service: Service) -> None:
    response = await service.client.get("/no/such/path", headers={"X-Request-Id": "req-404"})

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "req-404"


async def test_a_jobs_life_is_logged_with_its_id(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.jobs")
    response = await upload(service.client, b"email\na@x.org\nb@x.org\n", collection="people")
    job_id = response.json()["id"]
    job = await wait_done(service.client, job_id)
    assert job["state"] == "succeeded"

    lines = job_lines(caplog, job_id)
    assert [r.job_event for r in lines] == ["queued", "claimed", "started", "succeeded"]
    assert {r.job_type for r in lines} == {"import"}
    assert all(r.record.getMessage() == f"job {r.job_event}" for r in lines)
    end = lines[-1]
    assert (end.processed, end.succeeded, end.failed) == (2, 2, 0)
    assert end.duration_s >= 0


async def test_a_job_taken_over_from_a_dead_server_says_so_and_logs_its_progress(
    store: Store,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.jobs")
    monkeypatch.setattr(runner_module, "PROGRESS_EVERY_S", 0.0)  # a line after every chunk
    job_id = await queue(store, "count", steps=3)
    await lapse(store, await claim_as(store, "dead-server"))

    async with running(store, tmp_path, job_lease_s=30.0):
        job = await ended(store, job_id)
    assert job.state == "succeeded"

    lines = job_lines(caplog, job_id)
    events = [r.job_event for r in lines]
    assert events[:2] == ["taken over", "started"]
    assert events[-1] == "succeeded"
    assert events[2:-1] == ["progress"] * 3  # the kind's three chunks; then it finishes
    assert lines[0].attempt == 2
    assert [r.processed for r in lines[2:-1]] == [1, 2, 3]


@pytest.mark.limits(role="api")
async def test_a_queued_job_cancelled_by_the_route_logs_its_end(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchops.jobs")
    operations = [{"type": "create", "collection": "people", "data": {}}]
    response = await service.client.post(
        "/v1/batch", json={"operations": operations}, headers={"Prefer": "respond-async"}
    )
    job_id = response.json()["id"]  # an api process runs no job: it stays queued

    assert (await service.client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 202

    assert [r.job_event for r in job_lines(caplog, job_id)] == ["queued", "cancelled"]
