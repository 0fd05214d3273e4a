"""The retry loop shared by both stores: re-run a whole unit of work on transient errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from batchops._exceptions import TransientStoreError

__all__ = ["backoff_s", "retry_transient"]

T = TypeVar("T")


def backoff_s(attempt: int, *, base_s: float = 0.005, cap_s: float = 0.2) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): capped exponential, half jitter.

    >>> 0.0025 <= backoff_s(0) <= 0.005
    True
    """
    ceiling = min(cap_s, base_s * 2.0**attempt)
    return ceiling * (0.5 + random.random() / 2)


async def retry_transient(call: Callable[[], Awaitable[T]], retries: int) -> T:
    """Await ``call()``; on TransientStoreError try again up to ``retries`` more times.

    The wait happens on the event loop, not in the database thread, so other units of work
    can use the thread meanwhile.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    attempt = 0
    while True:
        try:
            return await call()
        except TransientStoreError:
            if attempt >= retries:
                raise
            await asyncio.sleep(backoff_s(attempt))
            attempt += 1
