"""find_ids_by_field (the upsert-key lookup of imports) and the index that makes it a lookup
rather than a scan of the collection, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from batchops.store import RecordRow, Store, Tx
from batchops.store._query import field_index_name
from batchops.store.sql.dialect import POSTGRES, SQLITE
from batchops.store.sql.records import field_sql

MakeRecord = Callable[..., RecordRow]


async def _seed(store: Store, tenant: str, make_record: MakeRecord) -> None:
    rows = [
        make_record("a", {"email": "a@x.org", "n": 42, "nested": {"code": "k1"}, "ok": True}),
        make_record("b", {"email": "b@x.org", "n": 7, "ok": False}),
        replace(make_record("gone", {"email": "gone@x.org"}), deleted_at="2026-01-01T00:00:00Z"),
        make_record("other", {"email": "a@x.org"}, collection="elsewhere"),
        make_record("stranger", {"email": "a@x.org"}, tenant_=f"{tenant}_b"),
    ]
    await store.run(lambda tx: tx.insert_records(rows))


async def _lookups(store: Store, tenant: str) -> list[dict[str, str]]:
    def run(tx: Tx) -> list[dict[str, str]]:
        return [
            tx.find_ids_by_field(tenant, "people", "email", ["a@x.org", "gone@x.org", "z"]),
            tx.find_ids_by_field(tenant, "people", "n", ["42", "7", "8"]),
            tx.find_ids_by_field(tenant, "people", "nested.code", ["k1"]),
            tx.find_ids_by_field(tenant, "people", "ok", ["1", "0", "true"]),
        ]

    return await store.run(run)


# Booleans compare as "1" / "0" on both backends (SQLite's text of JSON true / false, what
# the import runner's upsert keys use).
EXPECTED = [{"a@x.org": "a"}, {"42": "a", "7": "b"}, {"k1": "a"}, {"1": "a", "0": "b"}]


async def test_lookups_match_live_records_of_the_collection_by_text(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await _seed(store, tenant, make_record)
    assert await _lookups(store, tenant) == EXPECTED


async def test_lookups_give_the_same_answers_once_the_field_indexes_exist(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await _seed(store, tenant, make_record)

    def ensure(tx: Tx) -> None:
        for path in ("email", "n", "nested.code", "ok"):
            tx.ensure_field_index(tenant, "people", path)
            tx.ensure_field_index(tenant, "people", path)  # a second call is a no-op

    await store.run(ensure)
    assert await _lookups(store, tenant) == EXPECTED


async def test_a_tenant_name_with_quotes_is_a_literal_not_sql(
    store: Store, make_record: MakeRecord
) -> None:
    tenant = "o'hara\"; DROP TABLE records; --"
    await store.run(lambda tx: tx.insert_records([make_record("q", {"k": "v"}, tenant_=tenant)]))
    await store.run(lambda tx: tx.ensure_field_index(tenant, "people", "k"))
    found = await store.run(lambda tx: tx.find_ids_by_field(tenant, "people", "k", ["v"]))
    assert found == {"v": "q"}


async def test_the_lookup_uses_the_field_index_once_it_exists(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await _seed(store, tenant, make_record)
    await store.run(lambda tx: tx.ensure_field_index(tenant, "people", "email"))
    name = field_index_name(tenant, "people", "email")

    def plan(tx: Any) -> str:
        # The query find_ids_by_field runs, explained (the planner is kept off sequential
        # scans on PostgreSQL: its table here is tiny).
        if store.dialect == "sqlite":
            expr, scope = field_sql(SQLITE, tenant, "people", "email")
            rows = tx._execute(
                f"EXPLAIN QUERY PLAN SELECT id FROM records INDEXED BY {name} WHERE {scope} "
                f"AND {expr} IN (SELECT value FROM json_each(?))",
                ('["a@x.org"]',),
            ).fetchall()  # INDEXED BY fails unless the index can serve the query
            return " ".join(str(row[-1]) for row in rows)
        expr, scope = field_sql(POSTGRES, tenant, "people", "email")
        tx._execute("SET LOCAL enable_seqscan = off")
        rows = tx._execute(
            f"EXPLAIN SELECT id FROM records WHERE {scope} AND {expr} = ANY(%s)",
            (["a@x.org"],),
        ).fetchall()
        return " ".join(str(row[0]) for row in rows)

    assert name in await store.run(plan)
