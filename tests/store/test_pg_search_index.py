"""PostgreSQL's search index off the write path (store.pg_search): the indexer's watermark
never passes a running writer, a search is exact whatever the indexer's lag, and the
indexer works one step at a time, one process at a time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from tests.conftest import TIMESTAMP, database_at

from batchops._exceptions import StoreTimeoutError
from batchops.store import PostgresStore, RecordRow, open_store
from batchops.store.pg_search import index_step


@pytest.fixture
async def pg(own_pg_url: str) -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store with no background indexer, on this module's own database."""
    store = await open_store(own_pg_url, pool_size=3, index_search=False)
    assert isinstance(store, PostgresStore)
    try:
        await _index_all(store)
        yield store
    finally:
        await store.close()


def _row(tenant: str, id_: str, text: str, version: int = 1) -> RecordRow:
    return RecordRow(tenant, "people", id_, {"t": text}, version, TIMESTAMP, TIMESTAMP)


async def _index_all(store: PostgresStore) -> int:
    total = 0
    while indexed := await store.index_search():
        total += indexed
    return total


async def _ids(store: PostgresStore, tenant: str, query: str) -> list[str]:
    hits, _ = await store.run(
        lambda tx: tx.search_records(tenant, "people", query=query, filters={}, limit=1000)
    )
    return sorted(row.id for row, _ in hits)


