"""Clocks: where the engine reads the time, sleeps, and schedules deadlines.

The engine never calls ``asyncio.sleep`` or ``loop.time()`` directly; it goes through a
:class:`Clock`, so tests can swap in a :class:`VirtualClock` and assert exact schedules
without sleeping for real (stamina's testing mode, trio's autojump clock).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "MonotonicClock", "TimerHandle", "VirtualClock"]


@runtime_checkable
class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled (``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None:
        """Do not run the callback."""


@runtime_checkable
class Clock(Protocol):
    """Time as the engine sees it: ``now()``, ``sleep()`` and ``call_at()``."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences matter)."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` of this clock's time."""

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` at ``when`` (this clock's time) in the running loop."""


class MonotonicClock:
    """The real clock: the running event loop's ``time()``, ``asyncio.sleep`` and timers."""

    __slots__ = ()

    def now(self) -> float:
        """The running loop's monotonic time."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        """``loop.call_at``."""
        return asyncio.get_running_loop().call_at(when, callback)

    def __repr__(self) -> str:
        return "MonotonicClock()"


class _VirtualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A test clock: virtual time that jumps ahead whenever every task is waiting on it.

    ``sleep()`` and ``call_at()`` never wait for real. When nothing else in the event loop
    is runnable, the clock jumps straight to the earliest pending wake-up (an *autojump*
    clock, like trio's ``MockClock(autojump_threshold=0)``), so concurrent sleepers keep
    their relative order and a test of a 10-minute schedule runs in milliseconds.

    ``sleeps`` records every requested sleep duration, in call order::

        clock = VirtualClock()
        result = await batch_execute(items, op, retry=RetryPolicy(jitter=False), clock=clock)
        assert clock.sleeps == [0.1, 0.2]

    Only use it when the code under test waits on this clock (not on real I/O or
    ``asyncio.sleep(d > 0)``): idle detection looks at the loop's ready queue.
    """

    __slots__ = ("_driver", "_now", "_seq", "_timers", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _VirtualTimer]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time has advanced by ``seconds`` (recorded in ``sleeps``)."""
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_at(self._now + seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` once virtual time reaches ``when``."""
        timer = _VirtualTimer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        return timer

    async def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` by hand, firing the timers due."""
        await self.sleep(seconds)

    async def _drive(self) -> None:
        # Why a task: the jump must happen only once every other task is blocked, which is
        # only observable from inside the loop, after yielding to everything runnable.
        loop = asyncio.get_running_loop()
        while self._timers:
            await _until_idle(loop)
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                break
            when = self._timers[0][0]
            self._now = max(self._now, when)
            while self._timers and self._timers[0][0] <= self._now:
                timer = heapq.heappop(self._timers)[2]
                if not timer.cancelled:
                    timer.callback()
        self._driver = None

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r}, pending={len(self._timers)})"


async def _until_idle(loop: asyncio.AbstractEventLoop) -> None:
    # asyncio has no public "is anything runnable?" query; BaseEventLoop keeps runnable
    # callbacks in ``_ready``. Two consecutive empty observations make sure callbacks that
    # were scheduled by the ones just run had their turn too. Without ``_ready`` (exotic
    # loops) fall back to a generous number of plain yields.
    ready = getattr(loop, "_ready", None)
    if ready is None:
        for _ in range(64):
            await asyncio.sleep(0)
        return
    quiet = 0
    while quiet < 2:
        await asyncio.sleep(0)
        quiet = quiet + 1 if not ready else 0
