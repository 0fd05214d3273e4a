"""What does each index and generated column of PostgreSQL's records table cost a write?

COPY the same records-like rows (1,000 per transaction, one writer) into scratch tables
shaped like ``records`` with one choice added at a time — the generated ``tsv`` (words
split by the SQL function of migration 0005, or by Python's ``search_tokens`` before the
row is sent), the ``jsonb_path_ops`` GIN index on ``data``, the GIN index on ``tsv``, GIN
``fastupdate`` off — and print rows/s and µs/row side by side (issue 12: make the indexing
a measured choice). The tables are created in the given database and dropped.

    .venv/bin/python bench/pg_indexes.py [--pg postgresql://postgres@127.0.0.1:5432/test]
        [--rows 50000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import orjson
import psycopg

from batchops.store._query import search_text, search_tokens

COLUMNS = (
    "tenant TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, data JSONB NOT NULL, "
    "version BIGINT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
    "deleted_at TEXT, search_text TEXT NOT NULL, PRIMARY KEY (tenant, collection, id)"
)
TSV_SQL_WORDS = (
    "ALTER TABLE {t} ADD COLUMN tsv TSVECTOR GENERATED ALWAYS AS "
    "(to_tsvector('simple'::regconfig, batchops_search_words(search_text))) STORED"
)
TSV_PY_WORDS = (
    "ALTER TABLE {t} ADD COLUMN tsv TSVECTOR GENERATED ALWAYS AS "
    "(to_tsvector('simple'::regconfig, search_text)) STORED"
)
GIN_TSV = "CREATE INDEX ON {t} USING gin (tsv)"
GIN_DATA = "CREATE INDEX ON {t} USING gin (data jsonb_path_ops)"
NO_FASTUPDATE = " WITH (fastupdate = off)"
# Migration 0007: the search index off the write path. A row only records which
# transaction wrote it (for the indexer's watermark), and a btree finds the pending ones.
WRITER_XID = "ALTER TABLE {t} ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()"
WRITER_XID_INDEX = "CREATE INDEX ON {t} (txid)"


def make_rows(n: int) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(n):
        data = {
            "name": f"person {i}",
            "email": f"p{i}@example.com",
            "team": "core" if i % 3 else "edge",
            "tags": ["alpha", "beta"] if i % 2 else ["gamma"],
            "age": 20 + i % 50,
            "address": {"city": "Paris" if i % 5 else "Lyon", "zip": f"{i % 99999:05d}"},
            "bio": f"Works on project {i % 97} at site-{i % 13}.example.org since 20{i % 25:02d}",
        }
        ts = "2026-01-01T00:00:00.000Z"
        text = search_text(data)
        rows.append(
            ("bench", "people", f"r{i:012d}", orjson.dumps(data).decode(), 1, ts, ts, None, text)
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = make_rows(args.rows)
    started = time.perf_counter()
    words = [(*row[:8], " ".join(search_tokens(row[8]))) for row in rows]
    split_us = (time.perf_counter() - started) / len(rows) * 1e6
    print(f"{len(rows):,} rows; Python word split (search_tokens): {split_us:.1f} µs/row")
    variants: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
        "plain table (PK only)": ([], rows),
        "+ tsv, SQL word split": ([TSV_SQL_WORDS], rows),
        "+ tsv, Python word split": ([TSV_PY_WORDS], words),
        "+ GIN data": ([GIN_DATA], rows),
        "+ tsv (SQL split) + GIN tsv": ([TSV_SQL_WORDS, GIN_TSV], rows),
        "today: tsv (SQL split) + GIN tsv + GIN data": ([TSV_SQL_WORDS, GIN_TSV, GIN_DATA], rows),
        "tsv (Python split) + GIN tsv + GIN data": ([TSV_PY_WORDS, GIN_TSV, GIN_DATA], words),
        "+ writer xid, btree on it (migration 0007)": ([WRITER_XID, WRITER_XID_INDEX], rows),
        "the same, fastupdate off": (
            [TSV_PY_WORDS, GIN_TSV + NO_FASTUPDATE, GIN_DATA + NO_FASTUPDATE],
            words,
        ),
    }
    with psycopg.connect(args.pg, autocommit=True) as conn:
        for round_ in range(args.rounds):
            for name, (ddl, data) in variants.items():
                table = f"bench_idx_{uuid.uuid4().hex[:8]}"
                conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
                try:
                    for statement in ddl:
                        conn.execute(statement.format(t=table))
                    start = time.perf_counter()
                    for s in range(0, len(data), 1000):
                        copy_sql = (
                            f"COPY {table} (tenant, collection, id, data, version, created_at, "
                            "updated_at, deleted_at, search_text) FROM STDIN"
                        )
                        with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                            for row in data[s : s + 1000]:
                                copy.write_row(row)
                    seconds = time.perf_counter() - start
                finally:
                    conn.execute(f"DROP TABLE {table}")
                rate, cost = len(data) / seconds, seconds / len(data) * 1e6
                print(f"round {round_ + 1}  {name:45s} {rate:>9,.0f} rows/s  {cost:5.1f} µs/row")


if __name__ == "__main__":
    main()
