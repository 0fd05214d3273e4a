"""Fixtures for SDK tests: a REAL server over TCP on both backends, a fault proxy, a key.

``live`` runs the real app under uvicorn in a background thread of the test process (its
own event loop), listening on a free port; the test talks to it over TCP like any client.
``db_url`` is the server suite's fixture (SQLite file + the session's PostgreSQL).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.store import RecordRow, Store, open_store
from tests.client.fault_proxy import FaultProxy
from tests.server.conftest import db_url, settings_for

__all__ = ["db_url"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving_in_thread(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, in a thread of its own (a test's
    blocking client, or Playwright's sync API, keeps the test's thread); its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.05)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Live:
    """A running server: its URL and database."""

    url: str
    db_url: str


@pytest.fixture
def live(db_url: str, request: pytest.FixtureRequest) -> Iterator[Live]:
    """The real app under uvicorn on a free port (rate limits off unless ``limits``)."""
    marker = request.node.get_closest_marker("limits")
    overrides: dict[str, object] = {
        "rate_limit_requests_per_minute": 0,
        "rate_limit_operations_per_minute": 0,
    }
    if marker is not None:
        overrides.update(marker.kwargs)
    with serving_in_thread(create_app(settings_for(db_url, **overrides))) as url:
        yield Live(url, db_url)


@pytest.fixture
async def store(live: Live) -> AsyncIterator[Store]:
    """A second connection to the server's database, to check what it really holds."""
    opened = await open_store(live.db_url, pool_size=1)
    try:
        yield opened
    finally:
        await opened.close()


@dataclass
class Tenant:
    """A fresh tenant and its API key."""

    name: str
    key: str


@pytest.fixture
async def tenant_key(store: Store) -> Tenant:
    """A key for a tenant of this test's own (isolation on the shared PostgreSQL db)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    key, _ = await store.run(lambda tx: create_api_key(tx, name))
    return Tenant(name, key)


@pytest.fixture
async def proxy(live: Live) -> AsyncIterator[FaultProxy]:
    """A fault-injecting HTTP proxy in front of ``live`` (no faults until configured)."""
    p = FaultProxy(live.url)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def all_records(store: Store, tenant: str, collection: str) -> list[RecordRow]:
    """Every live record of a collection, read from the database (paged by id)."""
    rows: list[RecordRow] = []
    after: str | None = None
    while True:
        page = await store.run(
            lambda tx, after=after: tx.list_records(  # type: ignore[misc]
                tenant, collection, filters={}, after_id=after, limit=1000
            )
        )
        rows.extend(page)
        if len(page) < 1000:
            return rows
        after = page[-1].id
