"""The API keys table written once (:class:`batchops.store.base.KeysTx`)."""

from __future__ import annotations

from typing import ClassVar

from batchops.store.base import ApiKeyRow
from batchops.store.sql.dialect import SqlDialect
from batchops.store.sql.tx import SqlTx

__all__ = ["KeyStatements", "KeysSQL"]

_API_KEY_COLS = "key_id, tenant, key_hash, name, created_at, revoked_at"


class KeyStatements:
    """The API key statements of one dialect, rendered once."""

    def __init__(self, d: SqlDialect) -> None:
        self.insert = d.render(f"INSERT INTO api_keys ({_API_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?)")
        self.find = d.render(f"SELECT {_API_KEY_COLS} FROM api_keys WHERE key_hash = ?")
        order = "ORDER BY created_at, key_id"
        self.list_all = d.render(f"SELECT {_API_KEY_COLS} FROM api_keys {order}")
        self.list = d.render(f"SELECT {_API_KEY_COLS} FROM api_keys WHERE tenant = ? {order}")
        self.revoke = d.render(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        )
        self.count = d.render("SELECT count(*) FROM api_keys")


class KeysSQL(SqlTx):
    """API key methods of the transaction (see :class:`batchops.store.base.KeysTx`)."""

    _keys_sql: ClassVar[KeyStatements]

    def insert_api_key(self, row: ApiKeyRow) -> None:
        """Store a new API key (its hash only)."""
        self._execute(
            self._keys_sql.insert,
            (row.key_id, row.tenant, row.key_hash, row.name, row.created_at, row.revoked_at),
        )

    def find_api_key(self, key_hash: str) -> ApiKeyRow | None:
        """The key with this hash, revoked or not."""
        row = self._execute(self._keys_sql.find, (key_hash,)).fetchone()
        return ApiKeyRow(*row) if row else None

    def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyRow]:
        """All keys (of one tenant, if given), oldest first."""
        if tenant is None:
            cur = self._execute(self._keys_sql.list_all)
        else:
            cur = self._execute(self._keys_sql.list, (tenant,))
        return [ApiKeyRow(*row) for row in cur]

    def revoke_api_key(self, key_id: str, revoked_at: str) -> bool:
        """Revoke a live key; False if it does not exist or is revoked already."""
        cur = self._execute(self._keys_sql.revoke, (revoked_at, key_id))
        return bool(cur.rowcount > 0)

    def count_api_keys(self) -> int:
        """How many keys exist (all tenants, revoked included)."""
        row = self._execute(self._keys_sql.count).fetchone()
        return int(row[0]) if row else 0
