"""Update benchmark: /v1/batch updates vs single PATCHes vs raw UPDATEs, in one run.

    .venv/bin/python bench/updates.py                      # SQLite (the default store)
    .venv/bin/python bench/updates.py --db postgresql://postgres@127.0.0.1:5432/test

The records are created first (not timed). Then:
(a) merge-patch updates of existing records through POST /v1/batch, 100 per request, 8
    concurrent clients: ops/s and p50/p99 latency per request;
(b) the same kind of update with single PATCHes by 8 concurrent clients: req/s;
(c) raw UPDATEs of equivalent rows (executemany, 100 per transaction, version bumped) in
    the same kind of database, no HTTP, no search index.
Each repeat uses a fresh server and database; the summary gives the medians of the
per-run figures and ratios. ``--env PYTHONPATH=<tree>/src`` serves another build.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from _serve import (
    ServerProcess,
    bench_database,
    open_raw_sqlite,
    pg_raw_table,
    post_batches,
    server_env,
    server_options,
)

PER_REQUEST = 100


def record_data(i: int) -> dict[str, Any]:
    return {"name": f"person {i}", "email": f"p{i}@example.com", "team": "core", "age": i % 90}


def patch(i: int) -> dict[str, Any]:
    return {"age": (i * 7) % 90, "team": ["core", "web"][i % 2], "seen": True}


def _bodies(kind: str, collection: str, ids: range) -> list[bytes]:
    def op(i: int) -> dict[str, Any]:
        if kind == "create":
            return {
                "type": "create",
                "collection": collection,
                "id": f"u{i:07d}",
                "data": record_data(i),
            }
        return {"type": "update", "collection": collection, "id": f"u{i:07d}", "data": patch(i)}

    return [
        orjson.dumps({"operations": [op(i) for i in range(s, min(ids.stop, s + PER_REQUEST))]})
        for s in range(ids.start, ids.stop, PER_REQUEST)
    ]


async def run_batches(url: str, key: str, n: int, clients: int) -> dict[str, float]:
    await post_batches(url, key, _bodies("create", "bench_a", range(n)), clients)
    elapsed, latencies = await post_batches(
        url, key, _bodies("update", "bench_a", range(n)), clients
    )
    latencies.sort()
    return {
        "ops_per_s": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
    }


async def run_singles(url: str, key: str, n: int, clients: int) -> float:
    await post_batches(url, key, _bodies("create", "bench_b", range(n)), clients)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    counter = iter(range(n))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in counter:
            async with session.patch(
                f"{url}/v1/collections/bench_b/records/u{i:07d}",
                data=orjson.dumps({"data": patch(i)}),
                headers=headers,
            ) as resp:
                await resp.read()
                assert resp.status == 200, resp.status

    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return n / (time.perf_counter() - t0)


def _raw_rows(n: int) -> list[tuple[Any, ...]]:
    now = "2026-01-01T00:00:00.000Z"
    return [
        ("bench", "bench_c", f"u{i:07d}", orjson.dumps(record_data(i)).decode(), 1, now, now)
        for i in range(n)
    ]


def _raw_updates(n: int) -> list[tuple[Any, ...]]:
    now = "2026-01-02T00:00:00.000Z"
    return [
        (
            orjson.dumps({**record_data(i), **patch(i)}).decode(),
            now,
            "bench",
            "bench_c",
            f"u{i:07d}",
        )
        for i in range(n)
    ]


def raw_sqlite(path: Path, n: int) -> float:
    conn = open_raw_sqlite(path)
    conn.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?, ?, ?)", _raw_rows(n))
    updates = _raw_updates(n)
    t0 = time.perf_counter()
    for start in range(0, n, PER_REQUEST):
        conn.execute("BEGIN")
        conn.executemany(
            "UPDATE raw SET data = ?, version = version + 1, updated_at = ? "
            "WHERE tenant = ? AND collection = ? AND id = ?",
            updates[start : start + PER_REQUEST],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def raw_postgres(url: str, n: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn, pg_raw_table(conn) as table:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)", _raw_rows(n)
            )
        updates = _raw_updates(n)
        t0 = time.perf_counter()
        for start in range(0, n, PER_REQUEST):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"UPDATE {table} SET data = %s, version = version + 1, updated_at = %s "
                    "WHERE tenant = %s AND collection = %s AND id = %s",
                    updates[start : start + PER_REQUEST],
                )
        elapsed = time.perf_counter() - t0
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    server_options(parser)
    parser.add_argument("-n", type=int, default=20_000, help="records for (a) and (c)")
    parser.add_argument("--singles", type=int, default=2_000, help="records for (b)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    extra_env = server_env(args)
    runs: list[tuple[dict[str, float], float, float]] = []
    for r in range(args.repeat):
        with bench_database(args.db, extra_env) as (workdir, db_url, key):
            with ServerProcess(db_url, workdir, extra_env) as server:
                a = asyncio.run(run_batches(server.url, key, args.n, args.clients))
                b = asyncio.run(run_singles(server.url, key, args.singles, args.clients))
            c = raw_postgres(args.db, args.n) if args.db else raw_sqlite(workdir / "raw.db", args.n)
        runs.append((a, b, c))
        print(
            f"  run {r + 1}: (a) {a['ops_per_s']:,.0f} ops/s, (b) {b:,.0f} req/s, "
            f"(c) {c:,.0f} rows/s, (a)/(c) {a['ops_per_s'] / c:.1%}",
            flush=True,
        )
    med = statistics.median
    print(f"backend: {'postgresql' if args.db else 'sqlite'}; medians of {args.repeat} runs")
    rate = med(a["ops_per_s"] for a, _, _ in runs)
    p50 = med(a["p50_ms"] for a, _, _ in runs)
    p99 = med(a["p99_ms"] for a, _, _ in runs)
    print(f"(a) /v1/batch updates   {rate:>10,.0f} ops/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    print(f"(b) single PATCHes      {med(b for _, b, _ in runs):>10,.0f} req/s")
    print(f"(c) raw UPDATEs         {med(c for _, _, c in runs):>10,.0f} rows/s")
    print(f"(a)/(b) = {med(a['ops_per_s'] / b for a, b, _ in runs):5.1f}x")
    print(f"(a)/(c) = {med(a['ops_per_s'] / c for a, _, c in runs):5.1%}")


if __name__ == "__main__":
    main()
