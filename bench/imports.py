"""Import benchmark: a CSV import job through a real server vs raw inserts, in one run.

    .venv/bin/python bench/imports.py                     # SQLite, 1,000,000 rows
    .venv/bin/python bench/imports.py --quick             # 200,000 rows
    .venv/bin/python bench/imports.py --db postgresql://postgres@127.0.0.1:5432/test

1. Generates a CSV of ``--rows`` rows (~200 bytes a row, a few typed columns) on disk.
2. Starts ``batchops serve`` (rate limits off), creates a key, streams the file from disk
   with aiohttp to ``POST /v1/imports`` (a mapping with typed columns; default options
   otherwise: strict validation, so a first pass checks every row), polls
   ``GET /v1/jobs/{id}`` until the job ends. Reports rows/s for upload + import (wall
   clock) and for the import alone (the job's ``started_at`` → ``finished_at``), and the
   server's peak RSS (psutil, itself + children, sampled every 50 ms).
3. Raw inserts of the same rows into the same kind of database, no HTTP, no server:
   SQLite: ``executemany``, and INSERTs of 500 rows each (what the store does), into a
   table with the records table's columns and primary key,
   one transaction per ``chunk_size`` rows; PostgreSQL: ``COPY`` into a fresh table with
   the same columns and primary key, one COPY + transaction per ``chunk_size`` rows (and,
   for information, the same into a copy of the records table with its indexes). Only the
   database calls are timed (the rows are built from the CSV chunk by chunk, outside the
   clock).
4. PostgreSQL: its processes' CPU per imported row, and how long after the import ended
   the search index had caught up (searches are exact before that too; see
   store/pg_search.py).

Targets: import >= 60% of the fastest raw lane on SQLite, >= 40% of a plain COPY on
PostgreSQL (issue 12); server peak RSS <= 250 MB whatever the size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import random
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from _serve import (
    PgCpu,
    ServerProcess,
    make_key,
    search_caught_up,
    server_env,
    server_options,
)

COLLECTION = "bench_imports"
HEADER = ["name", "email", "age", "score", "active", "team", "city", "joined", "note"]
MAPPING = {
    "name": {"field": "name", "type": "string"},
    "email": {"field": "email", "type": "string"},
    "age": {"field": "age", "type": "int"},
    "score": {"field": "score", "type": "float"},
    "active": {"field": "active", "type": "bool"},
    "team": {"field": "team", "type": "string"},
    "city": {"field": "address.city", "type": "string"},
    "joined": {"field": "joined", "type": "string"},
    "note": {"field": "note", "type": "string"},
}
_TEAMS = ["core", "web", "data", "infra", "mobile"]
_CITIES = ["Lisbon", "Berlin", "Nairobi", "Osaka", "Toronto", "Lima", "Oslo", "Pune"]
_WORDS = [
    "bulk",
    "import",
    "rows",
    "fast",
    "chunk",
    "commit",
    "durable",
    "resume",
    "stream",
    "parse",
    "typed",
    "csv",
]


# -- the file ---------------------------------------------------------------------------------


def generate_csv(path: Path, rows: int, seed: int = 7) -> int:
    """Write the CSV; returns its size in bytes."""
    rnd = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            note = " ".join(rnd.choice(_WORDS) for _ in range(17))
            writer.writerow(
                [
                    f"Person Number {i}",
                    f"person.{i}@example.com",
                    18 + i % 70,
                    f"{rnd.random() * 1000:.3f}",
                    "true" if i % 3 else "false",
                    _TEAMS[i % len(_TEAMS)],
                    _CITIES[i % len(_CITIES)],
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
                    note,
                ]
            )
    return path.stat().st_size


def _typed_row(cells: list[str]) -> dict[str, Any]:
    """The record data the mapping above produces (for the raw lanes)."""
    return {
        "name": cells[0],
        "email": cells[1],
        "age": int(cells[2]),
        "score": float(cells[3]),
        "active": cells[4] == "true",
        "team": cells[5],
        "address": {"city": cells[6]},
        "joined": cells[7],
        "note": cells[8],
    }


def raw_chunks(path: Path, size: int, *, text: bool) -> Iterator[list[tuple[Any, ...]]]:
    """The file's rows as records-table tuples, ``size`` at a time (built lazily);
    ``search_text`` filled only when ``text`` (SQLite computes it later, at indexing)."""
    from batchops.server._ids import new_record_ids, now_iso
    from batchops.store._query import search_text

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        while True:
            block = [cells for _, cells in zip(range(size), reader, strict=False)]
            if not block:
                return
            now = now_iso()
            ids = new_record_ids(len(block))
            out = []
            for record_id, cells in zip(ids, block, strict=True):
                data = _typed_row(cells)
                out.append(
                    (
                        "bench",
                        COLLECTION,
                        record_id,
                        orjson.dumps(data).decode(),
                        1,
                        now,
                        now,
                        None,
                        search_text(data) if text else "",
                    )
                )
            yield out


class PeakRSS:
    """Samples the RSS of a process and its children every ``interval_s``; keeps the max."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _rss(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._rss())
                self.samples += 1
            except psutil.Error:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _file_body(path: Path, block: int = 1 << 18) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while data := await asyncio.to_thread(f.read, block):
            yield data


