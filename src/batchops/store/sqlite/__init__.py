"""The SQLite store (being split into one module per concept; see the next commit)."""

from __future__ import annotations

from batchops.store.sqlite.tx import (
    WAL_SAFETY_PAGES,
    WAL_SIZE_LIMIT_BYTES,
    SQLiteStore,
    SQLiteTx,
    _filter_sql,
)

__all__ = ["WAL_SAFETY_PAGES", "WAL_SIZE_LIMIT_BYTES", "SQLiteStore", "SQLiteTx", "_filter_sql"]
