"""Webhook deliveries, end to end on both backends: a real receiver on 127.0.0.1 verifies
signatures, answers 500 and sees the retries; deliveries survive a restart."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.settings import Settings
from batchops.store.base import Store, WebhookRow
from tests.jobs.conftest import Service, upload, wait_done
from tests.webhooks.webhook_receiver import run_receiver, wait_deliveries

SECRET = "s3cret-s3cret-s3cret"
FAST = {
    "allow_private_webhooks": True,
    "webhook_retry_base_s": 0.05,
    "webhook_poll_s": 0.05,
    "webhook_max_attempts": 4,
}
CSV = b"email\na@x.org\nb@x.org\nc@x.org\n"


@pytest.mark.limits(**FAST)
async def test_a_job_webhook_is_signed_retried_after_500s_and_every_attempt_is_visible(
    service: Service,
) -> None:
    async with run_receiver(SECRET, fail_first=2) as receiver:
        hook = {"url": receiver.url, "secret": SECRET}
        response = await upload(
            service.client, CSV, collection="hooked", notification_webhook=json.dumps(hook)
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        job = await wait_done(service.client, job_id)
        # The outbox row commits with the job's final state: it is there as soon as the job is.
        first = (await service.client.get(f"/v1/jobs/{job_id}/deliveries")).json()["deliveries"]
        assert [d["event"] for d in first] == ["job.succeeded"]

        (delivery,) = await wait_deliveries(service.client, f"/v1/jobs/{job_id}/deliveries")
        (payload,) = await receiver.wait_accepted(1)

    assert delivery["state"] == "succeeded"
    assert delivery["attempt_count"] == 3
    assert delivery["url"] == receiver.url
    attempts = delivery["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert all(a["error"] is None and a["duration_ms"] >= 0 for a in attempts)
    assert attempts[0]["next_retry_at"] is not None
    assert attempts[1]["next_retry_at"] is not None
    assert attempts[2]["next_retry_at"] is None
    assert receiver.rejected == 0
    assert [h["X-Batchops-Attempt"] for h in receiver.headers] == ["1", "2", "3"]
    assert {h["X-Batchops-Delivery"] for h in receiver.headers} == {delivery["id"]}
    assert payload["delivery_id"] == delivery["id"]
    assert payload["event"] == "job.succeeded"
    summary = payload["job"]
    assert summary["id"] == job_id
    assert (summary["type"], summary["state"], summary["collection"]) == (
        "import",
        "succeeded",
        "hooked",
    )
    assert (summary["total"], summary["processed"], summary["succeeded"], summary["failed"]) == (
        3,
        3,
        3,
        0,
    )
    assert summary["finished_at"] == job["finished_at"]
    assert "secret" not in json.dumps(job)


@pytest.mark.limits(**FAST)
async def test_a_receiver_checking_another_secret_rejects_every_attempt_until_it_fails(
    service: Service,
) -> None:
    async with run_receiver("not-the-secret-at-all") as receiver:
        hook = {"url": receiver.url, "secret": SECRET}
        response = await upload(
            service.client, CSV, collection="wrong", notification_webhook=json.dumps(hook)
        )
        job_id = response.json()["id"]
        await wait_done(service.client, job_id)
        (delivery,) = await wait_deliveries(service.client, f"/v1/jobs/{job_id}/deliveries")
    assert receiver.accepted == []
    assert receiver.rejected == 4
    assert delivery["state"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [401, 401, 401, 401]
    assert delivery["next_attempt_at"] is None


@pytest.mark.limits(**FAST)
async def test_a_subscription_hears_its_tenants_jobs_for_the_events_it_chose(
    service: Service,
) -> None:
    async with run_receiver(SECRET) as receiver:
        created = await service.client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "events": ["job.failed", "job.cancelled"], "secret": SECRET},
        )
        assert created.status_code == 201, created.text
        webhook_id = created.json()["id"]
        other = await service.client_for(f"{service.tenant}_other")
        theirs = await upload(other, b"a,b\n1,2,3\n", collection="theirs")
        ok = await upload(service.client, CSV, collection="fine")
        bad = await upload(service.client, b"a,b\n1,2,3\n", collection="broken")
        for client, r in ((other, theirs), (service.client, ok), (service.client, bad)):
            await wait_done(client, r.json()["id"])
        deliveries = await wait_deliveries(service.client, f"/v1/webhooks/{webhook_id}/deliveries")
        (payload,) = await receiver.wait_accepted(1)
    assert [(d["job_id"], d["event"], d["state"]) for d in deliveries] == [
        (bad.json()["id"], "job.failed", "succeeded")
    ]
    assert payload["job"]["id"] == bad.json()["id"]
    assert payload["job"]["error"]["code"] == "VALIDATION_FAILED"
    assert payload["webhook_id"] == webhook_id
    assert (await other.get(f"/v1/jobs/{theirs.json()['id']}/deliveries")).json() == {
        "deliveries": []
    }


@pytest.mark.limits(webhook_retry_base_s=0.05, webhook_poll_s=0.05, webhook_max_attempts=1)
async def test_a_target_that_turned_private_is_refused_at_delivery_time(service: Service) -> None:
    async with run_receiver(SECRET) as receiver:
        # As if the name had resolved to a public address at registration (DNS changed).
        row = WebhookRow(
            id=f"wh_{uuid.uuid4().hex}",
            tenant=service.tenant,
            url=receiver.url,
            events=["job.succeeded"],
            secret=SECRET,
            created_at="2026-01-01T00:00:00.000Z",
        )
        await service.store.run(lambda tx: tx.insert_webhook(row))
        job_id = (await upload(service.client, CSV, collection="c")).json()["id"]
        await wait_done(service.client, job_id)
        (delivery,) = await wait_deliveries(service.client, f"/v1/jobs/{job_id}/deliveries")
    assert receiver.hits == receiver.rejected == 0
    assert delivery["state"] == "failed"
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused:")
    assert "loopback" in attempt["error"]


async def test_a_delivery_pending_at_shutdown_is_sent_after_a_restart(settings: Settings) -> None:
    settings = settings.replace(
        allow_private_webhooks=True,
        webhook_poll_s=0.05,
        webhook_max_attempts=50,
        webhook_retry_base_s=0.02,
        webhook_retry_max_s=0.05,
    )
    tenant = f"t_{uuid.uuid4().hex[:10]}"
    async with run_receiver(SECRET, fail_first=10_000) as receiver:
        for round_ in (1, 2):
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                store: Store = app.state.services.store
                key, _ = await store.run(lambda tx: create_api_key(tx, tenant))
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://test",
                    headers={"Authorization": f"Bearer {key}"},
                ) as client:
                    if round_ == 1:
                        hook = {"url": receiver.url, "secret": SECRET}
                        r = await upload(
                            client, CSV, collection="c", notification_webhook=json.dumps(hook)
                        )
                        job_id = r.json()["id"]
                        await wait_done(client, job_id)
                        await receiver.wait_hits(1)
                        continue  # shut down with the delivery pending (the receiver fails)
                    receiver.fail_first = 0  # the receiver is back
                    (delivery,) = await wait_deliveries(client, f"/v1/jobs/{job_id}/deliveries")
                    await receiver.wait_accepted(1)
    assert delivery["state"] == "succeeded"
    codes = [a["status_code"] for a in delivery["attempts"]]
    assert codes[0] == 500
    assert codes[-1] == 204
    assert set(codes[:-1]) == {500}
    assert [a["attempt"] for a in delivery["attempts"]] == list(range(1, len(codes) + 1))
