"""Driver errors become StoreError / TransientStoreError; close() is idempotent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from batchops import StoreError, TransientStoreError
from batchops.store import ApiKeyRow, Store, open_store, sqlite_url


async def test_a_busy_sqlite_database_raises_transient_after_the_retries(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = await open_store(sqlite_url(path), busy_timeout_ms=5)
    calls = 0

    def fn(tx: object) -> str:
        nonlocal calls
        calls += 1
        return "ran"

    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock longer than busy_timeout
        with pytest.raises(TransientStoreError, match="busy"):
            await store.run(fn, retries=2)
        assert calls == 0
        blocker.execute("ROLLBACK")
        assert await store.run(fn) == "ran"
    finally:
        blocker.close()
        await store.close()


async def test_a_held_row_lock_on_postgresql_is_transient(pg_url: str, tenant: str) -> None:
    store = await open_store(pg_url, pool_size=1)
    key = ApiKeyRow("k_" + tenant, tenant, "h_" + tenant, None, "2026-01-01T00:00:00.000Z")
    await store.run(lambda tx: tx.insert_api_key(key))
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT 1 FROM api_keys WHERE key_id = %s FOR UPDATE", (key.key_id,))
        try:
            with pytest.raises(TransientStoreError):
                await store.run(lambda tx: _revoke_after_lock_timeout(tx, key.key_id), retries=1)
        finally:
            holder.rollback()
            await store.close()


def _revoke_after_lock_timeout(tx: object, key_id: str) -> bool:
    from batchops.store.postgres import PostgresTx

    assert isinstance(tx, PostgresTx)
    # lock_timeout makes the waiting UPDATE fail with lock_not_available.
    tx._execute("SET LOCAL lock_timeout = '20ms'")
    return tx.revoke_api_key(key_id, "2026-01-01T00:00:00.000Z")


async def test_other_database_errors_become_store_error(store: Store, tenant: str) -> None:
    key = ApiKeyRow("k_" + tenant, tenant, "h_" + tenant, None, "2026-01-01T00:00:00.000Z")
    await store.run(lambda tx: tx.insert_api_key(key))
    with pytest.raises(StoreError) as info:
        await store.run(lambda tx: tx.insert_api_key(key))
    assert not isinstance(info.value, TransientStoreError)
    assert info.value.__cause__ is not None


async def test_close_is_idempotent_and_run_after_close_is_a_store_error(store: Store) -> None:
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.run(lambda tx: None)
