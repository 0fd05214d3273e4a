"""GraphQL batching vs its peers, side by side in one run: 100 record reads, 100 creates.

What: a real ``batchops serve`` (SQLite by default, ``--db postgresql://…``) and one
aiohttp client process with ``--clients`` (8) concurrent clients on one session, as
bench/_serve.py's client. Each workload sends the same operations five ways (``--size``,
100, operations to a unit):

    (a)   one POST /graphql of 100 aliased root fields with literal arguments: the
          aliased-records fast path (server/graphql/fastpath.py), no graphql-core;
    (a$)  the same 100 aliases as ONE static document, the ids (creates: the data) as
          variables — what a GraphQL client sends; the fast path, the document parsed
          once (the server keeps a document from its second use);
    (a')  the same 100 aliases with the fields in an inline fragment (the default,
          ``--full-path fragment``), so graphql-core parses, validates and executes them
          (``--full-path variable``: the collection as ``$c``, which the fast path now
          takes too);
    (b)   100 separate POST /graphql of one root field each (literal arguments, so each
          takes the fast path);
    (c)   one POST /v1/batch of 100 typed operations;
    (d)   100 REST calls (GET /v1/collections/{c}/records/{id}, POST …/records);
    (a=), (a'=)  (a) and (a') sending the SAME document every time, what the server's
          parse and validation caches (256 documents each, by text) serve at best.

Reads fetch ``id collection data version createdAt updatedAt`` (what /v1/batch and REST
answer) of records seeded first (``--seed``, ~130 B of JSON each); every unit of (a) to
(d) reads its own random sample of them, so each GraphQL document is new to the server's
caches, as a real client's would be. Writes create records of the same shape (the data a
GraphQL object literal in the document). Every answer is decoded and checked (status, no
error, 100 records).

Why: the claim of POST /graphql is that batching many record fields in one document
costs about what /v1/batch does — (b)/(a) >= 10x and (a)/(c) <= 3x per operation — and
(a')/(a) says what the fast path buys a document that misses it.

How it measures: each repeat runs every peer once, in a rotated order (machine noise hits
them alike). A peer's load is ``--ops`` operations (default 2,000: 20 units of 100), or as
many units as last ``--seconds`` (1.5) by the untimed first round, so that a fast peer's
CPU is not read off a few clock ticks. Per peer: wall time per 100 operations (the
elapsed time of the peer's load over its operations, 8 clients in flight: a throughput
figure, not a latency), operations/s, the server process's CPU per operation (utime +
stime from /proc/<pid>/stat around the load), the client process's CPU per operation,
and on PostgreSQL its processes' CPU (psutil, as bench/server.py: every PostgreSQL
process of the machine). After each write peer the run waits until the search indexer
has caught up and the server (and PostgreSQL) is idle, so deferred work is not charged to
the next peer. The tables (Markdown) give the medians over the repeats; the ratios are
medians of per-repeat ratios. Start-up, seeding (``--seed`` records; on PostgreSQL then
``ANALYZE records``, see :func:`analyze`) and one untimed round of every peer come first.

    .venv/bin/python bench/graphql_batching.py --repeats 5                  # SQLite
    .venv/bin/python bench/graphql_batching.py --repeats 5 \
        --db postgresql://postgres@127.0.0.1:5432/bench_graphql
    # where the server's time goes, in one process (create_app driven through ASGI):
    # CPU a operation and the garbage collector's share, then cProfile's top functions
    .venv/bin/python bench/graphql_batching.py --profile reads:a [--profile-gc-off]

Named graphql_batching.py, not graphql.py: this directory is on ``sys.path`` when the
benches run (and a source root for mypy and ruff), where ``graphql`` would shadow
graphql-core. The server is started with this interpreter and environment (``--env
NAME=VALUE`` adds to it: ``--env PYTHONPATH=<tree>/src`` serves another build); the first
line printed says which ``batchops`` it imports.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import math
import os
import pstats
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from _serve import (
    PgCpu,
    ServerProcess,
    asgi_request,
    in_process_app,
    make_key,
    record_data,
    search_caught_up,
    server_env,
    server_options,
)

READS = "people"  # the seeded collection the reads read
WRITES = "people_w"  # where the write peers create
FIELDS = "id collection data version createdAt updatedAt"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
MAX_UNITS = 2000  # a bound on a fast peer's load (--seconds)

Check = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request of a peer, the status it must answer and the check of its body."""

    method: str
    path: str
    body: bytes | None
    status: int
    check: Check


