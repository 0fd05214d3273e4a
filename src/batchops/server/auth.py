"""API keys: created once, stored hashed, each bound to one tenant.

A key looks like ``bo_<key_id>_<secret>``; only ``sha256(key)`` is stored.

Who is calling is decided in two steps, so that a revocation takes effect on the very
next request on every process (the ``batchops keys revoke`` CLI is another process)
without a store hop per request (a hop costs more than the rest of a small request):

1. :class:`Authenticator` resolves the key to a :class:`Caller` from an in-process cache
   (``ttl_s``), answering 401 for an unknown key without touching the store again;
2. :class:`KeyCheckingStore`, the store as request handlers see it, checks in the first
   statement of every unit of work it runs for a request that the caller's key is still
   live — one primary-key lookup inside a transaction that runs anyway. A revoked key is
   refused (401) before anything of the request is written or read.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request

from batchops._exceptions import AuthenticationError
from batchops.server._ids import now_iso
from batchops.store.base import ApiKeyRow, Store, Tx

__all__ = [
    "Authenticator",
    "Caller",
    "KeyCheckingStore",
    "create_api_key",
    "create_first_key",
    "current_caller",
    "forget_caller",
    "hash_key",
    "restore_caller",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: every query is scoped to ``tenant``; ``key_hash`` is the stored form
    of the key, checked again in every unit of work (see the module docstring)."""

    tenant: str
    key_id: str
    key_hash: str = ""


_CALLER: ContextVar[Caller | None] = ContextVar("batchops_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the request being answered (None outside a request)."""
    return _CALLER.get()


def forget_caller() -> Token[Caller | None]:
    """Start a request with no caller; give the token back to :func:`restore_caller`."""
    return _CALLER.set(None)


def restore_caller(token: Token[Caller | None]) -> None:
    """End a request: the caller it set is forgotten."""
    _CALLER.reset(token)


def _revoked() -> AuthenticationError:
    return AuthenticationError("the API key is unknown or revoked", code="INVALID_API_KEY")


class KeyCheckingStore:
    """The store as request handlers see it (``Services.store``): a unit of work run while a
    request is answered first checks that the request's key is still live, in the same
    transaction (401 ``INVALID_API_KEY`` if not; nothing of the unit runs). Outside a
    request (jobs, webhooks, start-up) it is the store itself."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.dialect = store.dialect
        self.url = store.url

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        """:meth:`Store.run`, with the caller's key checked first (see the class)."""
        caller = _CALLER.get()
        if caller is None or not caller.key_hash:
            return await self.inner.run(fn, retries=retries)
        digest = caller.key_hash

        def checked(tx: Tx) -> T:
            row = tx.find_api_key(digest)
            if row is None or row.revoked_at is not None:
                raise _revoked()
            return fn(tx)

        return await self.inner.run(checked, retries=retries)

    async def close(self) -> None:
        """Close the store underneath."""
        await self.inner.close()


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


def create_first_key(tx: Tx) -> str | None:
    """The key of first start: when no key exists at all, create one for tenant
    ``default`` and return it (shown once); else None.

    Atomic against every other first start: the check and the insert run under one named
    lock (PostgreSQL: an advisory transaction lock, and the count that follows it sees what
    the previous holder committed; SQLite: the write lock every transaction takes). Without
    it, ten servers starting at once on an empty PostgreSQL database created nine keys."""
    tx.lock("batchops.first_key")
    if tx.count_api_keys() > 0:
        return None
    key, _ = create_api_key(tx, "default", "created on first start")
    return key


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
        return await self.authenticate(key, request)

    async def authenticate(self, key: str, request: Request) -> Caller:
        """The caller ``key`` is, made the request's caller (else 401): the one check of
        every way a key arrives (the API's headers, the console's session cookie)."""
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            caller = cached[1]
        else:
            row = await self._store.run(lambda tx: tx.find_api_key(digest))
            caller = (
                Caller(row.tenant, row.key_id, digest)
                if row is not None and row.revoked_at is None
                else None
            )
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl_s, caller)
        if caller is None:
            raise _revoked()
        request.state.caller = caller
        _CALLER.set(caller)  # every unit of work of this request checks the key again
        return caller


def _key_from(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None
