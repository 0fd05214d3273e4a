"""Capacity model inputs: the CPU one batched create costs each part of a deployment, and
the throughput N API processes reach on this machine, against what the model predicts.

    .venv/bin/python bench/capacity.py --db postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/capacity.py --db postgresql://… --processes 1,2 --repeats 3

Each run starts N ``batchops serve`` processes on one PostgreSQL database (each in its own
working directory, as separate machines would be; rate limits off), and 16 aiohttp clients
spread over them (client i talks to process i mod N, as a load balancer would) send
``--ops`` creates as ``POST /v1/batch`` requests of ``--per-request`` operations. Measured
over the load (psutil, CPU seconds of user + system):

- server CPU per operation: every serve process, and its event-loop thread alone (the
  part of a process that cannot use a second core: one process's ceiling is
  1 / loop CPU per op);
- PostgreSQL CPU per operation (every ``postgres`` process on the machine), during the
  load and, separately, until the search index has caught up (the indexer's share);
- the load generator's own CPU per operation (it shares this machine's cores).

The model (docs/deploy.md, "Capacity model"): a deployment's create throughput is the
least of N / loop-CPU (API processes' event loops), N x cores-per-process / server-CPU,
K / PostgreSQL-CPU (K database cores, the indexer included); on this 2-core machine,
where clients, servers and PostgreSQL share the cores, it is also capped by
2 / (server + PostgreSQL + client CPU). The run prints the prediction next to what was
measured. Runs are interleaved (1, 2, 1, 2, …) and the summary gives medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import orjson
import psutil

from _serve import (
    PgCpu,
    ServerProcess,
    make_key,
    record_data,
    search_caught_up,
    server_env,
    server_options,
)

CLIENTS = 16


def bodies(ops: int, per_request: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "operations": [
                    {"type": "create", "collection": "capacity", "data": record_data(i)}
                    for i in range(start, min(ops, start + per_request))
                ]
            }
        )
        for start in range(0, ops, per_request)
    ]


async def load(urls: list[str], key: str, batch_bodies: list[bytes]) -> float:
    """POST every body from CLIENTS clients, client i to ``urls[i % len(urls)]``; each
    must answer 200. The elapsed seconds."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in batch_bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession, url: str) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(f"{url}/v1/batch", data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, resp.status

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session, urls[i % len(urls)]) for i in range(CLIENTS)))
        return time.perf_counter() - t0


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _loop_cpu(proc: psutil.Process) -> float:
    """CPU of the process's main thread: where uvicorn runs the event loop."""
    for thread in proc.threads():
        if thread.id == proc.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def one_run(
    db: str, processes: int, ops: int, per_request: int, extra_env: dict[str, str]
) -> dict[str, float]:
    batch_bodies = bodies(ops, per_request)
    warm = bodies(2000, per_request)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        tenant = f"cap-{uuid.uuid4().hex[:6]}"
        key = make_key(db, root, tenant, extra_env)
        servers = []
        for i in range(processes):
            workdir = root / f"machine{i}"
            workdir.mkdir()
            servers.append(stack.enter_context(ServerProcess(db, workdir, extra_env)))
        urls = [s.url for s in servers]
        procs = [psutil.Process(s.proc.pid) for s in servers if s.proc is not None]
        asyncio.run(load(urls, key, warm))  # connections, caches, the first pages
        search_caught_up(db, tenant)
        me = psutil.Process()
        cpu0 = [_cpu(p) for p in procs]
        loop0 = [_loop_cpu(p) for p in procs]
        client0 = _cpu(me)
        with PgCpu() as pg:
            elapsed = asyncio.run(load(urls, key, batch_bodies))
            server = sum(_cpu(p) - c for p, c in zip(procs, cpu0, strict=True))
            loop = max(_loop_cpu(p) - c for p, c in zip(procs, loop0, strict=True))
            client = _cpu(me) - client0
        with PgCpu() as pg_after:
            caught_up_s = search_caught_up(db, tenant)
    us = 1e6 / ops
    return {
        "ops_per_s": ops / elapsed,
        "server_us": server * us,
        # The busiest process's loop, scaled to the ops that process saw (ops / N).
        "loop_us": loop * us * processes,
        "pg_us": pg.seconds * us,
        "pg_index_us": pg_after.seconds * us,
        "client_us": client * us,
        "caught_up_s": caught_up_s,
    }


def predict(processes: int, cores: int, r: dict[str, float]) -> dict[str, float]:
    """Throughput (ops/s) each resource allows for a burst on this machine (everything
    shares ``cores``; the search indexer catches up after the burst, so its CPU is not
    counted — :func:`sustained` counts it); the least of them is the prediction."""
    shared = r["server_us"] + r["pg_us"] + r["client_us"]
    return {
        "event loops": processes * 1e6 / r["loop_us"],
        "shared cores": cores * 1e6 / shared,
    }


def sustained(cores: int, r: dict[str, float]) -> float:
    """Throughput this machine could keep up indefinitely: the indexer's CPU counted."""
    return cores * 1e6 / (r["server_us"] + r["pg_us"] + r["pg_index_us"] + r["client_us"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    server_options(parser)
    parser.add_argument("--processes", default="1,2", help="comma-separated N to compare")
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.db or not args.db.startswith("postgres"):
        parser.error("--db postgresql://… is required: the model is for a shared PostgreSQL")
    extra_env = server_env(args)
    counts = [int(n) for n in args.processes.split(",")]
    cores = os.cpu_count() or 1
    results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    for repeat in range(args.repeats):
        for n in counts:
            r = one_run(args.db, n, args.ops, args.per_request, extra_env)
            results[n].append(r)
            limits = predict(n, cores, r)
            print(
                f"run {repeat + 1} N={n}: {r['ops_per_s']:>9,.0f} ops/s; µs/op: server "
                f"{r['server_us']:.1f} (loop {r['loop_us']:.1f}), PostgreSQL {r['pg_us']:.1f} "
                f"+ index {r['pg_index_us']:.1f}, client {r['client_us']:.1f}; predicted "
                f"{min(limits.values()):,.0f} ({min(limits, key=limits.__getitem__)})",
                flush=True,
            )
    print(
        f"\nmedians of {args.repeats} runs; {args.ops:,} creates, {args.per_request}/request,"
        f" {CLIENTS} clients, {cores} cores shared by clients, servers and PostgreSQL"
    )
    for n in counts:
        med = {k: statistics.median(r[k] for r in results[n]) for k in results[n][0]}
        limits = predict(n, cores, med)
        bound = min(limits, key=limits.__getitem__)
        print(
            f"  N={n}: measured {med['ops_per_s']:>9,.0f} ops/s, predicted "
            f"{limits[bound]:>9,.0f} ({bound}; measured/predicted "
            f"{med['ops_per_s'] / limits[bound]:.2f}); µs/op: server {med['server_us']:.1f} "
            f"(busiest loop {med['loop_us']:.1f}), PostgreSQL {med['pg_us']:.1f} + index "
            f"{med['pg_index_us']:.1f}, client {med['client_us']:.1f}; index caught up "
            f"{med['caught_up_s']:.1f} s after; sustained (indexer counted) "
            f"{sustained(cores, med):,.0f} ops/s"
        )


if __name__ == "__main__":
    main()