@dataclass(frozen=True, slots=True)
class Peer:
    key: str  # "a", "a$", "a'", "b", "c", "d", "a=", "a'="
    label: str


PEERS = [
    Peer("a", "GraphQL, 100 aliases, literals (fast path)"),
    Peer("a$", "GraphQL, 100 aliases, ids/data as variables (fast path, one document)"),
    Peer("a'", "GraphQL, 100 aliases, {via} (graphql-core)"),
    Peer("b", "GraphQL, 100 requests of 1 field"),
    Peer("c", "POST /v1/batch, 100 typed operations"),
    Peer("d", "REST, 100 requests"),
    Peer("a=", "(a), the same document every time"),
    Peer("a'=", "(a'), the same document every time"),
]


# -- documents and bodies --------------------------------------------------------------------


def gql_literal(value: Any) -> str:
    """``value`` (JSON) as a GraphQL input literal (an object's keys are names)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {gql_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(gql_literal(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()  # JSON's string escapes are GraphQL's
    return repr(value)


def graphql_body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps(
        {"query": query} if variables is None else {"query": query, "variables": variables}
    )


def graphql_call(kind: str, items: list[Any], via: str) -> Call:
    """One POST /graphql of a root field per item: ``record`` reads of the ids ``items``
    or ``createRecord`` of ``record_data(i)``, each selecting :data:`FIELDS`. ``via``:
    ``literal`` (the fast path's shape), ``values`` (one document, the ids or data as
    variables: the fast path too), ``variable`` (the collection as ``$c``: the fast path
    too) or ``fragment`` (the fields in an inline fragment: graphql-core's full path)."""
    operation, collection = ("query", READS) if kind == "reads" else ("mutation", WRITES)
    name = gql_literal(collection)
    variables: dict[str, Any] | None = None
    if via == "variable":
        operation, name, variables = f"{operation} Ops($c: String!)", "$c", {"c": collection}
    if via == "values":
        # What a GraphQL client sends: ONE document, the ids (or data) as variables.
        kind_of = "ID!" if kind == "reads" else "JSON!"
        declared = ", ".join(f"$v{n}: {kind_of}" for n in range(len(items)))
        operation = f"{operation} Ops({declared})"
        variables = {
            f"v{n}": item if kind == "reads" else record_data(item) for n, item in enumerate(items)
        }
    selection = f"{{ {FIELDS} }}" if via != "fragment" else f"{{ ... on Record {{ {FIELDS} }} }}"
    values = via == "values"
    if kind == "reads":
        fields = (
            f"r{n}: record(collection: {name}, id: {f'$v{n}' if values else gql_literal(rid)}) "
            f"{selection}"
            for n, rid in enumerate(items)
        )
    else:
        fields = (
            f"c{n}: createRecord(collection: {name}, "
            f"data: {f'$v{n}' if values else gql_literal(record_data(i))}) {selection}"
            for n, i in enumerate(items)
        )
    query = f"{operation} {{ {' '.join(fields)} }}"
    return Call("POST", "/graphql", graphql_body(query, variables), 200, check_graphql(len(items)))


def check_graphql(count: int) -> Check:
    def check(body: bytes) -> None:
        answer = orjson.loads(body)
        data = answer.get("data")
        if "errors" in answer or not isinstance(data, dict) or len(data) != count:
            raise AssertionError(body[:300])
        if any(not isinstance(value, dict) or "id" not in value for value in data.values()):
            raise AssertionError(body[:300])

    return check


def check_batch(count: int) -> Check:
    def check(body: bytes) -> None:
        results = orjson.loads(body)["results"]
        if len(results) != count or any(r["status"] not in (200, 201) for r in results):
            raise AssertionError(body[:300])

    return check


def check_record(body: bytes) -> None:
    if "id" not in orjson.loads(body):
        raise AssertionError(body[:300])


def unit(kind: str, peer: str, items: list[Any], full_path: str) -> list[Call]:
    """The requests of one unit of ``peer``: reads of the ids ``items``, or creates of
    ``record_data(i)`` for each ``i`` in ``items``; ``full_path`` is how (a') leaves the
    fast path (``variable`` or ``fragment``)."""
    reads = kind == "reads"
    if peer in ("a", "a="):
        return [graphql_call(kind, items, "literal")]
    if peer == "a$":
        return [graphql_call(kind, items, "values")]
    if peer in ("a'", "a'="):
        return [graphql_call(kind, items, full_path)]
    if peer == "b":
        return [graphql_call(kind, [item], "literal") for item in items]
    if peer == "c":
        ops = [
            {"type": "read", "collection": READS, "id": item}
            if reads
            else {"type": "create", "collection": WRITES, "data": record_data(item)}
            for item in items
        ]
        return [
            Call(
                "POST", "/v1/batch", orjson.dumps({"operations": ops}), 200, check_batch(len(items))
            )
        ]
    assert peer == "d"
    if reads:
        return [
            Call("GET", f"/v1/collections/{READS}/records/{rid}", None, 200, check_record)
            for rid in items
        ]
    path = f"/v1/collections/{WRITES}/records"
    return [
        Call("POST", path, orjson.dumps({"data": record_data(i)}), 201, check_record) for i in items
    ]


def flat(units: list[list[Call]]) -> list[Call]:
    """The calls of ``units``, in order."""
    return [call for unit in units for call in unit]


class Workload:
    """Makes the units of each peer: reads of distinct random samples of the seeded ids
    (a fixed sample for the same-document peers), creates of distinct record numbers (a
    fixed range for the same-document peers)."""

    def __init__(self, kind: str, ids: list[str], size: int, full_path: str, seed: int = 7) -> None:
        self.kind, self.ids, self.size, self.full_path = kind, ids, size, full_path
        self.rng = random.Random(seed)
        self.next_index = 0
        self.same_ids = self.rng.sample(ids, size) if kind == "reads" else []

    def units(self, peer: str, count: int) -> list[list[Call]]:
        same = peer.endswith("=")
        out = []
        for _ in range(count):
            items: list[Any]
            if self.kind == "reads":
                items = self.same_ids if same else self.rng.sample(self.ids, self.size)
            elif same:
                items = list(range(self.size))
            else:
                items = list(range(self.next_index, self.next_index + self.size))
                self.next_index += self.size
            out.append(unit(self.kind, peer, items, self.full_path))
        return out


# -- running and measuring -------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


@dataclass(frozen=True, slots=True)
class Sample:
    wall_per_100: float  # seconds per 100 operations
    ops_per_s: float
    server_us: float  # server CPU per operation
    client_us: float  # this process's CPU per operation
    pg_us: float | None  # PostgreSQL's processes' CPU per operation
    ops: int


async def run_calls(url: str, headers: dict[str, str], calls: list[Call], clients: int) -> float:
    """Every call from ``clients`` concurrent clients (a shared queue) on one session: the
    elapsed seconds. A session per load: the server drops connections idle for 5 s (uvicorn's
    keep-alive), which a pause between loads would leave the next one to trip over."""
    pending = iter(calls)

    async def client() -> None:
        for call in pending:
            async with session.request(
                call.method, url + call.path, data=call.body, headers=headers
            ) as resp:
                body = await resp.read()
                if resp.status != call.status:
                    raise AssertionError(f"{call.method} {call.path}: {resp.status} {body[:300]!r}")
                call.check(body)

    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - t0


async def measure(
    server: ServerProcess,
    headers: dict[str, str],
    units: list[list[Call]],
    size: int,
    clients: int,
    postgres: bool,
) -> Sample:
    assert server.proc is not None
    calls = flat(units)
    ops = len(units) * size
    pg = PgCpu() if postgres else None
    if pg is not None:
        pg.__enter__()
    server0, client0 = process_cpu(server.proc.pid), time.process_time()
    elapsed = await run_calls(server.url, headers, calls, clients)
    server1, client1 = process_cpu(server.proc.pid), time.process_time()
    if pg is not None:
        pg.__exit__()
    return Sample(
        wall_per_100=elapsed / ops * 100,
        ops_per_s=ops / elapsed,
        server_us=(server1 - server0) / ops * 1e6,
        client_us=(client1 - client0) / ops * 1e6,
        pg_us=None if pg is None else pg.seconds / ops * 1e6,
        ops=ops,
    )


def settle(server: ServerProcess, db_url: str, deadline_s: float = 120.0) -> None:
    """Wait until the search index has caught up with the writes, then until the server
    (and on PostgreSQL every PostgreSQL process: autovacuum and analyze follow a load of
    inserts) has been idle for a second, so that deferred work is not charged to the next
    peer. Says so when the deadline passes first."""
    assert server.proc is not None
    t0 = time.monotonic()
    postgres = db_url.startswith("postgresql")
    if postgres:
        search_caught_up(db_url)
    else:
        path = db_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            while time.monotonic() - t0 < deadline_s:
                row = conn.execute(
                    "SELECT (SELECT indexed_rowid FROM fts_watermark WHERE id = 1) >= "
                    "(SELECT coalesce(max(rowid), 0) FROM records)"
                ).fetchone()
                if row == (1,):
                    break
                time.sleep(0.1)
        finally:
            conn.close()
    while time.monotonic() - t0 < deadline_s:
        before = process_cpu(server.proc.pid)
        with PgCpu() if postgres else nullcontext() as pg:
            time.sleep(1.0)
        if process_cpu(server.proc.pid) - before <= 0.02 and (pg is None or pg.seconds <= 0.05):
            return
    print(f"  (not idle after {deadline_s:.0f} s: going on)", flush=True)


def analyze(db_url: str) -> None:
    """``ANALYZE records`` on PostgreSQL, as autovacuum would after the seed load. Without
    statistics (a fresh database where autovacuum is off, as on the CI machine's
    PostgreSQL) the planner takes (tenant, collection) for ~24 rows, and a read by ids
    scans every record of the collection, filtering on the ids: ~2 ms of PostgreSQL CPU a
    single GET in a 10,000-record collection, against ~0.4 ms for 100 ids by the index."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE records")


async def seed(url: str, headers: dict[str, str], count: int) -> list[str]:
    """``count`` records in the read collection (1,000 per batch): their ids."""
    answers: list[bytes] = []
    calls = []
    for start in range(0, count, 1000):
        ops = [
            {"type": "create", "collection": READS, "data": record_data(i)}
            for i in range(start, min(count, start + 1000))
        ]
        calls.append(
            Call("POST", "/v1/batch", orjson.dumps({"operations": ops}), 200, answers.append)
        )
    await run_calls(url, headers, calls, 1)
    return [
        result["body"]["id"] for answer in answers for result in orjson.loads(answer)["results"]
    ]


@contextmanager
def database(db: str | None, extra_env: dict[str, str]) -> Iterator[tuple[Path, str, str]]:
    """A fresh working directory, the database URL and an API key of a new tenant."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db_url = db or f"sqlite:///{workdir / 'bench.db'}"
        yield workdir, db_url, make_key(db_url, workdir, f"gql-{uuid.uuid4().hex[:6]}", extra_env)


def served_package(extra_env: dict[str, str]) -> str:
    """Where the server process (this interpreter, this environment) imports batchops from."""
    out = subprocess.run(
        [sys.executable, "-c", "import batchops; print(batchops.__file__)"],
        env={**os.environ, **extra_env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def bench(args: argparse.Namespace) -> dict[str, dict[str, list[Sample]]]:
    extra_env = server_env(args)
    results: dict[str, dict[str, list[Sample]]] = {"reads": {}, "writes": {}}
    with (
        database(args.db, extra_env) as (workdir, db_url, key),
        ServerProcess(db_url, workdir, extra_env) as server,
    ):
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        ids = await seed(server.url, headers, args.seed)
        if args.db and not args.no_analyze:
            analyze(args.db)
        workloads = {
            "reads": Workload("reads", ids, args.size, args.full_path),
            "writes": Workload("writes", ids, args.size, args.full_path),
        }
        settle(server, db_url)
        # One untimed round of every peer (imports, first-call set-ups, warm caches), which
        # also sizes its load: --ops operations, or more to last --seconds.
        units: dict[tuple[str, str], int] = {}
        for kind, workload in workloads.items():
            for peer in PEERS:
                warm = workload.units(peer.key, args.clients)
                elapsed = await run_calls(server.url, headers, flat(warm), args.clients)
                wanted = math.ceil(args.seconds / (elapsed / len(warm)))
                units[kind, peer.key] = min(max(args.ops // args.size, wanted), MAX_UNITS)
            settle(server, db_url)
        print(
            "  units of a peer per repeat: "
            + "; ".join(
                f"{kind} " + ", ".join(f"{p.key} {units[kind, p.key]}" for p in PEERS)
                for kind in workloads
            ),
            flush=True,
        )
        for r in range(args.repeats):
            order = PEERS[r % len(PEERS) :] + PEERS[: r % len(PEERS)]
            for kind, workload in workloads.items():
                line = []
                for peer in order:
                    sample = await measure(
                        server,
                        headers,
                        workload.units(peer.key, units[kind, peer.key]),
                        args.size,
                        args.clients,
                        args.db is not None,
                    )
                    results[kind].setdefault(peer.key, []).append(sample)
                    line.append(f"{peer.key} {sample.wall_per_100 * 1e3:.1f}")
                    if kind == "writes":
                        settle(server, db_url)
                print(f"  repeat {r + 1} {kind}: ms per 100 ops: {', '.join(line)}", flush=True)
    return results


# -- report ----------------------------------------------------------------------------------


def ratio(samples: dict[str, list[Sample]], top: str, bottom: str, what: str) -> float:
    """The median over repeats of ``top``'s figure over ``bottom``'s in the same repeat."""
    return statistics.median(
        float(getattr(x, what)) / float(getattr(y, what))
        for x, y in zip(samples[top], samples[bottom], strict=True)
    )


def report(kind: str, samples: dict[str, list[Sample]], args: argparse.Namespace) -> None:
    """The workload's table (Markdown) and ratios."""
    backend = "PostgreSQL" if args.db else "SQLite"
    what = f"{args.size} record reads by id" if kind == "reads" else f"{args.size} creates"
    via = "`$c`" if args.full_path == "variable" else "inline fragment"
    print(
        f"\n{kind}: {what}, {backend}, {args.clients} clients, medians of {args.repeats} repeats\n"
    )
    pg = args.db is not None
    columns = ["ms / 100 ops", "ops/s", "server µs/op", "client µs/op"]
    columns += ["PostgreSQL µs/op"] if pg else []
    print("| peer | " + " | ".join(columns) + " | ops a repeat |")
    print("|---|" + "---:|" * (len(columns) + 1))
    for peer in PEERS:
        runs = samples[peer.key]

        def med(field: str, runs: list[Sample] = runs) -> float:
            return statistics.median(float(getattr(s, field) or 0.0) for s in runs)

        cells = [
            f"{med('wall_per_100') * 1e3:.2f}",
            f"{med('ops_per_s'):,.0f}",
            f"{med('server_us'):.1f}",
            f"{med('client_us'):.1f}",
        ]
        cells += [f"{med('pg_us'):.1f}"] if pg else []
        label = peer.label.replace("{via}", via)
        print(f"| ({peer.key}) {label} | " + " | ".join(cells) + f" | {med('ops'):,.0f} |")
    print()
    for label, top, bottom, note in [
        ("(b)/(a)", "b", "a", "target >= 10x"),
        ("(a)/(c)", "a", "c", "per operation; target <= 3x"),
        ("(b)/(a$)", "b", "a$", "target >= 10x, one document with variables"),
        ("(a$)/(c)", "a$", "c", "per operation; target <= 3x, one document with variables"),
        ("(a')/(a)", "a'", "a", "what the fast path buys"),
        ("(a=)/(a)", "a=", "a", "the same document every time"),
        ("(a'=)/(a')", "a'=", "a'", "the same document every time"),
        ("(b)/(a=)", "b", "a=", "the targets, when the document repeats"),
        ("(a=)/(c)", "a=", "c", ""),
    ]:
        wall = ratio(samples, top, bottom, "wall_per_100")
        cpu = ratio(samples, top, bottom, "server_us")
        print(
            f"    {label:<10} wall {wall:6.2f}x   server CPU {cpu:6.2f}x"
            + (f"   ({note})" if note else "")
        )


# -- profile (one process) -------------------------------------------------------------------


async def profile(
    spec: str, size: int, units: int, clients: int, top: int, full_path: str, gc_off: bool
) -> None:
    """``units`` units of one peer (``reads:a``, ``writes:a'``, …) served by ``create_app``
    driven through ASGI in this process (SQLite), ``clients`` at once: the CPU and the
    garbage collector's share (``gc_off``: with the cyclic GC disabled), then again under
    cProfile."""
    kind, peer = spec.split(":", 1)
    if kind not in ("reads", "writes") or peer not in {p.key for p in PEERS}:
        raise SystemExit(f"--profile {spec}: KIND is reads or writes, PEER one of the peers")
    async with in_process_app() as (app, auth):

        async def call(c: Call) -> None:
            statuses, answer = await asgi_request(app, c.method, c.path, auth, c.body or b"")
            assert statuses == [c.status], (statuses, answer[:300])
            c.check(answer)

        async def run(calls: list[Call]) -> None:
            pending = iter(calls)

            async def worker() -> None:
                for c in pending:
                    await call(c)

            await asyncio.gather(*(worker() for _ in range(clients)))

        seeded: list[str] = []
        for start in range(0, 10_000, 1000):
            creates = [
                {"type": "create", "collection": READS, "data": record_data(i)}
                for i in range(start, start + 1000)
            ]
            body = orjson.dumps({"operations": creates})
            captured: list[bytes] = []
            await run([Call("POST", "/v1/batch", body, 200, captured.append)])
            seeded.extend(r["body"]["id"] for r in orjson.loads(captured[0])["results"])
        workload = Workload(kind, seeded, size, full_path)
        await run(flat(workload.units(peer, clients)))  # warm
        first = flat(workload.units(peer, 1))[0]
        if first.path == "/graphql" and first.body is not None:
            print(document_cost(orjson.loads(first.body)["query"], peer, size))
        ops = units * size
        # A plain pass (CPU, wall, the cyclic GC's collections), then one under cProfile.
        collector = GcTimer()
        if gc_off:
            gc.disable()
        calls = flat(workload.units(peer, units))
        with collector:
            cpu, wall = time.process_time(), time.perf_counter()
            await run(calls)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        gc.enable()
        print(
            f"{spec}: {units} units of {size}, {clients} at once, one process (SQLite)"
            + (", GC off" if gc_off else "")
            + f": {cpu / ops * 1e6:.1f} µs of CPU a operation ({wall / ops * 1e6:.1f} µs wall); "
            + collector.summary(ops)
        )
        calls = flat(workload.units(peer, units))
        profiler = cProfile.Profile()
        profiler.enable()
        await run(calls)
        profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def document_cost(query: str, peer: str, size: int) -> str:
    """What graphql-core's parser does with one document of ``peer``: its size, tokens,
    parse time (GC off, median of 20, per operation of the unit) and the GC-tracked
    objects a parsed document holds (what the server's parse cache keeps per document)."""
    from graphql import Token, parse

    document = parse(query)
    assert document.loc is not None
    tokens = 0
    token: Token | None = document.loc.start_token
    while token is not None:
        tokens, token = tokens + 1, token.next
    gc.collect()
    gc.disable()
    try:
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            parse(query, max_tokens=100_000)
            times.append(time.perf_counter() - t0)
        before = len(gc.get_objects())
        kept = [parse(query) for _ in range(5)]
        objects = (len(gc.get_objects()) - before) / len(kept)
    finally:
        gc.enable()
    took = statistics.median(times)
    ops = size if peer in ("a", "a$", "a=", "a'", "a'=") else 1
    return (
        f"one document of ({peer}): {len(query):,} characters, {tokens:,} tokens; "
        f"parse {took * 1e3:.2f} ms ({took / ops * 1e6:.1f} µs/op, GC off); "
        f"{objects:,.0f} GC-tracked objects once parsed"
    )


class GcTimer:
    """``with GcTimer() as t:`` — the cyclic garbage collector's collections inside the
    block, by generation (gc.callbacks): how many, their wall time, the longest."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        spent = time.perf_counter() - self._start
        generation = info["generation"]
        self.count[generation] += 1
        self.seconds[generation] += spent
        self.longest = max(self.longest, spent)

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self, ops: int) -> str:
        per_op = ", ".join(
            f"gen {g}: {self.count[g]} ({self.seconds[g] / ops * 1e6:.1f} µs/op)" for g in range(3)
        )
        return (
            f"GC collections {per_op}, longest {self.longest * 1e3:.0f} ms; "
            f"{len(gc.get_objects()):,} objects tracked after"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    server_options(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--ops", type=int, default=2000, help="operations of each peer per repeat, at least"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=1.5,
        help="each peer's load lasts about this long at least (sized from the untimed round)",
    )
    parser.add_argument("--size", type=int, default=100, help="operations per document / batch")
    parser.add_argument("--seed", type=int, default=10_000, help="records seeded for the reads")
    parser.add_argument(
        "--profile",
        metavar="KIND:PEER",
        help="instead: cProfile one peer in one process, e.g. reads:a, writes:a' (SQLite)",
    )
    parser.add_argument(
        "--full-path",
        choices=["variable", "fragment"],
        # The fast path takes variables of the arguments' own types since 2026-12-06, so
        # `$c` no longer leaves it: an inline fragment does.
        default="fragment",
        help="how (a') leaves the fast path: the collection as $c, or the fields in an "
        "inline fragment",
    )
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="PostgreSQL: do not ANALYZE the records table after the seed load",
    )
    parser.add_argument("--profile-units", type=int, default=40)
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument(
        "--profile-gc-off", action="store_true", help="the plain pass with the cyclic GC off"
    )
    args = parser.parse_args()
    if args.profile:
        asyncio.run(
            profile(
                args.profile,
                args.size,
                args.profile_units,
                args.clients,
                args.profile_top,
                args.full_path,
                args.profile_gc_off,
            )
        )
        return
    print(f"server imports batchops from {served_package(server_env(args))}", flush=True)
    results = asyncio.run(bench(args))
    for kind, samples in results.items():
        report(kind, samples, args)


if __name__ == "__main__":
    main()
