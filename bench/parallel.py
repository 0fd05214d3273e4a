"""Parallel reads of one batch: 20 searches with ``parallel: 4`` vs ``parallel: 1``.

    .venv/bin/python bench/parallel.py                      # SQLite (the default store)
    .venv/bin/python bench/parallel.py --db postgresql://postgres@127.0.0.1:5432/bench_parallel

A real ``batchops serve`` subprocess (rate limits off) and one client. Each repeat starts
a fresh server and tenant, seeds ``-n`` records whose text is drawn from a small
vocabulary (one word matches ~1/8 of them, so a search ranks hundreds to thousands of
rows: ~5-20 ms each here; the script prints what one search costs), catches SQLite's
deferred full-text index up (PostgreSQL: waits for its search index to catch up), then
times ``--pairs`` pairs of the same batch of 20 one-word searches (different words,
limit 10) sent with ``parallel: 1`` and ``parallel: 4``, interleaved A B A B, one batch
at a time. The summary gives the medians of the per-batch latencies and their ratio.
``--env PYTHONPATH=<tree>/src`` serves another build.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

import aiohttp
import orjson

from _serve import (
    ServerProcess,
    bench_database,
    post_batches,
    search_caught_up,
    server_env,
    server_options,
)

COLLECTION = "docs"
SEARCHES = 20
VOCABULARY = [
    "amber", "basil", "cedar", "delta", "ember", "fable", "glade", "harbor",
    "iris", "jade", "kestrel", "lumen", "maple", "nectar", "onyx", "pepper",
    "quartz", "raven", "sable", "tundra", "umber", "violet", "willow", "yarrow",
]  # fmt: skip
WORDS_PER_RECORD = 3


def seed_bodies(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    for start in range(0, n, 500):
        ops = [
            {
                "type": "create",
                "collection": COLLECTION,
                "data": {
                    "title": " ".join(rng.sample(VOCABULARY, WORDS_PER_RECORD)),
                    "n": i,
                },
            }
            for i in range(start, min(n, start + 500))
        ]
        bodies.append(orjson.dumps({"operations": ops}))
    return bodies


def search_batch(parallel: int, searches: int = SEARCHES) -> bytes:
    ops = [
        {
            "type": "search",
            "collection": COLLECTION,
            "query": VOCABULARY[i % len(VOCABULARY)],
            "options": {"limit": 10},
        }
        for i in range(searches)
    ]
    return orjson.dumps({"operations": ops, "options": {"parallel": parallel}})


async def post(session: aiohttp.ClientSession, url: str, key: str, body: bytes) -> float:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    t0 = time.perf_counter()
    async with session.post(f"{url}/v1/batch", data=body, headers=headers) as resp:
        answer: dict[str, Any] = orjson.loads(await resp.read())
        assert resp.status == 200, (resp.status, answer)
    return time.perf_counter() - t0


async def measure(url: str, key: str, n: int, pairs: int, db: str | None) -> dict[str, float]:
    await post_batches(url, key, seed_bodies(n), clients=4)
    if db:  # PostgreSQL: the steady state, every row in the search index (store/pg_search.py)
        await asyncio.to_thread(search_caught_up, db)
    one, four = search_batch(1), search_batch(4)
    async with aiohttp.ClientSession() as session:
        # Catch SQLite's deferred index up (and commit it), and warm both paths.
        for _ in range(3):
            await post(session, url, key, one)
            await post(session, url, key, four)
        single = statistics.median(
            [await post(session, url, key, search_batch(1, 1)) for _ in range(10)]
        )
        a: list[float] = []
        b: list[float] = []
        for _ in range(pairs):
            a.append(await post(session, url, key, one))
            b.append(await post(session, url, key, four))
    p1, p4 = statistics.median(a), statistics.median(b)
    return {"single_ms": single * 1000, "p1_ms": p1 * 1000, "p4_ms": p4 * 1000, "ratio": p1 / p4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    server_options(parser)
    parser.add_argument(
        "-n",
        type=int,
        default=None,
        help="records to search (default: 40,000 on PostgreSQL, 2,000 on SQLite, whose "
        "FTS5 search costs ~10x more a matching row: ~5-20 ms a search either way)",
    )
    parser.add_argument("--pairs", type=int, default=15, help="A/B pairs of batches per run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.n if args.n is not None else (40_000 if args.db else 2_000)
    extra_env = server_env(args)
    runs: list[dict[str, float]] = []
    for r in range(args.repeat):
        with (
            bench_database(args.db, extra_env) as (workdir, db_url, key),
            ServerProcess(db_url, workdir, extra_env) as server,
        ):
            run = asyncio.run(measure(server.url, key, n, args.pairs, args.db))
        runs.append(run)
        print(
            f"  run {r + 1}: one search {run['single_ms']:.1f} ms (a batch of 1); "
            f"{SEARCHES} searches: parallel=1 {run['p1_ms']:.1f} ms, "
            f"parallel=4 {run['p4_ms']:.1f} ms, {run['ratio']:.2f}x",
            flush=True,
        )
    med = statistics.median
    print(
        f"backend: {'postgresql' if args.db else 'sqlite'}; {n:,} records; "
        f"medians of {args.repeat} runs of {args.pairs} interleaved pairs"
    )
    print(f"one search (a batch of 1)      {med(r['single_ms'] for r in runs):7.1f} ms")
    print(f"{SEARCHES} searches, parallel=1       {med(r['p1_ms'] for r in runs):7.1f} ms")
    print(f"{SEARCHES} searches, parallel=4       {med(r['p4_ms'] for r in runs):7.1f} ms")
    print(f"parallel=1 / parallel=4 = {med(r['ratio'] for r in runs):.2f}x")


if __name__ == "__main__":
    main()
