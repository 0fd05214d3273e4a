"""Adaptive concurrency: additive increase, multiplicative decrease (AIMD)."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["AdaptiveLimit"]


class AdaptiveLimit:
    """A concurrency limit between 1 and ``maximum`` that reacts to overload.

    Starts at ``maximum``. An overload error (429/503, a ``retry_after``) halves the limit;
    a run of ``limit`` successes in a row raises it by one. Only the first overload signal
    per *window* counts: items that started before the last decrease carry an older
    generation and are ignored, so ten concurrent 429s halve once, not ten times (TCP's
    per-window rule).
    """

    __slots__ = ("_active", "_maximum", "_streak", "_waiters", "generation", "limit")

    def __init__(self, maximum: int) -> None:
        self._maximum = maximum
        self.limit = maximum
        self.generation = 0
        self._active = 0
        self._streak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a free slot; return the generation to pass to :meth:`overloaded`."""
        while self._active >= self.limit:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            try:
                await future
            except asyncio.CancelledError:
                # Pass a wake-up we may have consumed on to the next waiter.
                if future.done() and not future.cancelled():
                    self._wake()
                raise
        self._active += 1
        return self.generation

    def overloaded(self, generation: int) -> None:
        """An attempt of an item admitted in ``generation`` hit an overload error."""
        self._streak = 0
        if generation == self.generation:
            self.generation += 1
            self.limit = max(1, self.limit // 2)

    def release(self, *, success: bool) -> None:
        """Give the slot back; a clean success counts towards growing the limit."""
        self._active -= 1
        if success:
            self._streak += 1
            if self._streak >= self.limit and self.limit < self._maximum:
                self.limit += 1
                self._streak = 0
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self._active
        while free > 0 and self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                free -= 1
