"""PostgreSQL's pool is sized from settings, with a default from the core count."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from batchops.server.app import create_app
from batchops.server.settings import Settings
from batchops.store import Tx, open_store
from batchops.store.postgres import PostgresStore, default_pool_size


@pytest.mark.parametrize(("cores", "size"), [(1, 4), (2, 5), (8, 17), (64, 32), (None, 4)])
def test_the_default_pool_is_twice_the_cores_plus_one_from_4_to_32(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, size: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert default_pool_size() == size


async def test_a_store_opened_without_a_size_has_the_default_pool(pg_url: str) -> None:
    store = await open_store(pg_url)
    try:
        assert isinstance(store, PostgresStore)
        assert store.pool_size == default_pool_size()
    finally:
        await store.close()


async def test_the_pool_size_setting_bounds_the_connections_in_use_at_once(pg_url: str) -> None:
    app = create_app(Settings(db_url=pg_url, print_first_key=False, role="api", db_pool_size=3))
    async with app.router.lifespan_context(app):
        store: Any = app.state.services.store
        lock = threading.Lock()
        busy = peak = 0

        def hold(tx: Tx) -> None:
            nonlocal busy, peak
            with lock:
                busy += 1
                peak = max(peak, busy)
            tx.count_api_keys()
            threading.Event().wait(0.2)
            with lock:
                busy -= 1

        await asyncio.gather(*(store.run(hold) for _ in range(8)))
        assert peak == 3


def test_the_pool_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHOPS_DB_POOL_SIZE", "7")
    assert Settings.from_env().db_pool_size == 7