def _indexed(url: str, tenant: str) -> dict[str, str]:
    """id -> the words the index holds for the record (record_search, read directly)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, array_to_string(tsvector_to_array(tsv), ' ') FROM record_search "
            "WHERE tenant = %s",
            (tenant,),
        ).fetchall()
    return dict(rows)


async def test_the_indexer_copies_committed_rows_into_the_index(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "red apple")]))
    assert _indexed(own_pg_url, tenant) == {}
    assert await _index_all(pg) == 1
    assert _indexed(own_pg_url, tenant) == {"a": "apple red"}


async def test_a_row_written_by_a_transaction_older_than_a_committed_one_is_never_skipped(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    # The old writer takes its transaction id first, a newer one commits first, the indexer
    # runs in between: the watermark must stay below the old writer's id, or its row would
    # sit under the watermark without an index entry — found by no search, ever. So the
    # newer row waits for the old writer (and is found meanwhile, on the fly).
    with psycopg.connect(own_pg_url) as old:
        old.execute("SELECT pg_current_xact_id()")
        await pg.run(lambda tx: tx.insert_records([_row(tenant, "new", "shared word")]))
        assert await _index_all(pg) == 0
        assert await _ids(pg, tenant, "shared") == ["new"]
        old.execute(
            "INSERT INTO records (tenant, collection, id, data, version, created_at, "
            "updated_at, search_text) VALUES (%s, 'people', 'old', '{}', 1, '', '', "
            "'shared word')",
            (tenant,),
        )
        old.commit()
    assert await _ids(pg, tenant, "shared") == ["new", "old"]
    assert await _index_all(pg) == 2
    assert set(_indexed(own_pg_url, tenant)) == {"new", "old"}
    assert await _ids(pg, tenant, "shared") == ["new", "old"]


async def test_a_long_transaction_in_another_database_does_not_hold_the_indexer_back(
    pg: PostgresStore, pg_url: str, own_pg_url: str, tenant: str
) -> None:
    assert pg_url.rsplit("/", 1)[1] != own_pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # running, with an older id
        await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "x")]))
        assert await _index_all(pg) == 1


async def test_a_search_in_the_writing_transaction_finds_its_own_rows(
    pg: PostgresStore, tenant: str
) -> None:
    def write_then_search(tx: Any) -> list[str]:
        tx.insert_records([_row(tenant, "mine", "fresh words")])
        hits, _ = tx.search_records(tenant, "people", query="fresh", filters={}, limit=5)
        return [row.id for row, _ in hits]

    assert await pg.run(write_then_search) == ["mine"]


async def test_a_row_updated_after_indexing_is_found_by_its_new_text_before_and_after_the_next_step(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "before")]))
    await _index_all(pg)
    await pg.run(lambda tx: tx.update_records([_row(tenant, "a", "after", version=2)]))
    assert _indexed(own_pg_url, tenant) == {"a": "before"}  # stale, and not used
    assert (await _ids(pg, tenant, "before"), await _ids(pg, tenant, "after")) == ([], ["a"])
    await _index_all(pg)
    assert _indexed(own_pg_url, tenant) == {"a": "after"}
    assert (await _ids(pg, tenant, "before"), await _ids(pg, tenant, "after")) == ([], ["a"])


async def test_scores_are_the_same_whether_a_row_is_indexed_or_not(
    pg: PostgresStore, tenant: str
) -> None:
    rows = [
        _row(tenant, "a", "ada ada lovelace"),
        _row(tenant, "b", "ada"),
        _row(tenant, "c", "lovelace wrote notes on ada"),
    ]
    await pg.run(lambda tx: tx.insert_records(rows))

    async def ranked() -> list[tuple[str, float]]:
        hits, _ = await pg.run(
            lambda tx: tx.search_records(tenant, "people", query="ada", filters={}, limit=9)
        )
        return [(row.id, score) for row, score in hits]

    on_the_fly = await ranked()
    await _index_all(pg)
    assert await ranked() == on_the_fly
    assert len(on_the_fly) == 3


async def test_an_indexed_and_an_unindexed_row_are_ranked_and_counted_together(
    pg: PostgresStore, tenant: str
) -> None:
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "old", "kiwi")]))
    await _index_all(pg)
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "new", "kiwi kiwi")]))
    hits, total = await pg.run(
        lambda tx: tx.search_records(tenant, "people", query="kiwi", filters={}, limit=1)
    )
    assert ([row.id for row, _ in hits], total) == (["new"], 2)


async def test_a_hard_delete_removes_the_rows_index_entry(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "x"), _row(tenant, "b", "x")]))
    await _index_all(pg)
    await pg.run(lambda tx: tx.delete_records(tenant, "people", ["a"]))
    assert set(_indexed(own_pg_url, tenant)) == {"b"}


async def test_a_delete_outside_the_store_removes_the_rows_index_entry(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    # Search trusts the entries of rows below the watermark: one left behind would be
    # counted by every search of the collection.
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "x"), _row(tenant, "b", "x")]))
    await _index_all(pg)
    with psycopg.connect(own_pg_url) as conn:
        conn.execute("DELETE FROM records WHERE tenant = %s AND id = 'a'", (tenant,))
    assert set(_indexed(own_pg_url, tenant)) == {"b"}
    hits, total = await pg.run(
        lambda tx: tx.search_records(tenant, "people", query="x", filters={}, limit=5)
    )
    assert ([row.id for row, _ in hits], total) == (["b"], 1)


async def test_a_record_deleted_and_created_again_is_found_by_its_new_text(
    pg: PostgresStore, tenant: str
) -> None:
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "first")]))
    await _index_all(pg)
    await pg.run(lambda tx: tx.delete_records(tenant, "people", ["a"]))
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "second")]))
    assert (await _ids(pg, tenant, "first"), await _ids(pg, tenant, "second")) == ([], ["a"])


async def test_soft_deleted_rows_are_not_indexed(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    gone = replace(_row(tenant, "gone", "x"), deleted_at=TIMESTAMP)
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "live", "x"), gone]))
    await _index_all(pg)
    assert set(_indexed(own_pg_url, tenant)) == {"live"}


async def test_a_row_soft_deleted_after_indexing_loses_its_entry_at_the_next_step(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "x"), _row(tenant, "b", "x")]))
    await _index_all(pg)
    gone = replace(_row(tenant, "a", "x", version=2), deleted_at=TIMESTAMP)
    await pg.run(lambda tx: tx.update_records([gone]))
    assert await _ids(pg, tenant, "x") == ["b"]  # pending: its entry is not trusted
    await _index_all(pg)
    assert set(_indexed(own_pg_url, tenant)) == {"b"}
    assert await _ids(pg, tenant, "x") == ["b"]


async def test_a_delete_waits_for_a_running_indexer_step(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    # A step that read the row before the delete committed would otherwise add its entry
    # after the delete removed it: an entry without a record.
    await pg.run(lambda tx: tx.insert_records([_row(tenant, "a", "x")]))
    with psycopg.connect(own_pg_url) as indexer:
        indexer.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('batchops:search-indexer', 0))"
        )

        def delete(tx: Any) -> int:
            tx.set_statement_timeout(0.2)
            removed: int = tx.delete_records(tenant, "people", ["a"])
            return removed

        with pytest.raises(StoreTimeoutError):
            await pg.run(delete)
    assert await pg.run(delete) == 1


async def test_one_step_indexes_at_most_a_chunk_and_never_splits_a_transaction(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    for t in range(3):  # three transactions of four rows
        rows = [_row(tenant, f"t{t}r{r}", "x") for r in range(4)]
        await pg.run(lambda tx, rows=rows: tx.insert_records(rows))  # type: ignore[misc]
    with psycopg.connect(own_pg_url, autocommit=True) as conn:
        # A chunk of 6 ends inside the second transaction: the step stops before it.
        assert index_step(conn, chunk=6) == 4
        # A chunk smaller than one transaction: that transaction whole.
        assert index_step(conn, chunk=2) == 4
        assert index_step(conn, chunk=100) == 4
        assert index_step(conn, chunk=100) == 0


async def test_only_one_indexer_works_at_a_time(pg: PostgresStore, own_pg_url: str) -> None:
    with psycopg.connect(own_pg_url) as other:
        other.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('batchops:search-indexer', 0))"
        )
        assert await pg.index_search() is None
    assert await pg.index_search() == 0


async def _background(url: str, *, idle_s: float, max_lag_s: float) -> PostgresStore:
    store = await open_store(url, pool_size=2)
    assert isinstance(store, PostgresStore)
    store.INDEX_INTERVAL_S = 0.02
    store.IDLE_BEFORE_INDEXING_S = idle_s
    store.MAX_INDEX_LAG_S = max_lag_s
    return store


async def _write_for(store: PostgresStore, tenant: str, seconds: float) -> list[str]:
    """Insert a row every 20 ms for ``seconds``; the ids indexed meanwhile (read after
    each write)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    i = 0
    seen: set[str] = set()
    while loop.time() < end:
        row = _row(tenant, f"r{i}", "busy")
        await store.run(lambda tx, row=row: tx.insert_records([row]))  # type: ignore[misc]
        seen |= set(_indexed(store.url, tenant))
        i += 1
        await asyncio.sleep(0.02)
    return sorted(seen)


