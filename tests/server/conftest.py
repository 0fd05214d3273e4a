"""Fixtures for service tests: the real app (lifespan, store, migrations) on both backends,
driven in-process over ASGI with httpx, one fresh tenant per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.settings import Settings
from batchops.store.base import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend (PostgreSQL: the session's fresh database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@dataclass
class Service:
    """A running app with a client authenticated as a fresh tenant."""

    app: FastAPI
    client: httpx.AsyncClient
    store: Store
    tenant: str
    key: str
    settings: Settings
    extra_clients: list[httpx.AsyncClient] = field(default_factory=list)

    async def client_for(self, tenant: str) -> httpx.AsyncClient:
        """Another client, authenticated as ``tenant``."""
        key, _ = await self.store.run(lambda tx: create_api_key(tx, tenant))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        )
        self.extra_clients.append(client)
        return client


def settings_for(db_url: str, **overrides: object) -> Settings:
    """Test settings: no first-key banner, generous limits unless a test says otherwise."""
    values: dict[str, object] = {"db_url": db_url, "print_first_key": False}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings for the ``service`` fixture (override this fixture to change limits)."""
    return settings_for(db_url)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The real app with its lifespan, and a client for a tenant of its own."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        store: Store = app.state.services.store
        tenant = f"t_{uuid.uuid4().hex[:10]}"
        key, _ = await store.run(lambda tx: create_api_key(tx, tenant))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            svc = Service(app, client, store, tenant, key, settings)
            try:
                yield svc
            finally:
                for extra in svc.extra_clients:
                    await extra.aclose()
