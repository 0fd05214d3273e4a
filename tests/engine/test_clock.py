"""VirtualClock: deterministic virtual time for tests, no real sleeping."""

from __future__ import annotations

import asyncio
import time

from batchops.engine import VirtualClock


async def test_concurrent_sleepers_wake_in_deadline_order_at_virtual_times() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    started = time.monotonic()
    await asyncio.gather(sleeper("slow", 3600.0), sleeper("fast", 1.0), sleeper("mid", 60.0))

    assert woke == [("fast", 1.0), ("mid", 60.0), ("slow", 3600.0)]
    assert time.monotonic() - started < 1.0


async def test_sleeps_are_recorded_in_call_order() -> None:
    clock = VirtualClock(start=100.0)

    await clock.sleep(2.0)
    await clock.sleep(0.5)

    assert clock.sleeps == [2.0, 0.5]
    assert clock.now() == 102.5


async def test_a_cancelled_timer_does_not_fire() -> None:
    clock = VirtualClock()
    fired: list[str] = []

    handle = clock.call_at(5.0, lambda: fired.append("cancelled"))
    clock.call_at(10.0, lambda: fired.append("kept"))
    handle.cancel()
    await clock.sleep(20.0)

    assert fired == ["kept"]


async def test_time_does_not_jump_while_another_task_is_runnable() -> None:
    clock = VirtualClock()
    ticks = 0

    async def busy() -> None:
        nonlocal ticks
        for _ in range(100):
            ticks += 1
            await asyncio.sleep(0)

    busy_task = asyncio.create_task(busy())
    await clock.sleep(1.0)

    assert ticks == 100
    await busy_task
