"""Records: multi-row writes, duplicates, savepoints, rollback, reads and listing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from batchops._exceptions import TransientStoreError
from batchops.store import DuplicateRecordError, RecordRow, Store, Tx

MakeRecord = Callable[..., RecordRow]


class Boom(Exception):
    pass


async def _ids(store: Store, tenant: str, collection: str = "people") -> list[str]:
    rows = await store.run(
        lambda tx: tx.list_records(tenant, collection, filters={}, after_id=None, limit=10_000)
    )
    return [r.id for r in rows]


async def test_inserting_many_rows_in_one_call_stores_them_all(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    rows = [make_record(f"r{i:04d}", {"n": i, "name": f"row {i}"}) for i in range(250)]
    await store.run(lambda tx: tx.insert_records(rows))
    assert await _ids(store, tenant) == [f"r{i:04d}" for i in range(250)]
    got = await store.run(lambda tx: tx.get_records(tenant, "people", ["r0007"]))
    assert got["r0007"].data == {"n": 7, "name": "row 7"}


async def test_rows_of_several_collections_and_timestamps_in_one_call_keep_their_own_columns(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    rows = [
        make_record(f"r{i:04d}", {"n": i})
        if i % 3
        else replace(
            make_record(f"r{i:04d}", {"n": i}),
            collection="other",
            version=4,
            created_at="2026-02-03T04:05:06.007Z",
            updated_at="2026-02-04T04:05:06.007Z",
            deleted_at="2026-02-05T04:05:06.007Z",
        )
        for i in range(1200)  # more than one multi-row statement
    ]
    await store.run(lambda tx: tx.insert_records(rows))
    for collection in ("people", "other"):
        want = {r.id: r for r in rows if r.collection == collection}
        ids = tuple(want)

        def read(tx: Tx, c: str = collection, i: tuple[str, ...] = ids) -> dict[str, RecordRow]:
            return tx.get_records(tenant, c, i, include_deleted=True)

        assert await store.run(read) == want


async def test_a_duplicate_id_raises_listing_exactly_the_duplicates_and_writes_nothing(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a"), make_record("b")]))

    def fn(tx: Tx) -> list[str]:
        try:
            with tx.savepoint():
                tx.insert_records(
                    [make_record("new1"), make_record("b"), make_record("new2"), make_record("a")]
                )
        except DuplicateRecordError as exc:
            return exc.ids
        raise AssertionError("no DuplicateRecordError")

    assert await store.run(fn) == ["b", "a"]
    assert await _ids(store, tenant) == ["a", "b"]


async def test_a_failed_insert_leaves_none_of_its_rows_and_the_transaction_goes_on(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a")]))

    def fn(tx: Tx) -> None:
        with pytest.raises(DuplicateRecordError):
            tx.insert_records([make_record("new1"), make_record("a"), make_record("new2")])
        tx.insert_records([make_record("later")])

    await store.run(fn)
    assert await _ids(store, tenant) == ["a", "later"]


async def test_an_id_repeated_within_one_insert_is_reported_as_a_duplicate(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    with pytest.raises(DuplicateRecordError) as info:
        await store.run(lambda tx: tx.insert_records([make_record("x"), make_record("x")]))
    assert info.value.ids == ["x"]
    assert await _ids(store, tenant) == []


async def test_a_soft_deleted_id_still_counts_as_existing(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    gone = replace(make_record("a"), deleted_at="2026-01-02T00:00:00.000Z")
    await store.run(lambda tx: tx.insert_records([gone]))
    assert await store.run(lambda tx: tx.existing_ids(tenant, "people", ["a", "b"])) == {"a"}
    with pytest.raises(DuplicateRecordError):
        await store.run(lambda tx: tx.insert_records([make_record("a")]))


async def test_a_failing_savepoint_rolls_back_only_its_own_writes(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    def fn(tx: Tx) -> None:
        tx.insert_records([make_record("kept1")])
        try:
            with tx.savepoint():
                tx.insert_records([make_record("lost")])
                raise Boom
        except Boom:
            pass
        with tx.savepoint():
            tx.insert_records([make_record("kept2")])

    await store.run(fn)
    assert await _ids(store, tenant) == ["kept1", "kept2"]


async def test_run_rolls_back_everything_when_fn_raises(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    def fn(tx: Tx) -> None:
        tx.insert_records([make_record("a"), make_record("b")])
        with tx.savepoint():
            tx.insert_records([make_record("c")])
        raise Boom

    with pytest.raises(Boom):
        await store.run(fn)
    assert await _ids(store, tenant) == []


async def test_run_returns_what_fn_returns(store: Store) -> None:
    assert await store.run(lambda tx: ("value", tx.dialect)) == ("value", store.dialect)


async def test_get_returns_only_the_rows_found_and_hides_soft_deleted_unless_asked(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    gone = replace(make_record("gone"), deleted_at="2026-01-02T00:00:00.000Z")
    await store.run(lambda tx: tx.insert_records([make_record("a"), gone]))
    found = await store.run(lambda tx: tx.get_records(tenant, "people", ["a", "gone", "nope"]))
    assert set(found) == {"a"}
    every = await store.run(
        lambda tx: tx.get_records(tenant, "people", ["a", "gone"], include_deleted=True)
    )
    assert every["gone"].deleted_at == "2026-01-02T00:00:00.000Z"


async def test_update_writes_data_version_updated_at_and_deleted_at(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a", {"name": "old"})]))
    new = replace(
        make_record("a", {"name": "new", "deep": {"x": [1, None, True]}}),
        version=2,
        updated_at="2026-01-03T00:00:00.000Z",
        deleted_at="2026-01-04T00:00:00.000Z",
    )
    await store.run(lambda tx: tx.update_records([new]))
    got = await store.run(lambda tx: tx.get_records(tenant, "people", ["a"], include_deleted=True))
    assert got["a"] == new


async def test_hard_delete_removes_rows_and_counts_them(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record(i) for i in ("a", "b", "c")]))
    removed = await store.run(lambda tx: tx.delete_records(tenant, "people", ["a", "c", "zz"]))
    assert removed == 2
    assert await _ids(store, tenant) == ["b"]
    assert await store.run(lambda tx: tx.existing_ids(tenant, "people", ["a", "c"])) == set()


async def test_list_orders_by_id_and_pages_with_after_id(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record(i) for i in ("c", "a", "d", "b")]))

    def page(after: str | None) -> Callable[[Tx], list[str]]:
        def fn(tx: Tx) -> list[str]:
            rows = tx.list_records(tenant, "people", filters={}, after_id=after, limit=2)
            return [r.id for r in rows]

        return fn

    assert await store.run(page(None)) == ["a", "b"]
    assert await store.run(page("b")) == ["c", "d"]
    assert await store.run(page("d")) == []


async def test_list_excludes_soft_deleted_records(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    gone = replace(make_record("b"), deleted_at="2026-01-02T00:00:00.000Z")
    await store.run(lambda tx: tx.insert_records([make_record("a"), gone]))
    assert await _ids(store, tenant) == ["a"]


async def test_list_keeps_collections_apart(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(
        lambda tx: tx.insert_records([make_record("a"), make_record("b", collection="pets")])
    )
    assert await _ids(store, tenant, "pets") == ["b"]


async def test_list_filters_on_nested_dot_paths_with_exact_json_types(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    rows = [
        make_record("s", {"team": {"name": "core"}, "v": "1", "tags": ["x", "y"]}),
        make_record("i", {"team": {"name": "core"}, "v": 1, "tags": ["y"]}),
        make_record("f", {"team": {"name": "edge"}, "v": 1.0}),
        make_record("t", {"team": {"name": "core"}, "v": True}),
        make_record("n", {"team": {"name": "core"}, "v": None}),
        make_record("missing", {"team": {"name": "core"}}),
    ]
    await store.run(lambda tx: tx.insert_records(rows))

    async def matching(filters: dict[str, object]) -> list[str]:
        found = await store.run(
            lambda tx: tx.list_records(tenant, "people", filters=filters, after_id=None, limit=50)
        )
        return sorted(r.id for r in found)

    assert await matching({"team.name": "core"}) == ["i", "missing", "n", "s", "t"]
    assert await matching({"v": "1"}) == ["s"]
    assert await matching({"v": 1}) == ["f", "i"]
    assert await matching({"v": True}) == ["t"]
    assert await matching({"v": None}) == ["n"]
    assert await matching({"team.name": "core", "v": 1}) == ["i"]
    assert await matching({"tags.0": "y"}) == ["i"]


async def test_a_filter_on_a_non_scalar_value_is_a_value_error(store: Store, tenant: str) -> None:
    with pytest.raises(ValueError, match="JSON scalar"):
        await store.run(
            lambda tx: tx.list_records(
                tenant, "people", filters={"a": {"b": 1}}, after_id=None, limit=1
            )
        )


async def test_an_update_computed_from_a_stale_version_writes_nothing_and_is_transient(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("r1", {"n": 1})]))
    stale = make_record("r1", {"n": "stale"})  # version 1, as read before a concurrent write
    await store.run(lambda tx: tx.update_records([replace(stale, data={"n": 2}, version=2)]))

    with pytest.raises(TransientStoreError):
        await store.run(lambda tx: tx.update_records([replace(stale, version=2)]))

    got = await store.run(lambda tx: tx.get_records(tenant, "people", ["r1"]))
    assert (got["r1"].data, got["r1"].version) == ({"n": 2}, 2)


async def test_a_row_updated_twice_in_one_call_ends_at_its_last_version(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    row = make_record("r1", {"n": 1})
    await store.run(lambda tx: tx.insert_records([row]))
    await store.run(
        lambda tx: tx.update_records(
            [replace(row, data={"n": 2}, version=2), replace(row, data={"n": 3}, version=3)]
        )
    )
    got = await store.run(lambda tx: tx.get_records(tenant, "people", ["r1"]))
    assert (got["r1"].data, got["r1"].version) == ({"n": 3}, 3)


async def test_transactions_that_take_the_same_named_lock_run_one_after_the_other(
    store: Store,
) -> None:
    inside = 0
    peak = 0

    def hold(tx: Tx) -> None:
        nonlocal inside, peak
        tx.lock("upsert:people:email")
        inside += 1
        peak = max(peak, inside)
        time.sleep(0.05)
        inside -= 1

    await asyncio.gather(*(store.run(hold) for _ in range(4)))
    assert peak == 1


async def test_updating_many_rows_writes_all_of_them_or_none_when_one_is_stale(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    rows = [make_record(f"r{i}", {"n": i}) for i in range(50)]
    await store.run(lambda tx: tx.insert_records(rows))
    updated = [replace(r, data={"n": -1}, version=2) for r in rows]
    await store.run(lambda tx: tx.update_records(updated))
    got = await store.run(lambda tx: tx.get_records(tenant, "people", [r.id for r in rows]))
    assert {(g.data["n"], g.version) for g in got.values()} == {(-1, 2)}

    # Two computed from version 2 (right), one from version 1 (stale: it is at 2).
    mixed = [replace(r, data={"n": -2}, version=3) for r in rows[:2]]
    mixed.append(replace(rows[2], data={"n": -2}, version=2))
    with pytest.raises(TransientStoreError):
        await store.run(lambda tx: tx.update_records(mixed), retries=0)
    got = await store.run(lambda tx: tx.get_records(tenant, "people", [r.id for r in rows[:3]]))
    assert {(g.data["n"], g.version) for g in got.values()} == {(-1, 2)}
