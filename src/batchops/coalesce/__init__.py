"""Coalescing: many single ``load(key)`` calls become few batch calls.

- :class:`Batcher` — DataLoader-style batching with a time window, dedupe, an LRU/TTL
  cache, groups, a cap on batches in flight, back-pressure, retry and a circuit breaker;
- :class:`Cache` — the LRU + TTL cache it uses (usable on its own);
- :class:`CircuitBreaker` — closed / open / half-open with one probe call.

See ``docs/coalesce.md`` for the batch function contract and examples.
"""

from batchops.coalesce._batcher import Batcher, BatchEvent, BatchFn, Overflow
from batchops.coalesce._breaker import BreakerState, CircuitBreaker
from batchops.coalesce._cache import Cache

__all__ = [
    "BatchEvent",
    "BatchFn",
    "Batcher",
    "BreakerState",
    "Cache",
    "CircuitBreaker",
    "Overflow",
]
