"""``notification_webhook`` on bulk update/delete and on async batches, on both backends: a
real receiver on 127.0.0.1 verifies the signatures (see tests/webhooks/webhook_receiver.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.jobs.conftest import Service, records, wait_done
from tests.webhooks.webhook_receiver import run_receiver, wait_deliveries

SECRET = "s3cret-s3cret-s3cret"
PUBLIC = "http://93.184.215.14/hook"  # a literal public address: no DNS in tests
PRIVATE = "http://127.0.0.1:9/hook"
FAST = {"allow_private_webhooks": True, "webhook_retry_base_s": 0.05, "webhook_poll_s": 0.05}
ASYNC = {"Prefer": "respond-async"}


async def _seed(client: httpx.AsyncClient, collection: str, items: list[dict[str, Any]]) -> None:
    ops = [{"type": "create", "collection": collection, "data": d} for d in items]
    response = await client.post("/v1/batch", json={"operations": ops})
    assert response.status_code == 200, response.text


def _creates(n: int) -> dict[str, Any]:
    return {
        "operations": [
            {"type": "create", "collection": "people", "id": f"p-{i}", "data": {"n": i}}
            for i in range(n)
        ]
    }


async def _jobs(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = (await client.get("/v1/jobs")).json()["jobs"]
    return jobs


# -- bulk update / delete --------------------------------------------------------------------


@pytest.mark.limits(**FAST)
async def test_a_small_bulk_update_with_a_webhook_runs_as_a_job_and_delivers_a_signed_summary(
    service: Service,
) -> None:
    await _seed(service.client, "people", [{"n": i, "status": "draft"} for i in range(3)])
    async with run_receiver(SECRET) as receiver:
        response = await service.client.post(
            "/v1/bulk/update",
            json={
                "collection": "people",
                "filter": {"status": "draft"},
                "update": {"archived": True},
                "notification_webhook": {"url": receiver.url, "secret": SECRET},
            },
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert response.headers["location"] == f"/v1/jobs/{job_id}"
        job = await wait_done(service.client, job_id)
        (delivery,) = await wait_deliveries(service.client, f"/v1/jobs/{job_id}/deliveries")
        (payload,) = await receiver.wait_accepted(1)
    assert receiver.rejected == 0
    assert delivery["state"] == "succeeded"
    assert payload["event"] == "job.succeeded"
    assert payload["delivery_id"] == delivery["id"]
    summary = payload["job"]
    assert (summary["id"], summary["type"], summary["state"]) == (
        job_id,
        "bulk_update",
        "succeeded",
    )
    assert (summary["total"], summary["processed"], summary["succeeded"], summary["failed"]) == (
        3,
        3,
        3,
        0,
    )
    assert summary["finished_at"] == job["finished_at"]
    assert all(r["data"]["archived"] is True for r in await records(service.client, "people"))
    assert SECRET not in (await service.client.get(f"/v1/jobs/{job_id}")).text


@pytest.mark.limits(**FAST)
async def test_a_bulk_delete_by_ids_with_a_webhook_delivers_its_counts_with_the_ids_not_found(
    service: Service,
) -> None:
    await _seed(service.client, "people", [{"n": i} for i in range(2)])
    ids = [r["id"] for r in await records(service.client, "people")]
    async with run_receiver(SECRET) as receiver:
        response = await service.client.post(
            "/v1/bulk/delete",
            json={
                "collection": "people",
                "ids": [*ids, "missing"],
                "notification_webhook": {"url": receiver.url, "secret": SECRET},
            },
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        await wait_done(service.client, job_id)
        (payload,) = await receiver.wait_accepted(1)
    summary = payload["job"]
    assert (summary["id"], summary["type"], summary["state"]) == (
        job_id,
        "bulk_delete",
        "succeeded",
    )
    assert (summary["processed"], summary["succeeded"], summary["failed"]) == (3, 2, 1)
    assert await records(service.client, "people") == []


@pytest.mark.limits(**FAST)
async def test_a_bulk_update_with_a_webhook_that_matches_nothing_still_notifies_its_end(
    service: Service,
) -> None:
    async with run_receiver(SECRET) as receiver:
        response = await service.client.post(
            "/v1/bulk/update",
            json={
                "collection": "nobody",
                "filter": {},
                "update": {"x": 1},
                "notification_webhook": {"url": receiver.url, "secret": SECRET},
            },
        )
        assert response.status_code == 202, response.text
        (payload,) = await receiver.wait_accepted(1)
    summary = payload["job"]
    assert (summary["state"], summary["total"], summary["processed"]) == ("succeeded", 0, 0)


@pytest.mark.limits(**FAST)
async def test_a_bulk_job_webhook_is_not_called_for_an_event_it_did_not_choose(
    service: Service,
) -> None:
    await _seed(service.client, "people", [{"n": 1}])
    async with run_receiver(SECRET) as receiver:
        hook = {"url": receiver.url, "secret": SECRET, "events": ["job.failed"]}
        response = await service.client.post(
            "/v1/bulk/delete",
            json={"collection": "people", "filter": {}, "notification_webhook": hook},
        )
        job = await wait_done(service.client, response.json()["id"])
        deliveries = await service.client.get(f"/v1/jobs/{job['id']}/deliveries")
    assert job["state"] == "succeeded"
    assert deliveries.json() == {"deliveries": []}
    assert receiver.hits == receiver.rejected == 0


async def test_a_bulk_request_with_a_null_notification_webhook_runs_inline(
    service: Service,
) -> None:
    await _seed(service.client, "people", [{"n": 1}])
    response = await service.client.post(
        "/v1/bulk/update",
        json={
            "collection": "people",
            "filter": {},
            "update": {"seen": True},
            "notification_webhook": None,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == 1
    assert await _jobs(service.client) == []


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("update", {"collection": "people", "filter": {}, "update": {"x": 1}}),
        ("delete", {"collection": "people", "filter": {}}),
    ],
)
async def test_a_bulk_request_with_a_private_webhook_is_refused_and_changes_nothing(
    service: Service, operation: str, body: dict[str, Any]
) -> None:
    await _seed(service.client, "people", [{"n": 1}])
    hook = {"url": PRIVATE, "secret": SECRET}
    response = await service.client.post(
        f"/v1/bulk/{operation}", json={**body, "notification_webhook": hook}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert error["details"]["path"] == "notification_webhook.url"
    assert await _jobs(service.client) == []
    (record,) = await records(service.client, "people")
    assert (record["version"], record["data"]) == (1, {"n": 1})


@pytest.mark.parametrize(
    ("hook", "path"),
    [
        ("not an object", "notification_webhook"),
        ({"url": PUBLIC}, "notification_webhook.secret"),
        ({"url": PUBLIC, "secret": "short"}, "notification_webhook.secret"),
        ({"url": "mailto:a@b", "secret": SECRET}, "notification_webhook.url"),
        ({"url": PUBLIC, "secret": SECRET, "events": ["job.x"]}, "notification_webhook.events"),
        ({"url": PUBLIC, "secret": SECRET, "colour": "red"}, "notification_webhook.colour"),
    ],
)
@pytest.mark.parametrize("operation", ["update", "delete"])
async def test_a_bad_notification_webhook_on_a_bulk_request_is_422_naming_the_field(
    service: Service, operation: str, hook: Any, path: str
) -> None:
    body: dict[str, Any] = {"collection": "people", "filter": {}, "notification_webhook": hook}
    if operation == "update":
        body["update"] = {"x": 1}
    response = await service.client.post(f"/v1/bulk/{operation}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["path"] == path
    assert await _jobs(service.client) == []


# -- async batches ----------------------------------------------------------------------------


@pytest.mark.limits(**FAST)
async def test_an_async_batch_with_a_webhook_delivers_a_signed_summary_when_it_ends(
    service: Service,
) -> None:
    async with run_receiver(SECRET) as receiver:
        body = {**_creates(2), "notification_webhook": {"url": receiver.url, "secret": SECRET}}
        response = await service.client.post("/v1/batch", json=body, headers=ASYNC)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        await wait_done(service.client, job_id)
        (delivery,) = await wait_deliveries(service.client, f"/v1/jobs/{job_id}/deliveries")
        (payload,) = await receiver.wait_accepted(1)
    assert receiver.rejected == 0
    assert delivery["state"] == "succeeded"
    assert payload["event"] == "job.succeeded"
    summary = payload["job"]
    assert (summary["id"], summary["type"], summary["state"]) == (job_id, "batch", "succeeded")
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (2, 2, 0)
    results = await service.client.get(f"/v1/jobs/{job_id}/results")
    assert results.headers["batch-status"] == "200"
    assert len(await records(service.client, "people")) == 2


@pytest.mark.limits(role="api")
async def test_an_async_batchs_stored_input_keeps_no_copy_of_the_webhook_secret(
    service: Service,
) -> None:
    body = {**_creates(1), "notification_webhook": {"url": PUBLIC, "secret": SECRET}}
    response = await service.client.post("/v1/batch", json=body, headers=ASYNC)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    stored = await service.store.run(lambda tx: tx.get_job_result(job_id, 0))
    assert stored is not None
    assert SECRET.encode() not in stored
    assert b'"operations"' in stored
    assert SECRET not in (await service.client.get(f"/v1/jobs/{job_id}")).text


@pytest.mark.limits(**FAST)
async def test_an_idempotent_retry_of_an_async_batch_with_a_webhook_notifies_once(
    service: Service,
) -> None:
    headers = {**ASYNC, "Idempotency-Key": "hooked-1"}
    async with run_receiver(SECRET) as receiver:
        body = {**_creates(1), "notification_webhook": {"url": receiver.url, "secret": SECRET}}
        first = await service.client.post("/v1/batch", json=body, headers=headers)
        job_id = first.json()["id"]
        await wait_done(service.client, job_id)
        again = await service.client.post("/v1/batch", json=body, headers=headers)
        deliveries = await wait_deliveries(service.client, f"/v1/jobs/{job_id}/deliveries")
        await receiver.wait_accepted(1)
    assert again.json()["id"] == job_id
    assert again.headers["idempotent-replayed"] == "true"
    assert len(deliveries) == 1
    assert len(receiver.accepted) == 1


async def test_a_synchronous_batch_with_a_webhook_is_400_and_runs_nothing(
    service: Service,
) -> None:
    body = {**_creates(1), "notification_webhook": {"url": PUBLIC, "secret": SECRET}}
    response = await service.client.post("/v1/batch", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_BATCH_REQUEST"
    assert error["details"]["path"] == "notification_webhook"
    assert "respond-async" in error["message"]
    assert await records(service.client, "people") == []


async def test_an_async_batch_with_a_private_webhook_is_refused_and_queues_nothing(
    service: Service,
) -> None:
    body = {**_creates(1), "notification_webhook": {"url": PRIVATE, "secret": SECRET}}
    response = await service.client.post("/v1/batch", json=body, headers=ASYNC)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert error["details"]["path"] == "notification_webhook.url"
    assert await _jobs(service.client) == []
    assert await records(service.client, "people") == []


@pytest.mark.parametrize(
    ("hook", "path"),
    [
        (["not", "an", "object"], "notification_webhook"),
        ({"url": PUBLIC}, "notification_webhook.secret"),
        ({"url": "ftp://example.org/x", "secret": SECRET}, "notification_webhook.url"),
        ({"url": PUBLIC, "secret": SECRET, "events": []}, "notification_webhook.events"),
    ],
)
async def test_a_bad_notification_webhook_on_an_async_batch_is_422_naming_the_field(
    service: Service, hook: Any, path: str
) -> None:
    body = {**_creates(1), "notification_webhook": hook}
    response = await service.client.post("/v1/batch", json=body, headers=ASYNC)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["path"] == path
    assert await _jobs(service.client) == []


def _validate_only(hook: dict[str, Any]) -> dict[str, Any]:
    return {**_creates(1), "options": {"validate_only": True}, "notification_webhook": hook}


async def test_a_validate_only_async_batch_with_a_webhook_answers_at_once_and_queues_nothing(
    service: Service,
) -> None:
    body = _validate_only({"url": PUBLIC, "secret": SECRET})
    response = await service.client.post("/v1/batch", json=body, headers=ASYNC)
    assert response.status_code == 200, response.text
    assert response.json()["committed"] is False
    assert await _jobs(service.client) == []


async def test_a_validate_only_async_batch_still_refuses_a_private_webhook(
    service: Service,
) -> None:
    body = _validate_only({"url": PRIVATE, "secret": SECRET})
    response = await service.client.post("/v1/batch", json=body, headers=ASYNC)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
