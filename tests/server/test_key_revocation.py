"""A revoked API key is refused on the next request, by every process (both backends).

Each app below has already served the key (so its in-process auth cache holds it), then
the key is revoked elsewhere — another process, as ``batchops keys revoke`` is — and the
very next request must be a 401 that wrote nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from batchops.server._ids import now_iso
from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.settings import Settings
from batchops.store import Store, open_store
from tests.server.conftest import Service

PEOPLE = "/v1/collections/people/records"


@pytest.fixture
async def second_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """Another app on the same database: another process, as far as caches go."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def elsewhere(settings: Settings) -> AsyncIterator[Store]:
    """A store of its own on the same database (the CLI's view)."""
    store = await open_store(settings.db_url, pool_size=1)
    try:
        yield store
    finally:
        await store.close()


async def _revoke(store: Store, key_id: str) -> None:
    assert await store.run(lambda tx: tx.revoke_api_key(key_id, now_iso()))


def _key_id(key: str) -> str:
    return key.split("_")[1]


REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", PEOPLE, None),
    ("GET", f"{PEOPLE}/p1", None),
    ("POST", PEOPLE, {"data": {"n": 2}}),
    ("PATCH", f"{PEOPLE}/p1", {"data": {"n": 3}}),
    ("DELETE", f"{PEOPLE}/p1", None),
    ("POST", "/v1/collections/people/search", {"query": "x"}),
    ("POST", "/v1/batch", {"operations": [{"type": "create", "collection": "people", "data": {}}]}),
    (
        "POST",
        "/v1/batch",
        {"operations": [{"type": "update", "collection": "people", "id": "p1", "data": {}}]},
    ),
    ("POST", "/v1/bulk/update", {"collection": "people", "filter": {}, "update": {"n": 4}}),
    ("POST", "/v1/bulk/delete", {"collection": "people", "filter": {}}),
    ("GET", "/v1/jobs", None),
    ("GET", "/v1/webhooks", None),
]


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
async def test_the_next_request_after_a_revocation_elsewhere_is_a_401_that_changes_nothing(
    service: Service, elsewhere: Store, method: str, path: str, body: dict[str, Any] | None
) -> None:
    created = await service.client.post(PEOPLE, json={"id": "p1", "data": {"n": 1}})
    assert created.status_code == 201  # the key is in the auth cache now
    await _revoke(elsewhere, _key_id(service.key))

    response = await service.client.request(method, path, json=body)

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "INVALID_API_KEY"
    rows = await elsewhere.run(
        lambda tx: tx.list_records(service.tenant, "people", filters={}, after_id=None, limit=10)
    )
    assert [(r.id, r.data, r.version) for r in rows] == [("p1", {"n": 1}, 1)]


async def test_a_revocation_through_one_app_is_seen_by_another_at_once(
    service: Service, second_app: FastAPI
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=second_app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {service.key}"},
    ) as other:
        assert (await other.get(PEOPLE)).status_code == 200
        assert (await service.client.get(PEOPLE)).status_code == 200
        await _revoke(service.store, _key_id(service.key))
        assert (await other.get(PEOPLE)).status_code == 401
        assert (await service.client.get(PEOPLE)).status_code == 401


async def test_other_keys_keep_working_after_one_is_revoked(
    service: Service, elsewhere: Store
) -> None:
    key, row = await elsewhere.run(lambda tx: create_api_key(tx, service.tenant, "second"))
    await _revoke(elsewhere, _key_id(service.key))
    response = await service.client.get(PEOPLE, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert row.tenant == service.tenant