async def test_the_background_indexer_waits_while_writes_keep_coming_then_catches_up(
    own_pg_url: str, tenant: str
) -> None:
    store = await _background(own_pg_url, idle_s=0.3, max_lag_s=60)
    try:
        assert await _write_for(store, tenant, 1.0) == []
        for _ in range(100):
            if len(_indexed(own_pg_url, tenant)) > 0:
                break
            await asyncio.sleep(0.02)
        assert _indexed(own_pg_url, tenant)
    finally:
        await store.close()


async def test_the_background_indexer_steps_in_at_its_lag_bound_even_under_writes(
    own_pg_url: str, tenant: str
) -> None:
    store = await _background(own_pg_url, idle_s=60, max_lag_s=0.2)
    try:
        assert await _write_for(store, tenant, 1.0) != []
    finally:
        await store.close()


async def test_concurrent_writers_and_the_indexer_lose_no_row_to_search(
    pg: PostgresStore, tenant: str
) -> None:
    # Four writers insert and update while the indexer runs back to back; every committed
    # row must be found by its last text at every moment, and after the final step.
    stop = threading.Event()
    written: dict[str, str] = {}

    async def writer(w: int) -> None:
        for i in range(25):
            row = _row(tenant, f"w{w}-{i}", f"word{w} gen{i % 3}")
            await pg.run(lambda tx, row=row: tx.insert_records([row]))  # type: ignore[misc]
            written[row.id] = f"gen{i % 3}"
            if i % 5 == 4:
                again = replace(row, data={"t": f"word{w} regen"}, version=2)
                await pg.run(lambda tx, again=again: tx.update_records([again]))  # type: ignore[misc]
                written[row.id] = "regen"

    async def indexer() -> None:
        while not stop.is_set():
            await pg.index_search()

    async def checker() -> None:
        while not stop.is_set():
            expected = {i for i, word in written.items() if word == "regen"}
            found = set(await _ids(pg, tenant, "regen"))
            assert expected <= found
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(indexer()), asyncio.create_task(checker())]
    await asyncio.gather(*(writer(w) for w in range(4)))
    stop.set()
    await asyncio.gather(*tasks)
    await _index_all(pg)
    for word in ("gen0", "gen1", "gen2", "regen"):
        assert await _ids(pg, tenant, word) == sorted(i for i, g in written.items() if g == word)


