"""``GET /metrics``: each metric moves by exactly what the traffic did, labels are bounded
(route templates, never ids), and the endpoint's own access rules (token, port, no API
key, no rate limit, not in the OpenAPI document). On both backends."""

from __future__ import annotations

import json

import httpx
import pytest

from batchops.server.observability.metrics import UNMATCHED
from tests.jobs.conftest import upload, wait_done
from tests.server.observability.conftest import Service, scrape
from tests.webhooks.webhook_receiver import run_receiver, wait_deliveries

RECORD = "/v1/collections/{collection}/records/{record_id}"
REQUESTS = "batchops_http_requests_total"


async def test_requests_are_counted_by_route_template_method_and_status(
    service: Service,
) -> None:
    client = service.client
    created = await client.post("/v1/collections/people/records", json={"data": {"n": 1}})
    record_id = created.json()["id"]
    before = await scrape(client)

    for _ in range(3):
        assert (await client.get(f"/v1/collections/people/records/{record_id}")).status_code == 200
    missing = await client.get("/v1/collections/people/records/rec_nobody")
    assert missing.status_code == 404

    after = await scrape(client)
    ok = {"route": RECORD, "method": "GET", "status": "200"}
    not_found = {"route": RECORD, "method": "GET", "status": "404"}
    assert after.value(REQUESTS, **ok) - before.value(REQUESTS, **ok) == 3
    assert after.value(REQUESTS, **not_found) - before.value(REQUESTS, **not_found) == 1
    count = "batchops_http_request_duration_seconds_count"
    timed = {"route": RECORD, "method": "GET"}
    assert after.value(count, **timed) - before.value(count, **timed) == 4


async def test_no_label_carries_an_id_or_a_raw_path(service: Service) -> None:
    client = service.client
    created = await client.post("/v1/collections/people/records", json={"data": {"n": 1}})
    record_id = created.json()["id"]
    await client.get(f"/v1/collections/people/records/{record_id}")
    before = await scrape(client)
    for path in ("/no/such/thing-1", "/no/such/thing-2", "/v1/nowhere/xyz-3"):
        assert (await client.get(path)).status_code == 404

    after = await scrape(client)
    unmatched = {"route": UNMATCHED, "method": "GET", "status": "404"}
    assert after.value(REQUESTS, **unmatched) - before.value(REQUESTS, **unmatched) == 3
    values = after.label_values()
    assert not [v for v in values if record_id in v or "thing" in v or "xyz" in v]
    assert not [v for v in values if service.tenant in v]
    routes = {labels["route"] for labels in after.labels(REQUESTS)}
    assert all(r == UNMATCHED or r.startswith("/") for r in routes)


async def test_a_batch_counts_its_size_duration_and_operations_by_type_and_outcome(
    service: Service,
) -> None:
    client = service.client
    before = await scrape(client)
    operations = [
        {"type": "create", "collection": "people", "data": {"n": i}} for i in range(3)
    ] + [{"type": "read", "collection": "people", "id": "rec_nobody"}]
    response = await client.post("/v1/batch", json={"operations": operations})
    assert response.status_code == 207

    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("batchops_batch_operations_total", type="create", outcome="succeeded") == 3
    assert delta("batchops_batch_operations_total", type="read", outcome="failed") == 1
    assert delta("batchops_batch_size_operations_count", mode="whole") == 1
    assert delta("batchops_batch_size_operations_sum", mode="whole") == 4
    assert delta("batchops_batch_duration_seconds_count", mode="whole") == 1
    assert delta(REQUESTS, route="/v1/batch", method="POST", status="207") == 1


async def test_a_streamed_batch_is_counted_as_a_stream(service: Service) -> None:
    client = service.client
    before = await scrape(client)
    operations = [{"type": "create", "collection": "people", "data": {"n": i}} for i in range(2)]
    response = await client.post(
        "/v1/batch", json={"operations": operations}, headers={"Accept": "application/x-ndjson"}
    )
    assert response.status_code == 200

    after = await scrape(client)
    name = "batchops_batch_operations_total"
    labels = {"type": "create", "outcome": "succeeded"}
    assert after.value(name, **labels) - before.value(name, **labels) == 2
    count = "batchops_batch_size_operations_count"
    assert after.value(count, mode="stream") - before.value(count, mode="stream") == 1


async def test_store_units_of_work_are_timed_by_backend(service: Service) -> None:
    client = service.client
    backend = service.store.dialect
    before = await scrape(client)
    await client.post("/v1/collections/people/records", json={"data": {"n": 1}})

    after = await scrape(client)
    name = "batchops_store_run_seconds_count"
    # The create is one unit (its key check included); the runner may run others meanwhile.
    assert after.value(name, backend=backend, outcome="ok") > before.value(
        name, backend=backend, outcome="ok"
    )
    assert {labels["backend"] for labels in after.labels(name)} <= {"sqlite", "postgresql"}