async def run_import(
    url: str, key: str, path: Path, rows: int, chunk_size: int | None, validation: str
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/csv"}
    params = {"collection": COLLECTION, "mapping": orjson.dumps(MAPPING).decode()}
    params["validation"] = validation
    if chunk_size is not None:
        params["chunk_size"] = str(chunk_size)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        t0 = time.perf_counter()
        async with session.post(
            f"{url}/v1/imports", params=params, data=_file_body(path), headers=headers
        ) as resp:
            body = await resp.json()
            assert resp.status == 202, (resp.status, body)
        uploaded = time.perf_counter()
        job_id = body["id"]
        while True:
            async with session.get(f"{url}/v1/jobs/{job_id}", headers=headers) as resp:
                job = await resp.json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            await asyncio.sleep(0.2)
        done = time.perf_counter()
    assert job["state"] == "succeeded", job
    assert job["succeeded"] == rows, job
    import_s = _iso(job["finished_at"]) - _iso(job["started_at"])
    return {
        "upload_s": uploaded - t0,
        "wall_s": done - t0,
        "import_s": import_s,
        "chunk_size": job["options"]["chunk_size"],
    }


# -- raw lanes --------------------------------------------------------------------------------

_RAW_COLS = (
    "tenant TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, data {json} NOT NULL, "
    "version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
    "deleted_at TEXT, search_text TEXT NOT NULL DEFAULT '', "
    "PRIMARY KEY (tenant, collection, id)"
)


def _cpu(times: Any) -> float:
    return float(times.user + times.system + times.children_user + times.children_system)


def raw_sqlite(db: Path, csv_path: Path, chunk: int, *, multi_row: bool) -> float:
    """executemany, or (``multi_row``) INSERTs of up to 500 rows each, as the store does."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"CREATE TABLE raw ({_RAW_COLS.format(json='TEXT')})")
    one = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
    spent = 0.0
    n = 0
    for rows in raw_chunks(csv_path, chunk, text=False):
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        if multi_row:
            for start in range(0, len(rows), 500):
                part = rows[start : start + 500]
                conn.execute(
                    f"INSERT INTO raw VALUES {', '.join([one] * len(part))}",
                    [value for row in part for value in row],
                )
        else:
            conn.executemany(f"INSERT INTO raw VALUES {one}", rows)
        conn.execute("COMMIT")
        spent += time.perf_counter() - t0
        n += len(rows)
    conn.close()
    return n / spent


def raw_postgres(url: str, csv_path: Path, chunk: int, *, like_records: bool) -> float:
    import psycopg

    table = f"raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        if like_records:
            conn.execute(f"CREATE TABLE {table} (LIKE records INCLUDING ALL)")
        else:
            conn.execute(f"CREATE TABLE {table} ({_RAW_COLS.format(json='JSONB')})")
        cols = "tenant, collection, id, data, version, created_at, updated_at, deleted_at, "
        cols += "search_text"
        try:
            spent = 0.0
            n = 0
            for rows in raw_chunks(csv_path, chunk, text=True):
                t0 = time.perf_counter()
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
                spent += time.perf_counter() - t0
                n += len(rows)
        finally:
            conn.execute(f"DROP TABLE {table}")
    return n / spent


def drop_tenant(url: str, tenant: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM records WHERE tenant = %s", (tenant,))


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    server_options(parser)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="the import's chunk_size (default: server's)"
    )
    parser.add_argument("--validation", default="strict", choices=["strict", "lenient"])
    parser.add_argument("--skip-raw", action="store_true", help="only the import (profiling)")
    args = parser.parse_args()
    rows = 200_000 if args.quick else args.rows
    extra_env = server_env(args)

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "import.csv"
        t0 = time.perf_counter()
        size = generate_csv(csv_path, rows)
        print(
            f"generated {rows:,} rows, {size / 1e6:,.1f} MB ({size / rows:.0f} B/row) "
            f"in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        db_url = args.db or f"sqlite:///{workdir / 'bench.db'}"
        tenant = f"bench-{uuid.uuid4().hex[:6]}"
        key = make_key(db_url, workdir, tenant, extra_env)
        try:
            with ServerProcess(db_url, workdir, extra_env) as server:
                assert server.proc is not None
                print(f"server pid {server.proc.pid}", flush=True)
                with PeakRSS(server.proc.pid) as rss, PgCpu() as pg_cpu:
                    idle_rss = rss._rss()
                    # children_*: the import's worker process, reaped before the job ends.
                    cpu0 = rss.proc.cpu_times()
                    result = asyncio.run(
                        run_import(
                            server.url, key, csv_path, rows, args.chunk_size, args.validation
                        )
                    )
                    cpu1 = rss.proc.cpu_times()
                    server_cpu = _cpu(cpu1) - _cpu(cpu0)
                with PgCpu() as pg_cpu_after:
                    caught_up_s = search_caught_up(args.db, tenant) if args.db else None
        finally:
            if args.db:
                drop_tenant(args.db, tenant)
        chunk = int(result["chunk_size"])
        raw: dict[str, float] = {}
        if not args.skip_raw:
            if args.db:
                raw["COPY, plain table (same columns + PK)"] = raw_postgres(
                    args.db, csv_path, chunk, like_records=False
                )
                raw["COPY, LIKE records (its indexes)"] = raw_postgres(
                    args.db, csv_path, chunk, like_records=True
                )
            else:
                raw["executemany, same columns + PK"] = raw_sqlite(
                    workdir / "raw.db", csv_path, chunk, multi_row=False
                )
                raw["500-row INSERTs, same columns + PK"] = raw_sqlite(
                    workdir / "raw2.db", csv_path, chunk, multi_row=True
                )

    backend = "postgresql" if args.db else "sqlite"
    wall_rate = rows / result["wall_s"]
    import_rate = rows / result["import_s"]
    print(f"backend: {backend}; {rows:,} rows; chunk_size {chunk}; validation {args.validation}")
    print(f"  upload                     {result['upload_s']:8.1f} s")
    print(f"  upload + import (wall)     {result['wall_s']:8.1f} s  {wall_rate:>10,.0f} rows/s")
    print(f"  import only (job times)    {result['import_s']:8.1f} s  {import_rate:>10,.0f} rows/s")
    print(
        f"  server peak RSS            {rss.peak / 2**20:8.1f} MB (idle {idle_rss / 2**20:.1f} MB,"
        f" {rss.samples} samples)  (target <= 250 MB)"
    )
    print(
        f"  server CPU (+ workers)     {server_cpu:8.1f} s  {server_cpu / rows * 1e6:10.1f} µs/row"
    )
    if caught_up_s is not None:
        print(
            f"  PostgreSQL CPU (its processes) {pg_cpu.seconds:4.1f} s  "
            f"{pg_cpu.seconds / rows * 1e6:10.1f} µs/row"
        )
        print(
            f"  search index caught up     {caught_up_s:8.1f} s after the import ended; "
            f"PostgreSQL CPU with it {(pg_cpu.seconds + pg_cpu_after.seconds) / rows * 1e6:.1f}"
            " µs/row"
        )
    for name, rate in raw.items():
        print(
            f"  raw {name:<38} {rate:>10,.0f} rows/s   import/raw {import_rate / rate:6.1%}"
            f"   wall/raw {wall_rate / rate:6.1%}"
        )
    if raw:
        best = max(raw.values())
        target = "40%" if args.db else "60%"
        print(f"  import / fastest raw {import_rate / best:6.1%}   (target: >= {target})")


if __name__ == "__main__":
    main()
