"""Client-side overhead benchmarks, peers side by side.

Run: ``.venv/bin/python bench/client.py --part a`` (``--part all`` runs every part).

- part (a): the coalescer. ``batchops.coalesce.Batcher`` vs ``aiodataloader.DataLoader``:
  100,000 ``load()`` calls of distinct keys, batches of at most 100, a ``batch_fn`` that
  returns the keys (so nearly all the time measured is the loader's own). Two like-for-like
  configurations (dedupe on / off) under two harnesses (``gather()`` of every load, as
  callers usually fan out; and "await each", the thinnest harness). Prints µs per load
  (median of interleaved repeats) side by side with the ratio.
- part (b): the SDK. ``people.get_many(10,000 ids)`` vs 10,000 single ``people.get(id)``
  at 16 requests in flight, against a real ``batchops serve`` subprocess (SQLite, rate
  limits off). Prints wall time, the speed-up (target >= 10x) and client CPU per operation.

Not a test: figures for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiodataloader import DataLoader

from batchops.coalesce import Batcher

N_LOADS = 100_000
BATCH = 100
REPEATS = 9


async def _echo(keys: list[int]) -> list[int]:
    return keys


async def _echo_dl(keys: Sequence[int]) -> list[int]:
    return list(keys)


# Two like-for-like pairs. aiodataloader's cache is also its dedupe: cache=True is the
# Batcher's default dedupe (plus unbounded memoisation); cache=False matches dedupe=False.
PAIRS: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "dedupe on": (
        lambda: Batcher(_echo, max_batch_size=BATCH),
        lambda: DataLoader(_echo_dl, max_batch_size=BATCH, cache=True),
    ),
    "dedupe off": (
        lambda: Batcher(_echo, max_batch_size=BATCH, dedupe=False),
        lambda: DataLoader(_echo_dl, max_batch_size=BATCH, cache=False),
    ),
}


async def _gather(loader: Any) -> None:
    # How callers usually fan out (and how the design-time figures were taken): gather()
    # adds its own ~5 µs per awaitable, the same for both loaders.
    values = await asyncio.gather(*[loader.load(k) for k in range(N_LOADS)])
    assert values[-1] == N_LOADS - 1


async def _await_each(loader: Any) -> None:
    # The loader's own cost with the thinnest harness: queue every load, then await each.
    futures = [loader.load(k) for k in range(N_LOADS)]
    for k, future in enumerate(futures):
        assert await future == k


Harness = Callable[[Any], Awaitable[None]]


def _time_us(make: Callable[[], Any], harness: Harness) -> float:
    async def run() -> float:
        loader = make()
        start = time.perf_counter()
        await harness(loader)
        return (time.perf_counter() - start) / N_LOADS * 1e6

    gc.collect()
    return asyncio.run(run())


def part_a() -> None:
    """Batcher vs aiodataloader: µs per load, median of REPEATS interleaved runs."""
    harnesses: dict[str, Harness] = {"gather()": _gather, "await each": _await_each}
    print(
        f"part (a): {N_LOADS:,} loads of distinct keys, max batch {BATCH}, "
        f"median of {REPEATS} interleaved runs, µs per load"
    )
    print(f"  {'config':<12}{'harness':<14}{'Batcher':>10}{'aiodataloader':>16}{'ratio':>8}")
    for config, (ours_make, peer_make) in PAIRS.items():
        for harness_name, harness in harnesses.items():
            ours_samples: list[float] = []
            peer_samples: list[float] = []
            for _ in range(REPEATS):
                # Interleaved, so that machine noise (±30% here) hits both loaders alike.
                ours_samples.append(_time_us(ours_make, harness))
                peer_samples.append(_time_us(peer_make, harness))
            ours = statistics.median(ours_samples)
            peer = statistics.median(peer_samples)
            print(f"  {config:<12}{harness_name:<14}{ours:>10.2f}{peer:>16.2f}{peer / ours:>7.2f}x")
    print("  ratio = aiodataloader / Batcher (above 1: the Batcher is cheaper)")


B_RECORDS = 10_000
B_CONCURRENCY = 16


def part_b() -> None:
    """The SDK's get_many vs single GETs against ``batchops serve`` (see the docstring)."""
    import os
    import socket
    import subprocess
    import sys
    import tempfile
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/bench.db"
        env = dict(
            os.environ,
            BATCHOPS_RATE_LIMIT_REQUESTS="0",
            BATCHOPS_RATE_LIMIT_OPERATIONS="0",
            BATCHOPS_DRAIN_DELAY_S="0",
        )
        cmd = [sys.executable, "-m", "batchops"]
        key = subprocess.run(
            [*cmd, "keys", "create", "--tenant", "bench", "--db", db],
            capture_output=True, text=True, check=True, env=env,
        ).stdout.strip()  # fmt: skip
        server = subprocess.Popen(
            [*cmd, "serve", "--db", db, "--port", str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{url}/openapi.json", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(_part_b(url, key))
        finally:
            server.terminate()
            server.wait()


async def _part_b(url: str, key: str) -> None:
    from batchops.client import AsyncClient
    from batchops.engine import batch_execute

    ids = [f"r{i:06d}" for i in range(B_RECORDS)]
    async with AsyncClient(url, key, max_concurrent=B_CONCURRENCY) as client:
        people = client.collection("people")
        created = await people.create_many({"id": i, "data": {"n": i}} for i in ids)
        assert created.ok, created.failures()[:3]
        await people.get_many(ids[:1000])  # warm-up: connections, server caches

        rows = []
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            many = await people.get_many(ids)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert many.ok
            wall_s, cpu_s = time.perf_counter(), time.process_time()
            singles = await batch_execute(ids, people.get, max_concurrent=B_CONCURRENCY)
            wall_s, cpu_s = time.perf_counter() - wall_s, time.process_time() - cpu_s
            assert singles.ok
            rows.append((wall, cpu, wall_s, cpu_s))
    wall, cpu, wall_s, cpu_s = (statistics.median(col) for col in zip(*rows, strict=True))
    print(f"part (b): {B_RECORDS:,} records, SQLite server subprocess, median of 3")
    print(f"  {'':<34}{'wall s':>8}{'client CPU µs/op':>18}")
    print(f"  {'get_many (1 call, 10 requests)':<34}{wall:>8.3f}{cpu / B_RECORDS * 1e6:>18.1f}")
    label = f"single get x{B_RECORDS:,} ({B_CONCURRENCY} in flight)"
    print(f"  {label:<34}{wall_s:>8.3f}{cpu_s / B_RECORDS * 1e6:>18.1f}")
    print(f"  speed-up (wall): {wall_s / wall:.1f}x   client CPU: {cpu_s / cpu:.1f}x")


def main() -> None:
    """``--part a|b|all``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    part = parser.parse_args().part
    if part in ("a", "all"):
        part_a()
    if part in ("b", "all"):
        part_b()


if __name__ == "__main__":
    main()