async def test_concurrent_deletes_restores_and_the_indexer_leave_search_exact(
    pg: PostgresStore, own_pg_url: str, tenant: str
) -> None:
    # Writers soft-delete, restore and hard-delete while the indexer runs back to back:
    # a search never returns a record that was not live at some moment of the search,
    # never misses one live all along, counts what it returns, and once the index has
    # caught up it holds exactly the live records.
    stop = threading.Event()
    # live: certainly live (marked after the write that made it live committed, unmarked
    # before the one that ends it starts); possible: maybe live (the other way round).
    live: set[str] = set()
    possible: set[str] = set()
    went_possible: list[str] = []

    async def write(fn: Any, id_: str, *, makes_live: bool) -> None:
        if makes_live:
            possible.add(id_)
            went_possible.append(id_)
        else:
            live.discard(id_)
        await pg.run(fn)
        if makes_live:
            live.add(id_)
        else:
            possible.discard(id_)

    async def writer(w: int) -> None:
        for i in range(20):
            row = _row(tenant, f"w{w}-{i}", "shared")
            gone = replace(row, version=2, deleted_at=TIMESTAMP)
            back = replace(row, version=3)
            await write(lambda tx, r=row: tx.insert_records([r]), row.id, makes_live=True)
            if i % 4 == 1:  # soft-deleted
                await write(lambda tx, r=gone: tx.update_records([r]), row.id, makes_live=False)
            if i % 8 == 1:  # ... and restored
                await write(lambda tx, r=back: tx.update_records([r]), row.id, makes_live=True)
            if i % 4 == 2:  # hard-deleted
                await write(
                    lambda tx, i_=row.id: tx.delete_records(tenant, "people", [i_]),
                    row.id,
                    makes_live=False,
                )

    async def indexer() -> None:
        while not stop.is_set():
            await pg.index_search()

    async def checker() -> None:
        while not stop.is_set():
            before, maybe, mark = set(live), set(possible), len(went_possible)
            hits, total = await pg.run(
                lambda tx: tx.search_records(
                    tenant, "people", query="shared", filters={}, limit=1000
                )
            )
            found = {row.id for row, _ in hits}
            assert (before & live) <= found  # live all along: found
            assert found <= maybe | set(went_possible[mark:])  # found: maybe live then
            assert total == len(found)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(indexer()), asyncio.create_task(checker())]
    await asyncio.gather(*(writer(w) for w in range(4)))
    stop.set()
    await asyncio.gather(*tasks)
    await _index_all(pg)
    assert await _ids(pg, tenant, "shared") == sorted(live)
    assert set(_indexed(own_pg_url, tenant)) == live


@pytest.fixture
def database_at_0006() -> Iterator[str]:
    with database_at("0007") as url:
        yield url


@pytest.fixture
def database_at_0007() -> Iterator[str]:
    with database_at("0008") as url:
        yield url


async def test_migration_0008_removes_entries_whose_records_are_gone(
    database_at_0007: str, tenant: str
) -> None:
    with psycopg.connect(database_at_0007) as conn:
        conn.execute(
            "INSERT INTO record_search (tenant, collection, id, txid, tsv) "
            "VALUES (%s, 'people', 'ghost', '1', to_tsvector('simple', 'boo'))",
            (tenant,),
        )
    assert _indexed(database_at_0007, tenant) == {"ghost": "boo"}
    store = await open_store(database_at_0007, pool_size=1, index_search=False)
    await store.close()
    assert _indexed(database_at_0007, tenant) == {}


async def test_truncating_records_empties_the_index(database_at_0006: str, tenant: str) -> None:
    store = await open_store(database_at_0006, pool_size=1, index_search=False)
    assert isinstance(store, PostgresStore)
    try:
        await store.run(lambda tx: tx.insert_records([_row(tenant, "a", "x")]))
        await _index_all(store)
        assert _indexed(database_at_0006, tenant) == {"a": "x"}
        with psycopg.connect(database_at_0006) as conn:
            conn.execute("TRUNCATE records")
        assert _indexed(database_at_0006, tenant) == {}
    finally:
        await store.close()


async def test_the_migration_keeps_existing_records_searchable_through_the_index(
    database_at_0006: str, tenant: str
) -> None:
    with psycopg.connect(database_at_0006) as conn:
        for id_, deleted in (("live", None), ("gone", TIMESTAMP)):
            conn.execute(
                "INSERT INTO records (tenant, collection, id, data, version, created_at, "
                "updated_at, deleted_at, search_text) "
                "VALUES (%s, 'people', %s, '{}', 1, '', '', %s, 'old news')",
                (tenant, id_, deleted),
            )
    store = await open_store(database_at_0006, pool_size=1, index_search=False)
    assert isinstance(store, PostgresStore)
    try:
        assert _indexed(database_at_0006, tenant) == {"live": "news old"}
        assert await _ids(store, tenant, "news") == ["live"]
        assert await store.index_search() == 0  # nothing was left for the indexer
    finally:
        await store.close()
