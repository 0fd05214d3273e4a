"""SQLite defers full-text indexing: inserts skip it, search and idle time catch it up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from batchops.store import RecordRow, open_store
from batchops.store.sqlite import SQLiteStore, SQLiteTx

MakeRecord = Callable[..., RecordRow]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await open_store(f"sqlite:///{tmp_path / 'deferred.db'}")
    assert isinstance(store, SQLiteStore)
    try:
        yield store
    finally:
        await store.close()


def watermark(tx: object) -> int:
    assert isinstance(tx, SQLiteTx)
    return tx.fts_watermark()


def fts_rows(tx: object) -> int:
    assert isinstance(tx, SQLiteTx)
    return int(tx._execute("SELECT count(*) FROM records_fts_docsize").fetchone()[0])


async def test_an_insert_leaves_its_rows_unindexed(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    sqlite_store.IDLE_BEFORE_INDEXING_S = 3600
    await sqlite_store.run(lambda tx: tx.insert_records([make_record("a", {"t": "apple"})]))
    assert await sqlite_store.run(fts_rows) == 0
    assert await sqlite_store.run(watermark) == 0


async def test_search_indexes_pending_rows_first_so_new_rows_are_found(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    sqlite_store.IDLE_BEFORE_INDEXING_S = 3600

    def insert_then_search(tx: object) -> list[str]:
        assert isinstance(tx, SQLiteTx)
        tx.insert_records([make_record("a", {"t": "apple"}), make_record("b", {"t": "pear"})])
        hits, _ = tx.search_records(tenant, "people", query="apple", filters={}, limit=10)
        return [row.id for row, _ in hits]

    assert await sqlite_store.run(insert_then_search) == ["a"]
    assert await sqlite_store.run(fts_rows) == 2


async def test_an_update_of_a_pending_row_is_indexed_with_its_new_text(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    sqlite_store.IDLE_BEFORE_INDEXING_S = 3600
    row = make_record("a", {"t": "apple"})
    await sqlite_store.run(lambda tx: tx.insert_records([row]))
    row.data = {"t": "cherry"}
    row.version = 2  # a write bumps the version
    await sqlite_store.run(lambda tx: tx.update_records([row]))

    async def total(query: str) -> int:
        _, found = await sqlite_store.run(
            lambda tx: tx.search_records(tenant, "people", query=query, filters={}, limit=5)
        )
        return found

    assert await total("apple") == 0
    assert await total("cherry") == 1


async def test_a_reused_rowid_after_a_hard_delete_is_still_indexed(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    sqlite_store.IDLE_BEFORE_INDEXING_S = 3600
    await sqlite_store.run(
        lambda tx: tx.insert_records([make_record("a", {"t": "x"}), make_record("b", {"t": "y"})])
    )
    await sqlite_store.run(
        lambda tx: tx.search_records(tenant, "people", query="x", filters={}, limit=1)
    )
    assert await sqlite_store.run(watermark) == 2
    await sqlite_store.run(lambda tx: tx.delete_records(tenant, "people", ["b"]))
    assert await sqlite_store.run(watermark) == 1
    await sqlite_store.run(lambda tx: tx.insert_records([make_record("c", {"t": "zebra"})]))
    hits, total = await sqlite_store.run(
        lambda tx: tx.search_records(tenant, "people", query="zebra", filters={}, limit=5)
    )
    assert [row.id for row, _ in hits] == ["c"]
    assert total == 1


async def test_an_idle_store_indexes_pending_rows_in_the_background(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    sqlite_store.IDLE_BEFORE_INDEXING_S = 0.05
    await sqlite_store.run(
        lambda tx: tx.insert_records([make_record(f"r{i}", {"t": "w"}) for i in range(50)])
    )
    # Each look is itself work that keeps the store busy, so look less often than the idle
    # threshold.
    for _ in range(40):
        await asyncio.sleep(0.25)
        if await sqlite_store.run(fts_rows) == 50:
            break
    assert await sqlite_store.run(fts_rows) == 50
