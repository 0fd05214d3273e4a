"""SQLite checkpoints run in a thread of their own, and a closed store leaves no WAL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from batchops.store import RecordRow, open_store
from batchops.store.base import Tx
from batchops.store.sqlite import WAL_SAFETY_PAGES, SQLiteStore, SQLiteTx

MakeRecord = Callable[..., RecordRow]


def wal_pages(path: Path) -> tuple[int, int]:
    """(pages in the WAL, pages of it copied into the database file), read from outside."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log), int(copied)
    finally:
        conn.close()


async def write_rows(store: SQLiteStore, make_record: MakeRecord, count: int) -> None:
    blob = "x" * 2000
    for start in range(0, count, 100):
        rows = [make_record(f"r{i:06d}", {"blob": blob}) for i in range(start, start + 100)]

        def insert(tx: Tx, rows: list[RecordRow] = rows) -> None:
            tx.insert_records(rows)

        await store.run(insert)


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, Path]]:
    """A SQLite store on a fresh file, and the file's path; closed after the test."""
    path = tmp_path / "store.db"
    store = await open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    try:
        yield store, path
    finally:
        await store.close()  # idempotent: a test may close it first


async def test_commits_leave_the_checkpoint_to_a_thread_of_its_own(
    opened: tuple[SQLiteStore, Path], make_record: MakeRecord
) -> None:
    store, path = opened
    threshold = await store.run(
        lambda tx: _as_sqlite(tx)._execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    )
    assert threshold == WAL_SAFETY_PAGES
    size_before = _size(path)
    await write_rows(store, make_record, 2000)  # ~4 MB: far past SQLite's 1,000 pages
    for _ in range(100):  # the checkpointer copies the WAL into the database file
        if _size(path) > size_before + 3_000_000:
            break
        await asyncio.sleep(0.05)
    assert _size(path) > size_before + 3_000_000
    checkpointers = [t for t in _threads() if t == "batchops-sqlite-checkpoint"]
    assert checkpointers == ["batchops-sqlite-checkpoint"]


async def test_a_closed_store_leaves_the_database_whole_and_the_wal_empty(
    opened: tuple[SQLiteStore, Path], make_record: MakeRecord
) -> None:
    store, path = opened
    await write_rows(store, make_record, 500)
    await store.close()
    assert _size(Path(f"{path}-wal")) == 0
    assert wal_pages(path) == (0, 0)
    assert "batchops-sqlite-checkpoint" not in _threads()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 500
    finally:
        conn.close()


def _as_sqlite(tx: Tx) -> SQLiteTx:
    assert isinstance(tx, SQLiteTx)
    return tx


def _size(path: Path) -> int:
    """The file's size in bytes, 0 when it does not exist."""
    return path.stat().st_size if path.exists() else 0


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate()]
