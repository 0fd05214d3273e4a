"""API keys: created once, stored hashed, each bound to one tenant.

A key looks like ``bo_<key_id>_<secret>``; only ``sha256(key)`` is stored. Lookups are
cached in-process for ``ttl_s`` seconds (so a revocation made by another process — the
``batchops keys revoke`` CLI — takes effect within that time) because a store hop per
request costs more than the rest of a small request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from batchops._exceptions import AuthenticationError
from batchops.server.records.operations import now_iso
from batchops.store.base import ApiKeyRow, Store, Tx

__all__ = ["Authenticator", "Caller", "create_api_key", "hash_key"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: every query is scoped to ``tenant``."""

    tenant: str
    key_id: str


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(tx: Tx, tenant: str, name: str | None = None) -> tuple[str, ApiKeyRow]:
    """Create a key for ``tenant``; returns (the key — shown once —, its stored row)."""
    if not tenant or len(tenant) > 128:
        raise ValueError("a tenant name is 1-128 characters")
    key_id = secrets.token_hex(6)
    key = f"bo_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKeyRow(
        key_id=key_id, tenant=tenant, key_hash=hash_key(key), name=name, created_at=now_iso()
    )
    tx.insert_api_key(row)
    return key, row


class Authenticator:
    """Turns the request's key into a :class:`Caller` or raises 401."""

    def __init__(self, store: Store, *, ttl_s: float = 5.0) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Caller | None]] = {}

    async def __call__(self, request: Request) -> Caller:
        key = _key_from(request)
        if key is None:
            raise AuthenticationError(
                "send your API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                code="MISSING_API_KEY",
            )
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            caller = cached[1]
        else:
            row = await self._store.run(lambda tx: tx.find_api_key(digest))
            caller = (
                Caller(row.tenant, row.key_id)
                if row is not None and row.revoked_at is None
                else None
            )
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl_s, caller)
        if caller is None:
            raise AuthenticationError("the API key is unknown or revoked", code="INVALID_API_KEY")
        request.state.caller = caller
        return caller


def _key_from(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None
