"""API keys, tenant isolation and rate limits."""

from __future__ import annotations

import re

import httpx
import pytest

from batchops.server.settings import Settings
from tests.server.conftest import Service, settings_for
from tests.server.test_records_api import PEOPLE, error_of


async def test_a_request_without_a_key_is_a_401_envelope(service: Service) -> None:
    response = await service.client.get(PEOPLE, headers={"Authorization": ""})
    assert response.status_code == 401
    assert error_of(response)["code"] == "MISSING_API_KEY"


async def test_an_unknown_key_is_a_401(service: Service) -> None:
    response = await service.client.get(PEOPLE, headers={"Authorization": "Bearer bo_x_nope"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "INVALID_API_KEY"


async def test_keys_are_stored_hashed(service: Service) -> None:
    rows = await service.store.run(lambda tx: tx.list_api_keys(service.tenant))
    assert len(rows) == 1
    assert service.key not in (rows[0].key_hash, rows[0].key_id)
    assert len(rows[0].key_hash) == 64


async def test_tenant_b_cannot_read_change_or_find_tenant_a_records(service: Service) -> None:
    await service.client.post(PEOPLE, json={"id": "secret", "data": {"text": "tenant a only"}})
    other = await service.client_for("tenant-b")
    assert (await other.get(f"{PEOPLE}/secret")).status_code == 404
    assert (await other.patch(f"{PEOPLE}/secret", json={"data": {"x": 1}})).status_code == 404
    assert (await other.delete(f"{PEOPLE}/secret")).status_code == 404
    assert (await other.get(PEOPLE)).json()["records"] == []
    found = await other.post("/v1/collections/people/search", json={"query": "tenant"})
    assert found.json()["total"] == 0
    batch = await other.post(
        "/v1/batch",
        json={
            "operations": [
                {"type": "read", "collection": "people", "id": "secret"},
                {"type": "update", "collection": "people", "id": "secret", "data": {"x": 1}},
            ]
        },
    )
    assert [r["status"] for r in batch.json()["results"]] == [404, 404]
    mine = await service.client.get(f"{PEOPLE}/secret")
    assert mine.json()["data"] == {"text": "tenant a only"}


async def test_the_same_id_can_exist_in_two_tenants(service: Service) -> None:
    other = await service.client_for("tenant-b")
    assert (await service.client.post(PEOPLE, json={"id": "p", "data": {}})).status_code == 201
    assert (await other.post(PEOPLE, json={"id": "p", "data": {}})).status_code == 201


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest) -> Settings:
    marker = request.node.get_closest_marker("limits")
    overrides = dict(marker.kwargs) if marker else {}
    return settings_for(db_url, **overrides)


@pytest.mark.limits(rate_limit_requests_per_minute=3)
async def test_requests_beyond_the_per_minute_limit_get_429_with_retry_after(
    service: Service,
) -> None:
    statuses = [(await service.client.get(PEOPLE)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await service.client.get(PEOPLE)
    assert int(limited.headers["Retry-After"]) >= 1
    assert error_of(limited)["code"] == "RATE_LIMITED"


@pytest.mark.limits(rate_limit_requests_per_minute=3)
async def test_successful_responses_carry_ratelimit_headers(service: Service) -> None:
    response = await service.client.get(PEOPLE)
    assert response.headers["RateLimit-Policy"].startswith('"requests";q=3;w=60, ')
    assert re.fullmatch(r'"requests";r=2;t=([1-9]|[1-5][0-9]|60)', response.headers["RateLimit"])


@pytest.mark.limits(rate_limit_requests_per_minute=5)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("GET", "/v1/webhooks"),
        ("GET", "/v1/jobs/nope"),
        ("GET", f"{PEOPLE}/nope"),
        ("POST", "/v1/batch"),
    ],
)
async def test_every_answer_after_the_key_is_checked_carries_ratelimit_headers(
    service: Service, method: str, path: str
) -> None:
    # Found by schemathesis (tests/contract): the jobs and webhooks routes, and every error
    # answered once the key was known (a 404, a 415), carried none.
    response = await service.client.request(method, path)
    assert response.headers["RateLimit-Policy"].startswith('"requests";q=5;w=60'), (
        response.status_code,
        response.text,
    )
    assert response.headers["RateLimit"].startswith('"requests";r=4;t=')


async def test_a_401_carries_no_ratelimit_headers(service: Service) -> None:
    response = await service.client.get("/v1/jobs", headers={"Authorization": ""})
    assert response.status_code == 401
    assert "RateLimit" not in response.headers
    assert "RateLimit-Policy" not in response.headers


@pytest.mark.limits(rate_limit_requests_per_minute=2)
async def test_a_429_carries_ratelimit_headers_showing_the_spent_budget(
    service: Service,
) -> None:
    for _ in range(2):
        assert (await service.client.get(PEOPLE)).status_code == 200
    limited = await service.client.get(PEOPLE)
    assert limited.status_code == 429
    assert limited.headers["RateLimit-Policy"].startswith('"requests";q=2;w=60')
    service_limit = limited.headers["RateLimit"]
    assert service_limit.startswith('"requests";r=0;t=')
    assert 1 <= int(service_limit.rpartition("t=")[2]) <= 60


@pytest.mark.limits(rate_limit_operations_per_minute=5)
async def test_a_batch_larger_than_the_whole_operations_budget_gets_429_with_headers(
    service: Service,
) -> None:
    ops = [{"type": "create", "collection": "people", "data": {"i": i}} for i in range(6)]
    response = await service.client.post("/v1/batch", json={"operations": ops})
    assert response.status_code == 429
    assert '"operations";q=5;w=60' in response.headers["RateLimit-Policy"]
    # Nothing was counted: the whole budget remains.
    assert response.headers["RateLimit"].endswith('"operations";r=5;t=0')
    assert error_of(response)["details"] == {"limit": 5, "operations": 6}


@pytest.mark.limits(rate_limit_operations_per_minute=10)
async def test_a_batch_counts_each_of_its_operations_against_the_limit(
    service: Service,
) -> None:
    ops = [{"type": "create", "collection": "people", "data": {"i": i}} for i in range(6)]
    first = await service.client.post("/v1/batch", json={"operations": ops})
    assert first.status_code == 200
    second = await service.client.post("/v1/batch", json={"operations": ops})
    assert second.status_code == 429
    assert "Retry-After" in second.headers
    listed = await service.client.get(PEOPLE, params={"limit": "100"})
    assert len(listed.json()["records"]) == 6


async def test_a_revoked_key_stops_working(service: Service, db_url: str) -> None:
    rows = await service.store.run(lambda tx: tx.list_api_keys(service.tenant))
    await service.store.run(lambda tx: tx.revoke_api_key(rows[0].key_id, "2026-01-01T00:00:00Z"))
    # A new app instance has no auth cache, as after the revocation's cache TTL.
    from batchops.server.app import create_app

    app = create_app(settings_for(db_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {service.key}"},
        ) as client,
    ):
        assert (await client.get(PEOPLE)).status_code == 401
