"""The GraphQL tests run on the service fixtures of tests/server: the real app with its
lifespan on both backends (``db_url`` is parametrised ``sqlite`` / ``postgresql``), a
fresh tenant per test. ``spy`` records the store calls the app makes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from batchops.server.settings import Settings
from batchops.store.base import Tx
from tests.server.conftest import Service, db_url, service, settings_for

__all__ = ["StoreSpy", "db_url", "gql", "seed", "service", "settings", "spy"]

T = TypeVar("T")


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """POST one operation; the response (asserted 200)."""
    body: dict[str, Any] = {"query": query, **extra}
    if variables is not None:
        body["variables"] = variables
    response = await client.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def seed(service: Service, collection: str, records: dict[str, dict[str, Any]]) -> None:
    """Create ``records`` (id → data) through /v1/batch."""
    operations = [
        {"type": "create", "collection": collection, "id": record_id, "data": data}
        for record_id, data in records.items()
    ]
    response = await service.client.post("/v1/batch", json={"operations": operations})
    assert response.status_code == 200, response.text


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest) -> Settings:
    """The service's settings, with a test's ``@pytest.mark.limits(...)`` overrides."""
    marker = request.node.get_closest_marker("limits")
    return settings_for(db_url, **(dict(marker.kwargs) if marker else {}))


@dataclass
class StoreSpy:
    """What the app asked of its store: units of work, and each ``get_records``
    (collection, ids) and multi-row insert (collection, count) made in them."""

    runs: int = 0
    reads: list[tuple[str, list[str]]] = field(default_factory=list)
    inserts: list[tuple[str, int]] = field(default_factory=list)

    def reset(self) -> None:
        self.runs = 0
        self.reads.clear()
        self.inserts.clear()


class _SpyTx:
    def __init__(self, tx: Tx, spy: StoreSpy) -> None:
        self._tx, self._spy = tx, spy

    def get_records(self, tenant: str, collection: str, ids: Any, *args: Any, **kw: Any) -> Any:
        self._spy.reads.append((collection, list(ids)))
        return self._tx.get_records(tenant, collection, ids, *args, **kw)

    def insert_encoded(self, tenant: str, collection: str, ids: Any, *a: Any, **kw: Any) -> Any:
        self._spy.inserts.append((collection, len(ids)))
        return self._tx.insert_encoded(tenant, collection, ids, *a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class _SpyStore:
    def __init__(self, inner: Any, spy: StoreSpy) -> None:
        self._inner, self._spy = inner, spy

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        self._spy.runs += 1
        spied: T = await self._inner.run(
            lambda tx: fn(_SpyTx(tx, self._spy)),  # type: ignore[arg-type,unused-ignore]
            retries=retries,
        )
        return spied

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def spy(service: Service) -> Iterator[StoreSpy]:
    """Record the store calls of the requests made while the test runs."""
    services = service.app.state.services
    inner = services.store
    recorded = StoreSpy()
    services.store = _SpyStore(inner, recorded)
    try:
        yield recorded
    finally:
        services.store = inner
