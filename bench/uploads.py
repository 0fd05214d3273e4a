"""Upload benchmark: where an import's file waits for its job, the database vs the directory.

    .venv/bin/python bench/uploads.py --db postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/uploads.py                       # SQLite (a fresh file per run)
    .venv/bin/python bench/uploads.py --rows 100000 --repeat 1   # quick

1. Generates a CSV of ``--rows`` rows (~200 bytes a row: 500,000 rows are ~100 MB), the
   file of bench/imports.py.
2. For each repeat, then each storage (``BATCHOPS_UPLOAD_STORAGE`` = ``directory``, then
   ``database``), it starts a fresh ``batchops serve`` (rate limits off) and streams the
   file from disk with aiohttp to ``POST /v1/imports`` (bench/imports.py's typed mapping,
   strict validation). It polls ``GET /v1/jobs/{id}`` until the job ends and checks that
   every row succeeded. Runs of the two storages alternate.
3. It reports, per run and as medians:

   - **upload MB/s**: the file's size over the POST's duration (202 received). The job
     does not exist before the upload has been stored and sealed, so nothing else runs.
   - **queued → started**: the job's ``created_at`` → ``started_at``. It includes the
     local copy of a database upload (the runner copies the chunks to its disk before
     it starts the job) and the claim (the route wakes the runner).
   - **import only**: ``started_at`` → ``finished_at``.
   - **end to end**: the POST's start → the job seen ended (polled every 50 ms).
   - **peak RSS** of the server and its children (psutil, every 50 ms), during the
     upload and over the whole run.

PostgreSQL: the tenant's records are deleted after each run.

``--variants`` (PostgreSQL only; no server) measures instead how to keep the chunks, with
psycopg alone: 1 MiB chunks written in a transaction each, then read back one at a time,
into ``bytea`` rows with the default compression (pglz), ``STORAGE EXTERNAL`` (what
migration 0009 sets: out of line, uncompressed) and ``COMPRESSION lz4``, and into one large
object (``lowrite`` per chunk, ``loread`` back). For each it reports the write and read
rates (reads as text and in binary), the size on disk, the WAL written and how long a
``DELETE`` of the upload takes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from _serve import ServerProcess, make_key, server_env, server_options
from imports import COLLECTION, MAPPING, PeakRSS, _file_body, _iso, drop_tenant, generate_csv

STORAGES = ("directory", "database")


async def _run(url: str, key: str, path: Path, rows: int, rss: PeakRSS) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/csv"}
    params = {"collection": COLLECTION, "mapping": orjson.dumps(MAPPING).decode()}
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        t0 = time.perf_counter()
        async with session.post(
            f"{url}/v1/imports", params=params, data=_file_body(path), headers=headers
        ) as resp:
            body = await resp.json()
            assert resp.status == 202, (resp.status, body)
        uploaded = time.perf_counter()
        upload_peak = rss.peak
        job_id = body["id"]
        while True:
            async with session.get(f"{url}/v1/jobs/{job_id}", headers=headers) as resp:
                job = await resp.json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        done = time.perf_counter()
    assert job["state"] == "succeeded", job
    assert job["succeeded"] == rows, job
    return {
        "upload_s": uploaded - t0,
        "start_s": _iso(job["started_at"]) - _iso(job["created_at"]),
        "import_s": _iso(job["finished_at"]) - _iso(job["started_at"]),
        "wall_s": done - t0,
        "upload_rss": upload_peak,
    }


def _once(
    storage: str, db: str | None, csv_path: Path, rows: int, extra_env: dict[str, str]
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        workdir = Path(tmp)
        db_url = db or f"sqlite:///{workdir / 'bench.db'}"
        env = {**extra_env, "BATCHOPS_UPLOAD_STORAGE": storage}
        tenant = f"bench-{uuid.uuid4().hex[:6]}"
        key = make_key(db_url, workdir, tenant, env)
        try:
            with ServerProcess(db_url, workdir, env) as server:
                assert server.proc is not None
                with PeakRSS(server.proc.pid) as rss:
                    idle = rss._rss()
                    result = asyncio.run(_run(server.url, key, csv_path, rows, rss))
                result["peak_rss"] = rss.peak
                result["idle_rss"] = idle
        finally:
            if db:
                drop_tenant(db, tenant)
    return result


def _one(conn: Any, sql: str, params: Any = (), *, binary: bool = False) -> Any:
    """The first column of the one row a statement answers."""
    row = conn.execute(sql, params, binary=binary).fetchone()
    assert row is not None
    return row[0]


def _wal(conn: Any) -> int:
    return int(_one(conn, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


def variants(url: str, path: Path) -> None:
    """``--variants``: see the module docstring."""
    import psycopg

    size = path.stat().st_size

    def chunks() -> Any:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                yield block

    for storage in ("pglz (default)", "EXTERNAL", "lz4"):
        table = f"upload_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE {table} (job_id TEXT, seq INT, chunk BYTEA NOT NULL, "
                "PRIMARY KEY (job_id, seq))"
            )
            if storage == "EXTERNAL":
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN chunk SET STORAGE EXTERNAL")
            elif storage == "lz4":
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN chunk SET COMPRESSION lz4")
            try:
                wal0, t0 = _wal(conn), time.perf_counter()
                count = 0
                for seq, block in enumerate(chunks()):
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {table} VALUES ('j', %s, %s)", (seq, block))
                    count = seq + 1
                write_s, wal = time.perf_counter() - t0, _wal(conn) - wal0
                disk = _one(conn, f"SELECT pg_total_relation_size('{table}')")
                reads = []
                for binary in (False, True):
                    t0 = time.perf_counter()
                    for seq in range(count):
                        conn.execute(
                            f"SELECT chunk FROM {table} WHERE job_id = 'j' AND seq = %s",
                            (seq,),
                            binary=binary,
                        ).fetchone()
                    reads.append(size / (time.perf_counter() - t0) / 1e6)
                t0 = time.perf_counter()
                with conn.transaction():
                    conn.execute(f"DELETE FROM {table} WHERE job_id = 'j'")
                delete_ms = (time.perf_counter() - t0) * 1000
            finally:
                conn.execute(f"DROP TABLE {table}")
        print(
            f"  bytea {storage:15s} write {size / write_s / 1e6:6.1f} MB/s  read text "
            f"{reads[0]:6.1f} / binary {reads[1]:6.1f} MB/s  on disk {disk / 1e6:6.1f} MB  "
            f"WAL {wal / 1e6:6.1f} MB  delete {delete_ms:5.0f} ms",
            flush=True,
        )
    with psycopg.connect(url) as conn:
        oid = _one(conn, "SELECT lo_create(0)")
        conn.commit()
        wal0, t0 = _wal(conn), time.perf_counter()
        for block in chunks():
            with conn.transaction():
                fd = _one(conn, "SELECT lo_open(%s, 131072)", (oid,))  # INV_WRITE
                conn.execute("SELECT lo_lseek64(%s, 0, 2)", (fd,))
                conn.execute("SELECT lowrite(%s, %s)", (fd, block))
        write_s, wal = time.perf_counter() - t0, _wal(conn) - wal0
        conn.commit()
        t0 = time.perf_counter()
        with conn.transaction():
            fd = _one(conn, "SELECT lo_open(%s, 262144)", (oid,))  # INV_READ
            while _one(conn, "SELECT loread(%s, %s)", (fd, 1 << 20), binary=True):
                pass
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute("SELECT lo_unlink(%s)", (oid,))
        delete_ms = (time.perf_counter() - t0) * 1000
    print(
        f"  large object          write {size / write_s / 1e6:6.1f} MB/s  read binary "
        f"{size / read_s / 1e6:6.1f} MB/s  WAL {wal / 1e6:6.1f} MB  delete {delete_ms:5.0f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    server_options(parser)
    parser.add_argument("--rows", type=int, default=500_000, help="~200 bytes a row")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--variants", action="store_true", help="PostgreSQL: how to keep the chunks (no server)"
    )
    args = parser.parse_args()
    extra_env = server_env(args)

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        csv_path = Path(tmp) / "upload.csv"
        size = generate_csv(csv_path, args.rows)
        print(f"file: {args.rows:,} rows, {size / 1e6:,.1f} MB", flush=True)
        if args.variants:
            if not args.db:
                parser.error("--variants needs --db postgresql://…")
            variants(args.db, csv_path)
            return
        runs: dict[str, list[dict[str, float]]] = {s: [] for s in STORAGES}
        for repeat in range(args.repeat):
            for storage in STORAGES:
                r = _once(storage, args.db, csv_path, args.rows, extra_env)
                runs[storage].append(r)
                print(
                    f"  run {repeat + 1} {storage:9s}  "
                    f"upload {size / r['upload_s'] / 1e6:6.1f} MB/s ({r['upload_s']:5.2f} s)  "
                    f"queued→started {r['start_s']:5.2f} s  "
                    f"import {r['import_s']:6.2f} s  end to end {r['wall_s']:6.2f} s  "
                    f"peak RSS upload {r['upload_rss'] / 2**20:5.1f} / run "
                    f"{r['peak_rss'] / 2**20:5.1f} MB (idle {r['idle_rss'] / 2**20:.1f})",
                    flush=True,
                )

    backend = "postgresql" if args.db else "sqlite"
    print(
        f"\nbackend: {backend}; {args.rows:,} rows, {size / 1e6:,.1f} MB; medians of {args.repeat}"
    )
    print(
        f"  {'storage':9s}  {'upload MB/s':>11s}  {'queued→started':>14s}  {'import':>8s}  "
        f"{'end to end':>10s}  {'peak RSS upload / run':>22s}"
    )

    def med(storage: str, name: str) -> float:
        return statistics.median(r[name] for r in runs[storage])

    for storage in STORAGES:
        print(
            f"  {storage:9s}  {size / med(storage, 'upload_s') / 1e6:11.1f}  "
            f"{med(storage, 'start_s'):12.2f} s  {med(storage, 'import_s'):6.2f} s  "
            f"{med(storage, 'wall_s'):8.2f} s  "
            f"{med(storage, 'upload_rss') / 2**20:9.1f} / "
            f"{med(storage, 'peak_rss') / 2**20:5.1f} MB"
        )
    d, b = "directory", "database"
    print(
        f"  database ÷ directory: upload time {med(b, 'upload_s') / med(d, 'upload_s'):.2f}×, "
        f"end to end {med(b, 'wall_s') / med(d, 'wall_s'):.2f}×"
    )


if __name__ == "__main__":
    main()
