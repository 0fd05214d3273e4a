"""What does a filtered list cost on PostgreSQL without the GIN index over ``data``?

Migration 0007 dropped ``records_data`` (GIN ``jsonb_path_ops`` over all of ``data``, ~8 µs
of PostgreSQL CPU per written row) from the write path. This measures the read side of
that choice: one collection of ``--rows`` records in scratch tables shaped like
``records``, and the list query the store sends (``data @> …`` in id order, 100 rows a
page) with a selective filter (one record) and a broad one (a third of them), for:

- the table as it is now (primary key only: the collection's rows are read and compared);
- with the GIN index the records table had before migration 0007;
- with a btree on the field's value for that collection (``(data #> '{email}')``, partial
  on tenant and collection) — what a filter index made on demand would be — queried as
  ``data #> '{email}' = …`` (equality of jsonb values, which keeps JSON types apart as
  containment does).

    .venv/bin/python bench/pg_filters.py [--pg postgresql://postgres@127.0.0.1:5432/test]
        [--rows 100000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import orjson
import psycopg

COLUMNS = (
    "tenant TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, data JSONB NOT NULL, "
    "version BIGINT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
    "deleted_at TEXT, PRIMARY KEY (tenant, collection, id)"
)
LIST = (
    "SELECT tenant, collection, id, data, version, created_at, updated_at, deleted_at "
    "FROM {t} WHERE tenant = 'bench' AND collection = 'people' AND deleted_at IS NULL "
    "AND {where} ORDER BY id LIMIT 100"
)


def rows(n: int) -> list[tuple[Any, ...]]:
    ts = "2026-01-01T00:00:00.000Z"
    out = []
    for i in range(n):
        data = {"email": f"p{i}@example.com", "team": ["core", "web", "ops"][i % 3], "age": i % 90}
        out.append(("bench", "people", f"r{i:09d}", orjson.dumps(data).decode(), 1, ts, ts, None))
    return out


def timed(conn: psycopg.Connection[Any], sql: str, repeat: int) -> tuple[float, int]:
    """Median milliseconds of ``repeat`` runs, and the rows the query returned."""
    found = len(conn.execute(sql).fetchall())  # warm the cache
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    data = rows(args.rows)
    probe = f"p{args.rows // 2}@example.com"
    selective_containment = f'data @> \'{{"email": "{probe}"}}\''
    selective_equality = f"data #> '{{email}}' = '\"{probe}\"'::jsonb"
    broad_containment = 'data @> \'{"team": "web"}\''
    broad_equality = "data #> '{team}' = '\"web\"'::jsonb"
    variants = {
        "primary key only (now)": ([], selective_containment, broad_containment),
        "+ GIN jsonb_path_ops on data (before 0007)": (
            ["CREATE INDEX ON {t} USING gin (data jsonb_path_ops)"],
            selective_containment,
            broad_containment,
        ),
        "+ btree on the field, this collection only": (
            [
                "CREATE INDEX ON {t} ((data #> '{{email}}')) "
                "WHERE tenant = 'bench' AND collection = 'people' AND deleted_at IS NULL",
                "CREATE INDEX ON {t} ((data #> '{{team}}')) "
                "WHERE tenant = 'bench' AND collection = 'people' AND deleted_at IS NULL",
            ],
            selective_equality,
            broad_equality,
        ),
    }
    print(f"{args.rows:,} records in one collection; list of 100, median of {args.repeat}")
    with psycopg.connect(args.pg, autocommit=True) as conn:
        for name, (ddl, selective, broad) in variants.items():
            table = f"bench_filter_{uuid.uuid4().hex[:8]}"
            conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
            try:
                with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
                for statement in ddl:
                    conn.execute(statement.format(t=table))
                conn.execute(f"ANALYZE {table}")
                one_ms, one = timed(conn, LIST.format(t=table, where=selective), args.repeat)
                many_ms, many = timed(conn, LIST.format(t=table, where=broad), args.repeat)
            finally:
                conn.execute(f"DROP TABLE {table}")
            print(
                f"  {name:44s} selective ({one} found) {one_ms:7.2f} ms   "
                f"broad (first {many}) {many_ms:6.2f} ms"
            )


if __name__ == "__main__":
    main()