@pytest.mark.limits(rate_limit_requests_per_minute=2)
async def test_rate_limited_requests_are_counted_by_limit(service: Service) -> None:
    client = service.client
    before = await scrape(client)
    statuses = [(await client.get("/v1/collections/people/records")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]

    after = await scrape(client)
    name = "batchops_rate_limited_requests_total"
    assert after.value(name, limit="requests") - before.value(name, limit="requests") == 1


@pytest.mark.limits(role="api")
async def test_the_jobs_gauge_counts_jobs_by_type_and_state_at_the_scrape(
    service: Service,
) -> None:
    client = service.client
    before = await scrape(client)
    operations = [{"type": "create", "collection": "people", "data": {"n": 1}}]
    for _ in range(2):  # an api process runs no job: they stay queued
        response = await client.post(
            "/v1/batch", json={"operations": operations}, headers={"Prefer": "respond-async"}
        )
        assert response.status_code == 202

    after = await scrape(client)
    queued = {"type": "batch", "state": "queued"}
    assert after.value("batchops_jobs", **queued) - before.value("batchops_jobs", **queued) == 2
    assert {tuple(sorted(labels)) for labels in after.labels("batchops_jobs")} == {
        ("state", "type")
    }


@pytest.mark.limits(
    allow_private_webhooks=True,
    webhook_retry_base_s=0.05,
    webhook_poll_s=0.05,
    webhook_max_attempts=4,
)
async def test_a_job_counts_its_rows_duration_and_webhook_deliveries(service: Service) -> None:
    client = service.client
    before = await scrape(client)
    csv = b"email,age\na@x.org,1\nb@x.org,not-a-number\nc@x.org,3\n"
    async with run_receiver("s3cret-s3cret-s3cret", fail_first=1) as receiver:
        hook = {"url": receiver.url, "secret": "s3cret-s3cret-s3cret"}
        response = await upload(
            client,
            csv,
            collection="imported",
            notification_webhook=json.dumps(hook),
            validation="lenient",
            mapping=json.dumps({"age": {"field": "age", "type": "int"}}),
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        job = await wait_done(client, job_id)
        await wait_deliveries(client, f"/v1/jobs/{job_id}/deliveries")

    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert (job["succeeded"], job["failed"]) == (2, 1)
    assert delta("batchops_job_rows_total", type="import", outcome="succeeded") == 2
    assert delta("batchops_job_rows_total", type="import", outcome="failed") == 1
    assert delta("batchops_job_duration_seconds_count", type="import", state="succeeded") == 1
    assert delta("batchops_webhook_deliveries_total", outcome="retrying") == 1
    assert delta("batchops_webhook_deliveries_total", outcome="succeeded") == 1
    assert delta(REQUESTS, route="/v1/jobs/{job_id}", method="GET", status="200") >= 1
    assert not [v for v in after.label_values() if job_id in v]


@pytest.mark.limits(metrics_token="scrape-me")
async def test_metrics_wants_the_bearer_token_when_one_is_set(service: Service) -> None:
    client = service.client  # its Authorization header carries an API key, not the token
    assert (await client.get("/metrics")).status_code == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert wrong.json()["error"]["code"] == "INVALID_METRICS_TOKEN"
    samples = await scrape(client, Authorization="Bearer scrape-me")
    assert samples.labels(REQUESTS)


@pytest.mark.limits(rate_limit_requests_per_minute=1)
async def test_metrics_takes_no_api_key_and_is_not_rate_limited(service: Service) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app), base_url="http://test"
    ) as anonymous:
        statuses = [(await anonymous.get("/metrics")).status_code for _ in range(3)]
        assert (await anonymous.get("/v1/collections/people/records")).status_code == 401
    assert statuses == [200, 200, 200]


@pytest.mark.limits(metrics_port=9464)
async def test_with_a_metrics_port_metrics_is_served_there_alone(service: Service) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app), base_url="http://test:9464"
    ) as on_port:
        assert (await on_port.get("/metrics")).status_code == 200
        elsewhere = await on_port.get(
            "/v1/collections/people/records", headers={"Authorization": f"Bearer {service.key}"}
        )
        assert elsewhere.status_code == 404
        assert elsewhere.json()["error"]["code"] == "NOT_FOUND"
    assert (await service.client.get("/metrics")).status_code == 404
    assert (await service.client.get("/v1/collections/people/records")).status_code == 200


async def test_metrics_answers_only_get_and_head(service: Service) -> None:
    refused = await service.client.post("/metrics")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    head = await service.client.head("/metrics")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0


async def test_metrics_is_not_in_the_openapi_document(service: Service) -> None:
    document = (await service.client.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]
