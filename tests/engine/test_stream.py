"""batch_stream: results as they finish, lazy input, clean early exit, bounded memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest

from batchops import Failure, Success
from batchops.engine import VirtualClock, batch_stream


async def test_results_arrive_in_finishing_order_with_their_index(clock: VirtualClock) -> None:
    async def op(i: int) -> str:
        await clock.sleep(5 - i)
        return f"v{i}"

    seen = [
        (r.index, r.value)
        async for r in batch_stream(range(5), op, clock=clock)
        if isinstance(r, Success)
    ]

    assert seen == [(4, "v4"), (3, "v3"), (2, "v2"), (1, "v1"), (0, "v0")]


async def test_failures_are_streamed_too() -> None:
    async def op(i: int) -> int:
        if i == 1:
            raise ValueError("no")
        return i

    results = [r async for r in batch_stream(range(3), op, max_concurrent=1)]

    assert [type(r) for r in results] == [Success, Failure, Success]


async def test_input_is_pulled_only_when_a_worker_is_free(clock: VirtualClock) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    async def op(i: int) -> int:
        await clock.sleep(1.0)
        return i

    got = 0
    async with contextlib.aclosing(
        batch_stream(endless(), op, max_concurrent=4, clock=clock)
    ) as results:
        async for _ in results:
            got += 1
            if got == 10:
                break

    # 10 consumed, at most 4 running and 4 buffered results waiting: nothing more pulled.
    assert pulled <= 10 + 4 + 4


async def test_closing_the_stream_early_cancels_running_items(clock: VirtualClock) -> None:
    cancelled: list[int] = []

    async def op(i: int) -> int:
        try:
            await clock.sleep(0.5 if i == 0 else 100.0)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    stream = batch_stream(range(10), op, max_concurrent=3, clock=clock)
    first = await anext(stream)
    await stream.aclose()

    assert first.index == 0
    assert sorted(cancelled) == [1, 2, 3]


async def test_an_error_from_the_input_iterator_propagates() -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise OSError("disk gone")

    async def op(i: int) -> int:
        return i

    with pytest.raises(OSError, match="disk gone"):
        async for _ in batch_stream(broken(), op):
            pass


_MEMORY_PROBE = textwrap.dedent(
    """
    import asyncio, json, resource
    from batchops.engine import batch_stream

    async def endless(n):
        for i in range(n):
            yield {"id": i, "payload": "x" * 32}

    async def op(item):
        await asyncio.sleep(0)
        return item["id"]

    async def main():
        count = 0
        async for result in batch_stream(endless(1_000_000), op, max_concurrent=100):
            count += 1
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child of a
        # large pytest process would report the parent's footprint.
        with open("/proc/self/status") as status:
            hwm = [line for line in status if line.startswith("VmHWM:")]
        if hwm:
            peak_kb = int(hwm[0].split()[1])
        else:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"count": count, "peak_mb": peak_kb / 1024}))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_memory_stays_bounded_over_a_million_item_async_generator() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )

    report = json.loads(done.stdout)
    assert report["count"] == 1_000_000
    assert report["peak_mb"] < 100
