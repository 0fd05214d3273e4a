"""The SQLite store: the embedded default, one module per concept.

- :mod:`.store`: :class:`SQLiteStore`, which puts the parts together;
- :mod:`.writer`: the one database thread, ``BEGIN IMMEDIATE`` transactions, group commit;
- :mod:`.tx`: :class:`SQLiteTx`, the SQL that differs from PostgreSQL's in behaviour
  (the rest is written once in :mod:`batchops.store.sql`);
- :mod:`.fts`: the deferred FTS5 index;
- :mod:`.checkpoint`: WAL checkpoints from a thread of their own;
- :mod:`.watch`: the time bound on the writer's statements;
- :mod:`.errors`: sqlite3 errors classified once.
"""

from __future__ import annotations

from batchops.store.sqlite.checkpoint import WAL_SAFETY_PAGES, WAL_SIZE_LIMIT_BYTES
from batchops.store.sqlite.store import SQLiteStore
from batchops.store.sqlite.tx import SQLiteTx

__all__ = ["WAL_SAFETY_PAGES", "WAL_SIZE_LIMIT_BYTES", "SQLiteStore", "SQLiteTx"]
