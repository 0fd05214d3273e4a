"""Adaptive concurrency and chunk size: additive increase, multiplicative decrease (AIMD).

- :class:`AdaptiveLimit`: how many items run at once (``adaptive=True`` on the engine);
- :class:`AdaptiveChunkSize`: how many items the next chunk (one request) holds, steered
  by how long requests take against a target (the SDK's ``target_ms=``).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from batchops.engine._clock import Clock, MonotonicClock

__all__ = ["AdaptiveChunkSize", "AdaptiveLimit"]


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


class AdaptiveChunkSize:
    """How many items the next chunk (request) holds, steered by request duration (AIMD).

    Starts at ``start`` (default: ``min_size`` raised to a tenth of ``max_size``). A request
    answered within ``target_ms`` grows the size by ``increase`` (additive; default a
    twentieth of ``max_size``, at least 1); one slower than the target, or an overload
    signal (429/503, a timeout: :meth:`overloaded`), multiplies it by ``decrease_factor``
    (default ½). The size never leaves ``[min_size, max_size]``, and callers apply their
    hard limits (a server's operations and bytes per request) on top of it.

    Chunks are cut from a stream while earlier ones are in flight, so the size is read
    when a chunk is cut (:attr:`size`), with the :attr:`generation` it was cut in. As in
    :class:`AdaptiveLimit`, only the first decrease per generation counts: ten concurrent
    slow requests cut before a decrease halve the size once, not ten times.

    ``clock`` is where durations are read (a :class:`~batchops.engine.VirtualClock` in
    tests). One value can be reused across calls: it keeps the size it learned.

    >>> sizing = AdaptiveChunkSize(target_ms=500, min_size=10, max_size=1000)
    >>> sizing.size, sizing.increase
    (100, 50)
    """

    __slots__ = (
        "clock",
        "decrease_factor",
        "generation",
        "increase",
        "max_size",
        "min_size",
        "size",
        "target_s",
    )

    def __init__(
        self,
        target_ms: float,
        min_size: int = 1,
        max_size: int = 1000,
        *,
        start: int | None = None,
        increase: int | None = None,
        decrease_factor: float = 0.5,
        clock: Clock | None = None,
    ) -> None:
        if (
            not isinstance(target_ms, int | float)
            or isinstance(target_ms, bool)
            or not math.isfinite(target_ms)
            or target_ms <= 0
        ):
            raise ValueError(
                f"AdaptiveChunkSize(target_ms={target_ms!r}): must be milliseconds > 0, the "
                "duration a request should take"
            )
        for name, value in (("min_size", min_size), ("max_size", max_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AdaptiveChunkSize({name}={value!r}): must be an int >= 1")
        if min_size > max_size:
            raise ValueError(
                f"AdaptiveChunkSize(min_size={min_size}, max_size={max_size}): min_size "
                "must not exceed max_size"
            )
        if start is None:
            start = min(max_size, max(min_size, max_size // 10))
        if (
            not isinstance(start, int)
            or isinstance(start, bool)
            or not (min_size <= start <= max_size)
        ):
            raise ValueError(
                f"AdaptiveChunkSize(start={start!r}): must be an int in "
                f"[min_size, max_size] = [{min_size}, {max_size}]"
            )
        if increase is None:
            increase = max(1, max_size // 20)
        if not isinstance(increase, int) or isinstance(increase, bool) or increase < 1:
            raise ValueError(f"AdaptiveChunkSize(increase={increase!r}): must be an int >= 1")
        if (
            not isinstance(decrease_factor, int | float)
            or isinstance(decrease_factor, bool)
            or not 0 < decrease_factor < 1
        ):
            raise ValueError(
                f"AdaptiveChunkSize(decrease_factor={decrease_factor!r}): must be a number "
                "strictly between 0 and 1 (0.5 halves the size)"
            )
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(
                f"AdaptiveChunkSize(clock={clock!r}): pass a batchops.engine Clock "
                "(MonotonicClock, VirtualClock)"
            )
        self.target_s = target_ms / 1000.0
        self.min_size = min_size
        self.max_size = max_size
        self.size = start
        self.increase = increase
        self.decrease_factor = float(decrease_factor)
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.generation = 0

    def observe(self, duration_s: float, generation: int) -> None:
        """A request of a chunk cut in ``generation`` was answered in ``duration_s``."""
        if duration_s <= self.target_s:
            self.size = min(self.max_size, self.size + self.increase)
        else:
            self.overloaded(generation)

    def overloaded(self, generation: int) -> None:
        """A request of a chunk cut in ``generation`` was too slow, refused for load
        (429/503) or timed out: shrink, once per generation."""
        if generation == self.generation:
            self.generation += 1
            self.size = max(self.min_size, int(self.size * self.decrease_factor))

    def __repr__(self) -> str:
        return (
            f"AdaptiveChunkSize(target_ms={self.target_s * 1000:g}, size={self.size}, "
            f"range=[{self.min_size}, {self.max_size}])"
        )
