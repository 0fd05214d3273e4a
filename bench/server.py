"""Server benchmark: /v1/batch vs single POSTs vs raw multi-row inserts, in one run.

    .venv/bin/python bench/server.py                      # SQLite (the default store)
    .venv/bin/python bench/server.py --db postgresql://postgres@127.0.0.1:5432/test

(a) creates through POST /v1/batch, 100 per request, 8 concurrent clients: ops/s and
    p50/p99 latency per request;
(b) the same number of records created with single POSTs by 8 concurrent clients: req/s;
(c) raw multi-row inserts of equivalent rows (100 per transaction) into the same kind of
    database, no HTTP (SQLite: the faster of executemany and one 100-row INSERT, per run).
Targets on SQLite: (a) >= 30 x (b) and (a) >= 40% of (c). Each repeat uses a fresh server
and database and takes its ratios from its own (a), (b) and (c); the summary gives medians.

The client is aiohttp (its CPU per request is ~4x lower than httpx here), so the figures
measure the server rather than the client. Runs use a fresh database each time.
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
    PgCpu,
    ServerProcess,
    bench_database,
    open_raw_sqlite,
    pg_raw_table,
    post_batches,
    record_data,
    search_caught_up,
    server_env,
    server_options,
)

ROOT = Path(__file__).resolve().parent.parent


async def run_batches(
    url: str, key: str, n: int, per_request: int, clients: int
) -> dict[str, float]:
    bodies = [
        orjson.dumps(
            {
                "operations": [
                    {"type": "create", "collection": "bench_a", "data": record_data(i)}
                    for i in range(start, min(n, start + per_request))
                ]
            }
        )
        for start in range(0, n, per_request)
    ]
    elapsed, latencies = await post_batches(url, key, bodies, clients)
    latencies.sort()
    return {
        "ops_per_s": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def run_singles(url: str, key: str, n: int, clients: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    counter = iter(range(n))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in counter:
            body = orjson.dumps({"data": record_data(i)})
            async with session.post(
                f"{url}/v1/collections/bench_b/records", data=body, headers=headers
            ) as resp:
                await resp.read()
                assert resp.status == 201, resp.status

    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"req_per_s": n / elapsed}


def raw_rows(n: int) -> list[tuple[Any, ...]]:
    from batchops.server._ids import new_record_id, now_iso

    now = now_iso()
    return [
        ("bench", "bench_c", new_record_id(), orjson.dumps(record_data(i)).decode(), 1, now, now)
        for i in range(n)
    ]


def raw_sqlite(path: Path, n: int, per_tx: int, *, multi_row: bool) -> float:
    """executemany, or (``multi_row``) one INSERT of all ``per_tx`` rows, as the store does."""
    conn = open_raw_sqlite(path)
    rows = raw_rows(n)
    one = "(?, ?, ?, ?, ?, ?, ?)"
    t0 = time.perf_counter()
    for start in range(0, n, per_tx):
        part = rows[start : start + per_tx]
        conn.execute("BEGIN")
        if multi_row:
            conn.execute(
                f"INSERT INTO raw VALUES {', '.join([one] * len(part))}",
                [value for row in part for value in row],
            )
        else:
            conn.executemany(f"INSERT INTO raw VALUES {one}", part)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def raw_postgres(url: str, n: int, per_tx: int) -> float:
    import psycopg

    rows = raw_rows(n)
    with psycopg.connect(url, autocommit=True) as conn, pg_raw_table(conn) as table:
        t0 = time.perf_counter()
        for start in range(0, n, per_tx):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    rows[start : start + per_tx],
                )
        elapsed = time.perf_counter() - t0
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    server_options(parser)
    parser.add_argument("-n", type=int, default=20_000, help="records for (a) and (c)")
    parser.add_argument("--singles", type=int, default=10_000, help="records for (b)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    extra_env = server_env(args)

    a_runs: list[dict[str, float]] = []
    b_runs: list[dict[str, float]] = []
    c_runs: list[float] = []
    for r in range(args.repeat):
        # Each repeat: a fresh server and database for (a) and (b), then (c) right after,
        # with the server stopped (its idle full-text indexing would compete with (c)).
        # The machine's speed drifts by 2x over minutes, so ratios are taken per repeat.
        with bench_database(args.db, extra_env) as (workdir, db_url, key):
            with ServerProcess(db_url, workdir, extra_env) as server:
                with PgCpu() as pg_cpu:
                    a_runs.append(
                        asyncio.run(run_batches(server.url, key, args.n, 100, args.clients))
                    )
                if args.db:  # PostgreSQL's CPU per created record, all its processes
                    a_runs[-1]["pg_us_per_row"] = pg_cpu.seconds / args.n * 1e6
                    with PgCpu() as indexing:  # the search index catching up after (a)
                        search_caught_up(args.db)
                    a_runs[-1]["pg_us_with_index"] = (
                        (pg_cpu.seconds + indexing.seconds) / args.n * 1e6
                    )
                b_runs.append(asyncio.run(run_singles(server.url, key, args.singles, args.clients)))
            if args.db:
                c_runs.append(raw_postgres(args.db, args.n, 100))
            else:
                c_runs.append(
                    max(
                        raw_sqlite(workdir / f"raw{r}.db", args.n, 100, multi_row=False),
                        raw_sqlite(workdir / f"raw{r}m.db", args.n, 100, multi_row=True),
                    )
                )
        print(
            f"  run {r + 1}: (a) {a_runs[-1]['ops_per_s']:,.0f} ops/s, "
            f"(b) {b_runs[-1]['req_per_s']:,.0f} req/s, (c) {c_runs[-1]:,.0f} rows/s, "
            f"(a)/(c) {a_runs[-1]['ops_per_s'] / c_runs[-1]:.1%}"
            + (
                f", PostgreSQL CPU {a_runs[-1]['pg_us_per_row']:.1f} µs/record "
                f"({a_runs[-1]['pg_us_with_index']:.1f} with the search index caught up)"
                if args.db
                else ""
            ),
            flush=True,
        )

    a = statistics.median(r["ops_per_s"] for r in a_runs)
    p50 = statistics.median(r["p50_ms"] for r in a_runs)
    p99 = statistics.median(r["p99_ms"] for r in a_runs)
    b = statistics.median(r["req_per_s"] for r in b_runs)
    c = statistics.median(c_runs)
    ab = statistics.median(
        x["ops_per_s"] / y["req_per_s"] for x, y in zip(a_runs, b_runs, strict=True)
    )
    ac = statistics.median(x["ops_per_s"] / y for x, y in zip(a_runs, c_runs, strict=True))
    backend = "postgresql" if args.db else "sqlite"
    print(f"backend: {backend}; medians of {args.repeat} runs; {args.clients} clients")
    print(f"(a) /v1/batch x100      {a:>10,.0f} ops/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    print(f"(b) single POSTs        {b:>10,.0f} req/s")
    print(f"(c) raw multi-row       {c:>10,.0f} rows/s")
    print(f"(a)/(b) = {ab:5.1f}x   (target >= 30x; median of the per-run ratios)")
    print(f"(a)/(c) = {ac:5.1%}    (target >= 40%; median of the per-run ratios)")
    if args.db:
        pg_us = statistics.median(r["pg_us_per_row"] for r in a_runs)
        pg_all = statistics.median(r["pg_us_with_index"] for r in a_runs)
        print(
            f"PostgreSQL CPU per created record in (a): {pg_us:.1f} µs, {pg_all:.1f} µs with "
            "the search index caught up after it (medians)"
        )


if __name__ == "__main__":
    main()
