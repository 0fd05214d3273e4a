"""POST /v1/batch with ``Prefer: respond-async``: a ``batch`` job whose results are the
synchronous answer, on both backends."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.jobs.conftest import Service, wait_done
from tests.server.test_batch_runs import run_calls

ASYNC = {"Prefer": "respond-async"}


def _batch(prefix: str) -> dict[str, Any]:
    return {
        "operations": [
            {"type": "create", "collection": "people", "id": f"{prefix}-1", "data": {"n": 1}},
            {"type": "create", "collection": "people", "id": f"{prefix}-2", "data": {"n": 2}},
            {
                "ref": "up",
                "type": "update",
                "collection": "people",
                "id": f"{prefix}-1",
                "data": {"team": "core"},
            },
            {"type": "read", "collection": "people", "id": "missing"},
            {"type": "read", "collection": "people", "id": "${up.body.id}"},
            {"type": "list", "collection": "people", "options": {"filters": {"team": "core"}}},
        ]
    }


def _comparable(payload: Any) -> Any:
    """The payload without what differs between two runs: timings and timestamps."""
    if isinstance(payload, dict):
        return {
            k: _comparable(v)
            for k, v in payload.items()
            if k not in ("duration_ms", "created_at", "updated_at")
        }
    if isinstance(payload, list):
        return [_comparable(v) for v in payload]
    return payload


async def _results(client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    job = await wait_done(client, job_id)
    assert job["state"] == "succeeded", job
    return await client.get(f"/v1/jobs/{job_id}/results")


@pytest.mark.parametrize("atomic", [False, True])
async def test_an_async_batch_answers_202_and_its_results_equal_the_sync_answer(
    service: Service, atomic: bool
) -> None:
    body = _batch("p")
    body["options"] = {"atomic": atomic}
    headers = {"X-Batch-Id": "same-batch"}
    sync = await service.client.post("/v1/batch", json=body, headers=headers)
    other = await service.client_for(f"t_async_twin_{uuid.uuid4().hex[:8]}")
    queued = await other.post("/v1/batch", json=body, headers={**headers, **ASYNC})
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert (job["type"], job["state"], job["total"]) == ("batch", "queued", 6)
    assert queued.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["links"]["results"] == f"/v1/jobs/{job['id']}/results"
    results = await _results(other, job["id"])
    assert results.status_code == 200
    assert results.headers["batch-status"] == str(sync.status_code)
    assert _comparable(results.json()) == _comparable(sync.json())
    final = (await other.get(f"/v1/jobs/{job['id']}")).json()
    meta = sync.json()["meta"]
    assert (final["processed"], final["succeeded"], final["failed"]) == (
        6,
        meta["succeeded"],
        meta["failed"] + meta["skipped"],
    )
    if atomic:
        assert results.json()["committed"] is False
        assert (await other.get("/v1/collections/people/records/p-1")).status_code == 404
    else:
        assert sync.status_code == 207
        record = (await other.get("/v1/collections/people/records/p-1")).json()
        assert (record["version"], record["data"]) == (2, {"n": 1, "team": "core"})


async def test_an_idempotency_key_replay_returns_the_same_job(service: Service) -> None:
    headers = {**ASYNC, "Idempotency-Key": "async-1"}
    first = await service.client.post("/v1/batch", json=_batch("i"), headers=headers)
    assert first.status_code == 202
    job_id = first.json()["id"]
    await wait_done(service.client, job_id)
    again = await service.client.post("/v1/batch", json=_batch("i"), headers=headers)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == job_id
    assert again.json()["state"] == "succeeded"  # the job as it is now
    jobs = (await service.client.get("/v1/jobs", params={"type": "batch"})).json()["jobs"]
    assert [j["id"] for j in jobs] == [job_id]  # it ran once
    reused = await service.client.post("/v1/batch", json=_batch("other"), headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.limits(role="api")
async def test_results_before_the_job_finishes_answer_409_job_not_finished(
    service: Service,
) -> None:
    queued = await service.client.post("/v1/batch", json=_batch("q"), headers=ASYNC)
    assert queued.status_code == 202
    response = await service.client.get(f"/v1/jobs/{queued.json()['id']}/results")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "JOB_NOT_FINISHED"
    assert error["details"]["state"] == "queued"
    assert response.headers["retry-after"] == "1"
    cancelled = await service.client.post(f"/v1/jobs/{queued.json()['id']}/cancel")
    assert cancelled.json()["state"] == "cancelled"
    response = await service.client.get(f"/v1/jobs/{queued.json()['id']}/results")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "NO_RESULTS")


async def test_a_malformed_async_batch_is_rejected_at_once(service: Service) -> None:
    response = await service.client.post(
        "/v1/batch", json={"operations": [{"type": "nope"}], "bogus": 1}, headers=ASYNC
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_BATCH_REQUEST"
    assert (await service.client.get("/v1/jobs")).json()["jobs"] == []


async def test_another_tenant_cannot_see_an_async_batch_or_its_results(service: Service) -> None:
    queued = await service.client.post("/v1/batch", json=_batch("s"), headers=ASYNC)
    job_id = queued.json()["id"]
    await wait_done(service.client, job_id)
    other = await service.client_for(f"t_async_peer_{uuid.uuid4().hex[:8]}")
    for path in ("", "/results", "/events"):
        response = await other.get(f"/v1/jobs/{job_id}{path}")
        assert response.status_code == 404, path


async def test_events_of_an_async_batch_end_with_complete(service: Service) -> None:
    queued = await service.client.post("/v1/batch", json=_batch("e"), headers=ASYNC)
    job_id = queued.json()["id"]
    await wait_done(service.client, job_id)
    response = await service.client.get(f"/v1/jobs/{job_id}/events")
    events = [line for line in response.text.splitlines() if line.startswith(("event:", "data:"))]
    assert events[-2].startswith("event: complete")
    assert orjson.loads(events[-1][5:])["processed"] == 6


async def test_an_async_batch_of_plain_creates_is_written_as_runs_and_answers_as_the_sync_one(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = run_calls(monkeypatch)
    body = {
        "operations": [
            {"type": "create", "collection": "people", "id": f"c-{n}", "data": {"n": n}}
            for n in range(3)
        ]
    }
    headers = {"X-Batch-Id": "creates"}
    sync = await service.client.post("/v1/batch", json=body, headers=headers)
    other = await service.client_for(f"t_async_runs_{uuid.uuid4().hex[:8]}")
    queued = await other.post("/v1/batch", json=body, headers={**headers, **ASYNC})
    assert queued.status_code == 202, queued.text
    results = await _results(other, queued.json()["id"])
    assert runs == [3, 3]  # the synchronous batch, then the job
    assert results.headers["batch-status"] == "200"
    assert _comparable(results.json()) == _comparable(sync.json())
    assert (await other.get("/v1/collections/people/records/c-2")).json()["data"] == {"n": 2}
