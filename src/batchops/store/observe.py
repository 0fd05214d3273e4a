"""A hook the server hangs its metrics on: how long each unit of work (``Store.run``) took.

The store never imports the server (an import-linter contract), so the server gives the
store a callback instead: :func:`set_run_observer`. Timing is per unit of work, not per
statement: a unit is one hop into the database thread, and timing each statement there
would add two clock reads per statement to the serial section of every write. What is
timed is what the caller waits for: the wait for the database thread or a connection, the
transaction (group commit on SQLite) and any retries.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["RunObserver", "observed", "set_run_observer"]

T = TypeVar("T")

RunObserver = Callable[[str, float, bool], None]
"""Called after each unit of work with (dialect, seconds, whether it succeeded)."""

_observer: list[RunObserver | None] = [None]


def set_run_observer(observer: RunObserver | None) -> None:
    """Have every store of this process call ``observer`` after each unit of work (None:
    stop)."""
    _observer[0] = observer


async def observed(dialect: str, call: Awaitable[T]) -> T:
    """Await ``call`` (a unit of work), reporting its time to the observer if one is set."""
    observer = _observer[0]
    if observer is None:
        return await call
    started = time.perf_counter()
    ok = False
    try:
        result = await call
        ok = True
        return result
    finally:
        observer(dialect, time.perf_counter() - started, ok)
