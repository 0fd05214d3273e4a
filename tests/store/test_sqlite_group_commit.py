"""SQLite group commit: units of work that queue up while the database thread is busy run
in one transaction, each in its own savepoint, and commit together."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from batchops._exceptions import TransientStoreError
from batchops.store import RecordRow, open_store
from batchops.store.base import Tx
from batchops.store.sqlite import SQLiteStore, SQLiteTx

MakeRecord = Callable[..., RecordRow]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await open_store(f"sqlite:///{tmp_path / 'group.db'}")
    assert isinstance(store, SQLiteStore)
    store.IDLE_BEFORE_INDEXING_S = 3600  # no background indexing transactions
    try:
        yield store
    finally:
        await store.close()


class Blocker:
    """A unit of work that holds the database thread until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, tx: Tx) -> str:
        self.started.set()
        assert self.release.wait(10)
        return "blocker"


async def statements(store: SQLiteStore) -> list[str]:
    """Every statement the store's connection runs from now on (for the test to read)."""
    seen: list[str] = []

    def trace(tx: Tx) -> None:
        assert isinstance(tx, SQLiteTx)
        tx._conn.set_trace_callback(seen.append)

    await store.run(trace)
    seen.clear()
    return seen


async def queue_behind_blocker(
    store: SQLiteStore, units: list[Callable[[Tx], Any]]
) -> tuple[Blocker, list[asyncio.Task[Any]]]:
    blocker = Blocker()
    first = asyncio.create_task(store.run(blocker))
    await asyncio.to_thread(blocker.started.wait, 10)
    tasks = [asyncio.create_task(store.run(unit)) for unit in units]
    await asyncio.sleep(0.05)  # every task has queued its unit
    return blocker, [first, *tasks]


def insert(make_record: MakeRecord, record_id: str) -> Callable[[Tx], str]:
    def unit(tx: Tx) -> str:
        tx.insert_records([make_record(record_id, {"n": record_id})])
        return record_id

    return unit


async def stored(store: SQLiteStore, tenant: str) -> list[str]:
    rows = await store.run(
        lambda tx: tx.list_records(tenant, "people", filters={}, after_id=None, limit=100)
    )
    return sorted(row.id for row in rows)


async def test_units_queued_while_the_thread_is_busy_commit_together(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    seen = await statements(sqlite_store)
    blocker, tasks = await queue_behind_blocker(
        sqlite_store, [insert(make_record, f"r{i}") for i in range(5)]
    )
    blocker.release.set()
    results = await asyncio.gather(*tasks)
    assert results == ["blocker", "r0", "r1", "r2", "r3", "r4"]
    assert seen.count("COMMIT") == 2  # the blocker alone, then the five together
    assert seen.count("SAVEPOINT batchops_unit") == 5
    assert await stored(sqlite_store, tenant) == ["r0", "r1", "r2", "r3", "r4"]


async def test_a_unit_that_fails_in_a_group_is_rolled_back_alone(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    def insert_then_fail(tx: Tx) -> None:
        tx.insert_records([make_record("doomed", {"n": 0})])
        raise ValueError("this unit fails after writing")

    blocker, tasks = await queue_behind_blocker(
        sqlite_store,
        [insert(make_record, "before"), insert_then_fail, insert(make_record, "after")],
    )
    blocker.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[1::2] == ["before", "after"]
    assert isinstance(results[2], ValueError)
    assert await stored(sqlite_store, tenant) == ["after", "before"]


async def test_a_unit_cancelled_while_queued_never_runs(
    sqlite_store: SQLiteStore, tenant: str, make_record: MakeRecord
) -> None:
    blocker, tasks = await queue_behind_blocker(
        sqlite_store, [insert(make_record, "cancelled"), insert(make_record, "kept")]
    )
    tasks[1].cancel()
    blocker.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert await stored(sqlite_store, tenant) == ["kept"]


async def test_a_busy_database_fails_the_whole_group_and_retries_run_it_again(
    tmp_path: Path, tenant: str, make_record: MakeRecord
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'busy.db'}", busy_timeout_ms=50)
    assert isinstance(store, SQLiteStore)
    store.IDLE_BEFORE_INDEXING_S = 3600
    other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    try:
        # Hold the database thread outside any transaction while the group queues up.
        blocker = Blocker()
        held = asyncio.create_task(store._call(lambda: blocker(None)))  # type: ignore[arg-type]
        await asyncio.to_thread(blocker.started.wait, 10)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        failing = [asyncio.create_task(store.run(insert(make_record, f"f{i}"))) for i in (1, 2)]
        retried = asyncio.create_task(store.run(insert(make_record, "retried"), retries=20))
        await asyncio.sleep(0.05)
        blocker.release.set()
        await held
        results = await asyncio.gather(*failing, return_exceptions=True)
        assert [type(r) for r in results] == [TransientStoreError, TransientStoreError]
        other.execute("COMMIT")
        assert await retried == "retried"
        assert await stored(store, tenant) == ["retried"]
    finally:
        other.close()
        await store.close()
