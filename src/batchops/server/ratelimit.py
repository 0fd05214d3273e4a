"""Per-API-key rate limits: requests per minute and operations per minute.

Built on the ``limits`` library's sliding-window counter: O(1) per hit whatever the cost
(~16 µs measured in memory), where a moving window keeps one entry per counted operation.
A batch counts each of its operations.

Where the counters live is chosen once, at construction:

- **memory** (no ``redis_url``): this process's own. Two processes each let a key's whole
  budget through, so limits are per process (the app warns at start when the store is
  PostgreSQL, the multi-process deployment).
- **Redis** (``Settings.redis_url``, ``serve --redis``): every process shares one budget per
  key, through ``limits``' Redis storage (its Lua scripts make a hit atomic, and its windows
  run on Redis's clock, so processes' clocks need not agree).

Redis unreachable: **fail open to per-process limits**. A Redis error or timeout never
reaches the client; the hit is counted in this process's memory instead, one warning is
logged (again at most once a minute while it lasts), ``redis_failures`` counts it, and
Redis is tried again after ``_RETRY_REDIS_AFTER_S``. So an outage degrades the limit to
what one process allows — an abusive key is still held back — instead of refusing all
traffic (a 503 for every request because a counter is unreachable) or letting everything
through. Each Redis call is bounded by a socket timeout (``redis_timeout_s``), and the
client does not retry, so a hung Redis costs a request at most that long, and only the
requests in flight when it hangs or when it is tried again pay it.

Headers follow the IETF httpapi draft "RateLimit header fields for HTTP"
(draft-ietf-httpapi-ratelimit-headers, the two structured fields that replaced
``RateLimit-Limit``/``-Remaining``/``-Reset``)::

    RateLimit-Policy: "requests";q=6000;w=60, "operations";q=600000;w=60;batchops-unit="operations"
    RateLimit: "requests";r=5999;t=60

``RateLimit`` lists the policies a request was charged against: ``requests`` on every
answer past the key, plus ``operations`` on a batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import redis.asyncio
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from batchops._exceptions import RateLimitedError
from batchops.server.observability import metrics

__all__ = ["KeyRateLimits"]

log = logging.getLogger("batchops.ratelimit")
_T = TypeVar("_T")

_RETRY_REDIS_AFTER_S = 5.0
"""After a Redis failure, hits stay in memory this long before Redis is tried again: a
down Redis costs one failed call per process per period, not one per request."""
_WARN_EVERY_S = 60.0
"""While Redis stays unreachable, its warning is repeated at most this often."""
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class KeyRateLimits:
    """Checks a key's budget; raises 429 with ``retry_after`` when it is spent.

    Each hit returns the ``RateLimit-Policy`` and ``RateLimit`` response headers; a
    refused hit raises with them (``RateLimitedError.headers``) so the 429 carries them
    beside ``Retry-After``.

    ``redis_url`` puts the counters on Redis (shared by every process using it); without
    it they are this process's. See the module docstring for what happens when Redis is
    unreachable.
    """

    def __init__(
        self,
        *,
        requests_per_minute: int,
        operations_per_minute: int,
        redis_url: str | None = None,
        redis_timeout_s: float = 0.25,
    ) -> None:
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis: redis.asyncio.ConnectionPool | None = None  # closed by close()
        self._shared: SlidingWindowCounterRateLimiter | None = None
        if redis_url:
            self._shared = self._on_redis(redis_url, redis_timeout_s)
        self.redis_url = redis_url
        self.redis_failures = 0
        """Redis calls that failed (and were counted in memory instead): a metric."""
        self._redis_down_since: float | None = None
        self._redis_retry_at = 0.0
        self._warned_at = -math.inf
        self._requests = (
            RateLimitItemPerMinute(requests_per_minute) if requests_per_minute else None
        )
        self._operations = (
            RateLimitItemPerMinute(operations_per_minute) if operations_per_minute else None
        )
        policies = []
        if self._requests is not None:
            policies.append(f'"requests";q={requests_per_minute};w=60')
        if self._operations is not None:
            policies.append(
                f'"operations";q={operations_per_minute};w=60;batchops-unit="operations"'
            )
        self._policy = ", ".join(policies)

    def _on_redis(self, url: str, timeout_s: float) -> SlidingWindowCounterRateLimiter:
        if not url.startswith(_REDIS_SCHEMES):
            raise ValueError(
                f"the Redis URL must start with redis://, rediss:// or unix://, got {url!r} "
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        # A pool of our own, so that its timeouts are ours and close() can close it.
        # retry=None: redis-py's default retries a failed call 3 times with backoff,
        # which would multiply the time a request waits on a hung Redis.
        self._redis = pool = redis.asyncio.ConnectionPool.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=None,
        )
        # limits passes connection_pool on to redis-py (its signature types options as
        # scalars only).
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix="batchops",
            **options,
        )
        return SlidingWindowCounterRateLimiter(storage)

    async def ping(self) -> None:
        """Ask Redis for a PONG (the readiness check); raises when it does not answer
        within the Redis timeout. Nothing to ask without Redis."""
        if self._redis is not None:
            await redis.asyncio.Redis(connection_pool=self._redis).ping()

    async def close(self) -> None:
        """Close the Redis connections (none without Redis)."""
        if self._redis is not None:
            await self._redis.disconnect()

    async def hit_request(self, key_id: str) -> dict[str, str]:
        """Count one request; returns the RateLimit headers."""
        if self._requests is None:
            return {}
        return await self._hit(self._requests, "req", key_id, 1, "requests", {})

    async def hit_operations(
        self, key_id: str, count: int, charged: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Count ``count`` operations (a batch's size); returns the RateLimit headers,
        listing the operations budget after what ``charged`` (the request's headers) says."""
        charged = charged or {}
        if self._operations is None or count <= 0:
            return dict(charged)
        if count > self._operations.amount:
            metrics.observe_rate_limited("operations")
            raise RateLimitedError(
                f"a batch of {count} operations exceeds the limit of "
                f"{self._operations.amount} operations per minute; send smaller batches",
                details={"limit": self._operations.amount, "operations": count},
                retry_after=60.0,
                headers=(await self._headers(self._operations, "ops", key_id, charged))[0],
            )
        return await self._hit(self._operations, "ops", key_id, count, "operations", charged)

    async def _hit(
        self,
        item: RateLimitItemPerMinute,
        kind: str,
        key_id: str,
        cost: int,
        unit: str,
        charged: Mapping[str, str],
    ) -> dict[str, str]:
        allowed = await self._counted(lambda limiter: limiter.hit(item, kind, key_id, cost=cost))
        headers, reset = await self._headers(item, kind, key_id, charged)
        if not allowed:
            metrics.observe_rate_limited(unit)
            raise RateLimitedError(
                f"rate limit of {item.amount} {unit} per minute reached for this API key",
                details={"limit": item.amount, "unit": f"{unit}/minute"},
                retry_after=float(max(1, reset)),
                headers=headers,
            )
        return headers

    async def _headers(
        self,
        item: RateLimitItemPerMinute,
        kind: str,
        key_id: str,
        charged: Mapping[str, str],
    ) -> tuple[dict[str, str], int]:
        stats = await self._counted(lambda limiter: limiter.get_window_stats(item, kind, key_id))
        remaining = max(0, stats.remaining)
        reset = math.ceil(max(0.0, stats.reset_time - time.time()))
        if reset == 0 and remaining < item.amount:
            # limits takes the window's end as its counter's TTL modulo the window, which
            # is 0 for a counter created this very millisecond (TTL: two windows): the
            # whole window is ahead. (Never 0 once something is counted.)
            reset = item.get_expiry()
        service_limit = f'"{_POLICY[kind]}";r={remaining};t={reset}'
        before = charged.get("RateLimit")
        headers = {
            "RateLimit-Policy": self._policy,
            "RateLimit": f"{before}, {service_limit}" if before else service_limit,
        }
        return headers, reset

    async def _counted(
        self, call: Callable[[SlidingWindowCounterRateLimiter], Awaitable[_T]]
    ) -> _T:
        """``call`` on Redis's limiter when there is one and it is not known to be down
        (else, or when it fails, on this process's)."""
        shared = self._shared
        if shared is not None:
            down_since = self._redis_down_since
            now = time.monotonic() if down_since is not None else 0.0
            if down_since is None or now >= self._redis_retry_at:
                if down_since is not None:
                    # This call tries Redis again; the others meanwhile stay in memory.
                    self._redis_retry_at = now + _RETRY_REDIS_AFTER_S
                try:
                    result = await call(shared)
                except StorageError as exc:
                    self._redis_failed(exc)
                else:
                    if self._redis_down_since is not None:
                        self._redis_back()
                    return result
        return await call(self._local)

    def _redis_failed(self, exc: StorageError) -> None:
        now = time.monotonic()
        self.redis_failures += 1
        if self._redis_down_since is None:
            self._redis_down_since = now
        self._redis_retry_at = now + _RETRY_REDIS_AFTER_S
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "rate limits: Redis at %s is unreachable (%s: %s) for %.0f s so far; "
                "limits are counted per process until it answers (%d failed calls)",
                _redacted(self.redis_url),
                type(exc.storage_error).__name__,
                exc.storage_error,
                now - self._redis_down_since,
                self.redis_failures,
            )

    def _redis_back(self) -> None:
        assert self._redis_down_since is not None
        log.warning(
            "rate limits: Redis at %s answers again after %.0f s; limits are shared again",
            _redacted(self.redis_url),
            time.monotonic() - self._redis_down_since,
        )
        self._redis_down_since = None
        self._warned_at = -math.inf


_POLICY = {"req": "requests", "ops": "operations"}


def _redacted(url: str | None) -> str:
    """``url`` without its password (``redis://:secret@host`` → ``redis://:***@host``)."""
    if url is None or "@" not in url:
        return str(url)
    head, _, tail = url.rpartition("@")
    scheme, _, auth = head.partition("://")
    user = auth.partition(":")[0]
    return f"{scheme}://{user}:***@{tail}"
