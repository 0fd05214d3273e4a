"""What do FTS + JSON cost on insert? Store.run/insert_records vs raw executemany.

For SQLite and PostgreSQL in one run: insert N RecordRows in groups of 100, one transaction
per group, (a) through ``Store.run(lambda tx: tx.insert_records(group))`` — JSON encoding,
search text, FTS index (FTS5 / tsvector + GIN) and the JSONB GIN index included — and (b) as
raw ``executemany`` into a plain table with the same columns and no FTS or GIN index, on a
connection of our own (no thread hop).

    .venv/bin/python bench/store_insert.py [--rows 100000] [--pg postgresql://…/test]

PostgreSQL: a scratch database ``batchops_bench_<random>`` is created on that server and
dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable

import orjson
import psycopg
from psycopg import sql

from batchops.store import RecordRow, open_store, sqlite_url

GROUP = 100
TS = "2026-01-01T00:00:00.000Z"
PLAIN_COLUMNS = (
    "tenant TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, data {json} NOT NULL, "
    "version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
    "deleted_at TEXT, search_text TEXT NOT NULL, PRIMARY KEY (tenant, collection, id)"
)


def make_rows(n: int) -> list[RecordRow]:
    """Time-ordered ids (zero-padded counters), realistic small documents."""
    return [
        RecordRow(
            "bench",
            "people",
            f"rec_{i:012d}",
            {
                "name": f"person {i}",
                "email": f"p{i}@example.com",
                "team": "core" if i % 3 else "edge",
                "tags": ["alpha", "beta"] if i % 2 else ["gamma"],
                "age": 20 + i % 50,
                "address": {"city": "Paris" if i % 5 else "Lyon", "zip": f"{i % 99999:05d}"},
            },
            1,
            TS,
            TS,
        )
        for i in range(n)
    ]


def _raw_params(rows: list[RecordRow]) -> list[tuple[object, ...]]:
    # Pre-encoded outside the timing: the raw lane measures the database alone.
    return [
        (r.tenant, r.collection, r.id, orjson.dumps(r.data).decode(), 1, TS, TS, None, "")
        for r in rows
    ]


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>9,.0f} rows/s"


async def bench_store(url: str, rows: list[RecordRow]) -> float:
    store = await open_store(url)
    try:
        start = time.perf_counter()
        for i in range(0, len(rows), GROUP):
            group = rows[i : i + GROUP]
            await store.run(lambda tx, g=group: tx.insert_records(g))  # type: ignore[misc]
        return time.perf_counter() - start
    finally:
        await store.close()


def bench_raw_sqlite(path: str, rows: list[RecordRow]) -> float:
    params = _raw_params(rows)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"CREATE TABLE plain ({PLAIN_COLUMNS.format(json='TEXT')})")
    insert = "INSERT INTO plain VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    start = time.perf_counter()
    for i in range(0, len(params), GROUP):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, params[i : i + GROUP])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def bench_raw_pg(url: str, rows: list[RecordRow]) -> float:
    params = _raw_params(rows)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE plain ({PLAIN_COLUMNS.format(json='JSONB')})")
        insert = "INSERT INTO plain VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)"
        start = time.perf_counter()
        for i in range(0, len(params), GROUP):
            with conn.transaction():
                conn.cursor().executemany(insert, params[i : i + GROUP])
        return time.perf_counter() - start


def _pg_scratch(server: str) -> tuple[str, Callable[[], None]]:
    name = f"batchops_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(server)
    info["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v})

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    return url, drop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--pg",
        default=os.environ.get("BATCHOPS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    rows = make_rows(args.rows)
    n = len(rows)
    print(f"{n:,} rows in groups of {GROUP}, one transaction per group")

    with tempfile.TemporaryDirectory() as tmp:
        store_s = await bench_store(sqlite_url(os.path.join(tmp, "store.db")), rows)
        raw_s = bench_raw_sqlite(os.path.join(tmp, "raw.db"), rows)
    print(
        f"sqlite      Store.insert_records {_rate(n, store_s)}   raw executemany {_rate(n, raw_s)}"
    )

    pg_url, drop = _pg_scratch(args.pg)
    try:
        # open_store wants a URL; build one from the scratch conninfo.
        info = psycopg.conninfo.conninfo_to_dict(pg_url)
        url = (
            f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}"
            f":{info.get('port', 5432)}/{info['dbname']}"
        )
        store_s = await bench_store(url, rows)
        raw_s = bench_raw_pg(pg_url, rows)
    finally:
        drop()
    print(
        f"postgresql  Store.insert_records {_rate(n, store_s)}   raw executemany {_rate(n, raw_s)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
