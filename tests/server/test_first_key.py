"""The key created on first start: one, however many servers start at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchops.server.auth import create_first_key
from batchops.store import Store, open_store
from tests.conftest import fresh_database, make_sqlite_url

STARTERS = 10


@pytest.fixture(params=["sqlite", "postgresql"])
async def starters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Ten stores, each with connections of its own, on one database with no key yet
    (ten servers starting at once)."""

    async def open_all(url: str) -> AsyncIterator[list[Store]]:
        stores = [await open_store(url, pool_size=1) for _ in range(STARTERS)]
        try:
            yield stores
        finally:
            for store in stores:
                await store.close()

    if request.param == "sqlite":
        async for stores in open_all(make_sqlite_url(tmp_path / "keys.db")):
            yield stores
    else:
        with fresh_database() as url:
            async for stores in open_all(url):
                yield stores


async def test_concurrent_first_starts_create_exactly_one_key(starters: list[Store]) -> None:
    created = await asyncio.gather(*(store.run(create_first_key) for store in starters))

    keys = [key for key in created if key is not None]
    assert len(keys) == 1
    assert await starters[0].run(lambda tx: tx.count_api_keys()) == 1
    rows = await starters[0].run(lambda tx: tx.list_api_keys(None))
    assert [(row.tenant, row.name) for row in rows] == [("default", "created on first start")]


async def test_no_first_key_is_created_where_a_key_exists(starters: list[Store]) -> None:
    assert await starters[0].run(create_first_key) is not None

    assert await starters[1].run(create_first_key) is None
    assert await starters[1].run(lambda tx: tx.count_api_keys()) == 1
