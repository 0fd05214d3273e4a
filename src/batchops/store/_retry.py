"""The stores' retry of a whole unit of work on transient errors.

One retry implementation serves every layer (the engine's :class:`RetryPolicy`); what is
the stores' own is the policy: only :class:`TransientStoreError` (a lost race, a busy
file, a dropped connection: the unit of work ran in a transaction that was rolled back),
waits of 5 ms doubling to at most 200 ms, half of each wait random so that writers that
collided do not collide again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TypeVar

from batchops._exceptions import TransientStoreError
from batchops.engine import RetryPolicy

__all__ = ["retry_transient", "unit_retry_policy"]

T = TypeVar("T")


@lru_cache(maxsize=32)
def unit_retry_policy(retries: int) -> RetryPolicy:
    """The policy for a unit of work run with ``retries`` retries (``retries + 1`` calls)."""
    return RetryPolicy(
        attempts=retries + 1,
        initial_backoff=0.005,
        max_backoff=0.2,
        jitter=0.5,
        retry_on=TransientStoreError,
    )


async def retry_transient(call: Callable[[], Awaitable[T]], retries: int) -> T:
    """Await ``call()``; on TransientStoreError try again up to ``retries`` more times.

    The wait happens on the event loop, not in the database thread, so other units of work
    can use the thread meanwhile.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if retries == 0:
        return await call()
    return await unit_retry_policy(retries).call(call)
