"""Benchmark: batchops' engine vs asyncio.gather + Semaphore vs aiometer.run_all.

Scenarios (targets from the engine issue):

(a) N=100,000 items of ``await asyncio.sleep(0)``, max_concurrent=100: per-item overhead
    of batch_execute <= 1/3 of gather + Semaphore's. Overhead = time per item minus the
    time per item of a bare pool (100 coroutines each awaiting its share, no bookkeeping),
    which is the floor any scheduler pays for the ``sleep(0)`` itself.
(b) N=2,000 items of ``await asyncio.sleep(0.01)``, max_concurrent=100: wall time divided
    by the ideal ceil(N/100) x 10 ms <= 1.05.

Run: ``.venv/bin/python bench/engine.py`` (``--quick`` for a shorter run).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable

import aiometer

from batchops.engine import batch_execute

CONCURRENCY = 100


async def op_yield(i: int) -> int:
    await asyncio.sleep(0)
    return i


async def op_sleep_10ms(i: int) -> int:
    await asyncio.sleep(0.01)
    return i


Op = Callable[[int], Awaitable[int]]


async def run_engine(n: int, op: Op) -> None:
    result = await batch_execute(range(n), op, max_concurrent=CONCURRENCY)
    assert len(result) == n


async def run_gather(n: int, op: Op) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> int:
        async with sem:
            return await op(i)

    results = await asyncio.gather(*(one(i) for i in range(n)))
    assert len(results) == n


async def run_aiometer(n: int, op: Op) -> None:
    results = await aiometer.run_all(
        [functools.partial(op, i) for i in range(n)], max_at_once=CONCURRENCY
    )
    assert len(results) == n


async def run_bare_pool(n: int, op: Op) -> None:
    async def worker(start: int) -> None:
        for i in range(start, n, CONCURRENCY):
            await op(i)

    await asyncio.gather(*(worker(s) for s in range(CONCURRENCY)))


async def _one_sleep(n: int, op: Op) -> None:
    await op(0)


Runner = Callable[[int, Op], Awaitable[None]]
RUNNERS: dict[str, Runner] = {
    "bare pool (floor)": run_bare_pool,
    "batchops.batch_execute": run_engine,
    "asyncio.gather+Semaphore": run_gather,
    "aiometer.run_all": run_aiometer,
}


async def measure(runner: Runner, n: int, op: Op, repeat: int) -> float:
    """Median wall seconds over ``repeat`` runs (after one warm-up)."""
    await runner(min(n, 1000), op)
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        await runner(n, op)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def scenario_a(n: int, repeat: int) -> None:
    print(
        f"\n(a) N={n:,} x `await asyncio.sleep(0)`, max_concurrent={CONCURRENCY}, "
        f"median of {repeat}"
    )
    per_item = {}
    for name, runner in RUNNERS.items():
        per_item[name] = await measure(runner, n, op_yield, repeat) / n * 1e6
    floor = per_item["bare pool (floor)"]
    print(f"  {'runner':<26} {'us/item':>9} {'overhead us/item':>17}")
    for name, us in per_item.items():
        print(f"  {name:<26} {us:>9.2f} {us - floor:>17.2f}")
    ours = per_item["batchops.batch_execute"]
    gather = per_item["asyncio.gather+Semaphore"]
    overhead_ratio = (ours - floor) / (gather - floor)
    print(
        f"  overhead ratio engine/gather = {overhead_ratio:.3f} (target <= 0.333) "
        f"{'OK' if overhead_ratio <= 1 / 3 else 'MISSED'}"
    )
    print(f"  total-time ratio engine/gather = {ours / gather:.3f}")


async def scenario_b(n: int, repeat: int) -> None:
    ideal = math.ceil(n / CONCURRENCY) * 0.010
    print(
        f"\n(b) N={n:,} x `await asyncio.sleep(0.01)`, max_concurrent={CONCURRENCY}, "
        f"ideal {ideal * 1000:.0f} ms, median of {repeat}"
    )
    print(f"  {'runner':<26} {'wall ms':>9} {'wall/ideal':>11}")
    ratios = {}
    for name, runner in RUNNERS.items():
        wall = await measure(runner, n, op_sleep_10ms, repeat)
        ratios[name] = wall / ideal
        print(f"  {name:<26} {wall * 1000:>9.1f} {wall / ideal:>11.3f}")
    ours = ratios["batchops.batch_execute"]
    floor = ratios["bare pool (floor)"]
    one = await measure(_one_sleep, 1, op_sleep_10ms, 20)
    print(
        f"  one lone sleep(0.01) takes {one * 1000:.2f} ms on this loop: the floor is "
        f"{floor:.3f}, the engine adds {ours / floor:.3f}x on top of it"
    )
    print(f"  engine wall/ideal = {ours:.3f} (target <= 1.05) {'OK' if ours <= 1.05 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller N, fewer repeats")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop", "both"],
        default="both",
        help="event loop(s) to run on (uvloop is a batchops dependency; `batchops serve` uses it)",
    )
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    n_a = 20_000 if args.quick else 100_000
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    for loop in loops:
        print(f"\n=== event loop: {loop} ===")
        run = asyncio.run
        if loop == "uvloop":
            import uvloop

            run = uvloop.run
        run(scenario_a(n_a, repeat))
        run(scenario_b(2_000, repeat))


if __name__ == "__main__":
    main()
