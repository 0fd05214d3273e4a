"""Big multi-row inserts (import chunks): on PostgreSQL, groups of ``COPY_MIN_ROWS`` rows or
more go through COPY; the contract of ``insert_records`` is the same as for single rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from batchops.store import DuplicateRecordError, RecordRow, Store, Tx
from batchops.store.postgres import COPY_MIN_ROWS, PostgresStore, PostgresTx

MakeRecord = Callable[..., RecordRow]

BIG = 520  # an import chunk; the tests below name rows up to 300
assert BIG >= COPY_MIN_ROWS
AWKWARD = "tab\there, new\nline, back\\slash, \\N, quote \" and 'single', ünïcødé ✓, \r end"


async def _ids(store: Store, tenant: str) -> list[str]:
    rows = await store.run(
        lambda tx: tx.list_records(tenant, "people", filters={}, after_id=None, limit=10_000)
    )
    return [r.id for r in rows]


async def test_a_big_group_stores_every_row_with_its_exact_data(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    rows = [
        make_record(f"r{i:04d}", {"n": i, "text": AWKWARD, "nested": {"ok": i % 2 == 0}})
        for i in range(BIG)
    ]
    rows[3] = replace(rows[3], deleted_at="2026-01-02T00:00:00.000Z", version=4)
    await store.run(lambda tx: tx.insert_records(rows))

    got = await store.run(
        lambda tx: tx.get_records(tenant, "people", [r.id for r in rows], include_deleted=True)
    )
    assert [got[r.id] for r in rows] == rows
    assert len(await _ids(store, tenant)) == BIG - 1  # one of them is soft-deleted


async def test_a_big_group_is_searchable_at_once(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    rows = [make_record(f"r{i:04d}", {"name": f"person {i}"}) for i in range(BIG)]
    rows[17] = make_record("r0017", {"name": "Zanzibar Quokka"})

    def fn(tx: Tx) -> list[str]:
        tx.insert_records(rows)
        hits, total = tx.search_records(tenant, "people", query="quokka", filters={}, limit=10)
        assert total == 1
        return [row.id for row, _ in hits]

    assert await store.run(fn) == ["r0017"]


async def test_a_big_group_with_existing_or_repeated_ids_names_them_and_writes_nothing(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    gone = replace(make_record("old-deleted"), deleted_at="2026-01-02T00:00:00.000Z")
    await store.run(lambda tx: tx.insert_records([make_record("old"), gone]))
    rows = [make_record(f"n{i:04d}") for i in range(BIG)]
    rows[10] = make_record("old")
    rows[200] = make_record("old-deleted")
    rows[300] = make_record("n0299")  # repeated within the group

    def fn(tx: Tx) -> list[str]:
        try:
            with tx.savepoint():
                tx.insert_records(rows)
        except DuplicateRecordError as exc:
            duplicates = exc.ids
        else:
            raise AssertionError("no DuplicateRecordError")
        # The transaction goes on: a clean big group right after is written.
        tx.insert_records([make_record(f"m{i:04d}") for i in range(BIG)])
        return duplicates

    assert sorted(await store.run(fn)) == ["n0299", "old", "old-deleted"]
    ids = await _ids(store, tenant)
    assert not any(i.startswith("n") for i in ids)
    assert ids == [f"m{i:04d}" for i in range(BIG)] + ["old"]


async def test_a_big_group_with_a_clash_outside_a_savepoint_still_writes_nothing(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("taken")]))
    rows = [make_record(f"n{i:04d}") for i in range(BIG)]
    rows[-1] = make_record("taken")

    def fn(tx: Tx) -> list[str]:
        try:
            tx.insert_records(rows)
        except DuplicateRecordError as exc:
            tx.insert_records([make_record("after")])
            return exc.ids
        raise AssertionError("no DuplicateRecordError")

    assert await store.run(fn) == ["taken"]
    assert await _ids(store, tenant) == ["after", "taken"]


async def test_on_postgresql_every_group_of_two_rows_or_more_is_one_copy(
    store: Store, tenant: str, make_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("COPY is PostgreSQL's: SQLite writes a group with multi-row INSERTs")
    copies: list[int] = []
    real = PostgresTx._copy_records

    def spy(self: PostgresTx, params: Any) -> bool:
        copies.append(len(params))
        return real(self, params)

    monkeypatch.setattr(PostgresTx, "_copy_records", spy)
    await store.run(lambda tx: tx.insert_records([make_record("single")]))
    await store.run(lambda tx: tx.insert_records([make_record("a"), make_record("b")]))
    await store.run(lambda tx: tx.insert_records([make_record(f"c{i}") for i in range(100)]))
    assert copies == [2, 100]
    assert len(await _ids(store, tenant)) == 103
