"""The batch-wide rate cap: evenly spaced starts, no bursts."""

from __future__ import annotations

from batchops.engine._clock import Clock

__all__ = ["RateLimiter"]


class RateLimiter:
    """A leaky bucket of capacity 1: the *i*-th start is no earlier than ``t0 + i / rate``.

    Why capacity 1: a token bucket would let an idle period bank tokens and then burst
    above ``max_per_second``, which is exactly what upstream rate limiters punish.
    Slots are handed out in call order, so waiting workers start in FIFO order.
    """

    __slots__ = ("_clock", "_interval", "_next")

    def __init__(self, per_second: float, clock: Clock) -> None:
        self._interval = 1.0 / per_second
        self._clock = clock
        self._next = float("-inf")

    async def acquire(self) -> None:
        """Wait for the next free start slot."""
        now = self._clock.now()
        slot = self._next
        if slot <= now:
            self._next = now + self._interval
            return
        self._next = slot + self._interval
        await self._clock.sleep(slot - now)
