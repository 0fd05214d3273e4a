"""Store SQL written once: one module per domain of the Tx protocol, over a small dialect.

Each domain module holds a statement set (rendered for one :class:`SqlDialect` when it is
built: once per transaction class, at import time) and a mixin with that domain's Tx
methods written once over it. The SQLite and PostgreSQL transaction classes mix them in,
name their statement sets, and keep their own code only where the backends behave
differently (record writes, search, field indexes, locks and time bounds).
"""

from __future__ import annotations

from batchops.store.sql.dialect import POSTGRES, SQLITE, SqlDialect

__all__ = ["POSTGRES", "SQLITE", "SqlDialect"]
