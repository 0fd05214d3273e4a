"""Migrations: recorded, harmless to run again, and applied to databases holding data."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg.types.json import Jsonb
from tests.conftest import database_at

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


async def test_the_search_words_migration_reindexes_records_written_before_it(
    tenant: str,
) -> None:
    # A database at 0004 with a record in it; 0005 re-adds tsv, recomputed for that row.
    with database_at("0005") as url:
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO records (tenant, collection, id, data, version, created_at, "
                "updated_at, search_text) VALUES (%s, 'people', 'a', %s, 1, '', '', %s)",
                (tenant, Jsonb({"email": "u7@x.org"}), "u7@x.org"),
            )
            before = conn.execute(
                "SELECT tsv @@ plainto_tsquery('simple', 'u7 x org') FROM records"
            ).fetchone()
        assert before == (False,)  # the old tsv holds one token 'u7@x.org'
        assert "0005_search_words" in await asyncio.to_thread(migrate, url)
        store = await open_store(url, pool_size=1)
        try:
            hits, total = await store.run(
                lambda tx: tx.search_records(
                    tenant, "people", query="u7@x.org", filters={}, limit=10
                )
            )
        finally:
            await store.close()
        assert [row.id for row, _ in hits] == ["a"]
        assert total == 1
