"""The only code in batchops that speaks SQL: the Store protocol and its two backends.

>>> async def main() -> None:
...     store = await open_store("sqlite:///batchops.db")   # or "postgresql://user@host/db"
...     try:
...         n = await store.run(lambda tx: tx.count_api_keys())
...     finally:
...         await store.close()

:func:`open_store` runs the schema migrations before it returns (see
:mod:`batchops.store.migrate`).
"""

from __future__ import annotations

import asyncio

from batchops.store._url import DEFAULT_SQLITE_PATH, parse_store_url, sqlite_url
from batchops.store.base import (
    DEFAULT_STATEMENT_TIMEOUT_MS,
    ApiKeyRow,
    Dialect,
    DuplicateRecordError,
    IdempotencyRow,
    RecordRow,
    Store,
    Tx,
)
from batchops.store.migrate import applied_migrations, migrate
from batchops.store.postgres import PostgresStore
from batchops.store.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "DEFAULT_STATEMENT_TIMEOUT_MS",
    "ApiKeyRow",
    "Dialect",
    "DuplicateRecordError",
    "IdempotencyRow",
    "PostgresStore",
    "RecordRow",
    "SQLiteStore",
    "Store",
    "Tx",
    "applied_migrations",
    "migrate",
    "open_store",
    "parse_store_url",
    "sqlite_url",
]


async def open_store(
    url: str | None = None,
    *,
    busy_timeout_ms: int = 5000,
    pool_size: int | None = None,
    connect_timeout_s: float = 10.0,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    index_search: bool = True,
) -> Store:
    """Open the store a URL names, after bringing its schema up to date.

    ``url``: ``None`` (``batchops.db`` in the working directory), ``sqlite:///path.db``, a
    bare file path, or ``postgresql://user@host:port/db``. ``busy_timeout_ms`` applies to
    SQLite; ``pool_size`` (connections = threads; None: twice the cores plus one, 4 to 32)
    and ``connect_timeout_s`` to PostgreSQL;
    ``statement_timeout_ms`` (0: none) bounds every statement on both. ``index_search``
    False: PostgreSQL's search indexer does not run in the background (searches still find
    every record, evaluating the unindexed ones on the fly; see ``store.pg_search``).
    """
    dialect, target = parse_store_url(url)
    await asyncio.to_thread(migrate, url)
    if dialect == "sqlite":
        return await SQLiteStore.open(
            target, busy_timeout_ms=busy_timeout_ms, statement_timeout_ms=statement_timeout_ms
        )
    return await PostgresStore.open(
        target,
        pool_size=pool_size,
        connect_timeout_s=connect_timeout_s,
        statement_timeout_ms=statement_timeout_ms,
        index_search=index_search,
    )
