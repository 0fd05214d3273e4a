"""Migrations: recorded, and harmless to run again."""

from __future__ import annotations

import asyncio

from batchops.store import applied_migrations, migrate, open_store
from batchops.store.migrate import MIGRATIONS_DIR


async def test_migrations_run_twice_are_harmless_and_the_version_is_recorded(
    store_url: str,
) -> None:
    await asyncio.to_thread(migrate, store_url)
    assert await asyncio.to_thread(migrate, store_url) == []
    dialect = "postgresql" if store_url.startswith("postgres") else "sqlite"
    # Every shipped step, in file order (several features add steps; list them from disk).
    expected = sorted(path.stem for path in (MIGRATIONS_DIR / dialect).glob("*.sql"))
    assert expected[0] == "0001_initial"
    assert any(name.endswith("_jobs") for name in expected)
    assert await asyncio.to_thread(applied_migrations, store_url) == expected


async def test_reopening_a_store_keeps_its_data(store_url: str, tenant: str) -> None:
    from batchops.store import ApiKeyRow

    key = ApiKeyRow("k_" + tenant, tenant, "h_" + tenant, None, "2026-01-01T00:00:00.000Z")
    first = await open_store(store_url)
    await first.run(lambda tx: tx.insert_api_key(key))
    await first.close()
    second = await open_store(store_url)
    try:
        assert await second.run(lambda tx: tx.find_api_key(key.key_hash)) == key
    finally:
        await second.close()
