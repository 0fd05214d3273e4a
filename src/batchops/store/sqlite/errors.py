"""Driver errors classified once for the SQLite store: every sqlite3 error that leaves the
store passes through :func:`translate` (see batchops._exceptions.StoreError for what each
class answers)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from batchops._exceptions import (
    StoreError,
    StoreInputError,
    StoreTimeoutError,
    TransientStoreError,
)
from batchops.store.sqlite.watch import StatementWatch

__all__ = ["translate", "translating"]

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_INTERRUPT = 9
_SQLITE_TOOBIG = 18
_SQLITE_RANGE = 25
# Messages of SQLITE_ERROR that a request's own shape causes (a statement too big or too
# deep for SQLite's limits): retrying sends the same statement again.
_INPUT_MESSAGES = (
    "expression tree is too large",
    "too many sql variables",
    "parser stack overflow",
    "pattern too complex",
    "too many terms",
    "string or blob too big",
    "too many columns",
)


def translate(
    exc: BaseException, conn: sqlite3.Connection | None = None, *, interrupted: bool = False
) -> StoreError:
    """THE mapping of sqlite3 errors (see batchops._exceptions.StoreError for what each
    class answers): busy/locked → transient; interrupted (the statement time bound) →
    timeout; limits a request's own size or values hit → input; the rest → StoreError.

    An interrupted write rolls SQLite's whole transaction back (sqlite3_interrupt's
    contract): the timeout then says ``unit_lost``, judged by ``conn`` when it is known,
    and assumed when it is not. ``interrupted``: the statement watch interrupted the
    statement that failed, whatever SQLite's message (an interrupt inside a virtual
    table's constructor says "vtable constructor failed")."""
    if isinstance(exc, OverflowError):  # a Python int that SQLite's INTEGER cannot bind
        return StoreInputError(f"SQLite cannot take a value: {exc}")
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    message = str(exc)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in message:
        return TransientStoreError(f"SQLite database is busy: {message}")
    if interrupted or primary == _SQLITE_INTERRUPT or message == "interrupted":
        lost = conn is None or not conn.in_transaction
        return StoreTimeoutError(
            f"SQLite interrupted a statement at its time bound: {message}", unit_lost=lost
        )
    lowered = message.lower()
    if (
        primary in (_SQLITE_TOOBIG, _SQLITE_RANGE)
        or isinstance(exc, sqlite3.DataError)
        or any(m in lowered for m in _INPUT_MESSAGES)
    ):
        return StoreInputError(f"SQLite refused a value: {message}")
    return StoreError(f"SQLite error: {message}")


@contextmanager
def translating(
    conn: sqlite3.Connection | None = None, watch: StatementWatch | None = None
) -> Iterator[None]:
    """Translate the sqlite3 errors the block raises (``watch``: whose interrupt, if it
    fired, makes any error a timeout)."""
    try:
        yield
    except (sqlite3.Error, OverflowError) as exc:
        interrupted = watch is not None and watch.fired
        raise translate(exc, conn, interrupted=interrupted) from exc
