"""Search and filters agree between the backends on one shared corpus.

The same records go into a SQLite store and a PostgreSQL store; every filter (lists and
counts) and every search of the matrix below must find the same records on both — and on
PostgreSQL both before and after its search index has caught up (store.pg_search). Ranking
is each backend's own (bm25 vs ts_rank), so searches compare the set found and the total;
lists compare ids in order.

The corpus holds what tells filters apart: 30 vs 30.0 vs "30", true vs 1, null vs a
missing key, a scalar vs an array holding it, nested paths, array indexes, soft-deleted
rows; and text with emails, URLs, hyphens and underscores for search. (Diacritics are
left out: SQLite ignores them and PostgreSQL does not, a known difference tested in
tests/store/test_search.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from batchops.store import PostgresStore, RecordRow, Store, open_store
from tests.conftest import TIMESTAMP, make_sqlite_url

_TEAMS = ["core", "web", "ops"]
_CITIES = ["Paris", "Lyon", "Nantes", "paris"]


def _data(i: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": f"person {i}",
        "email": f"p{i}@{'example' if i % 2 else 'corp'}.com",
        "team": _TEAMS[i % 3],
        "age": [30, 30.0, "30", 31, 45][i % 5],
        "active": [True, False, 1, 0][i % 4],
        "address": {"city": _CITIES[i % 4], "zip": f"{i % 7:05d}"},
        "tags": [["alpha", "beta"], ["beta"], "alpha", []][i % 4],
        "bio": [
            "builds state-of-the-art bulk APIs",
            "see https://docs.example.com/guide/setup for snake_case_names",
            "fixed in release 2.10.3",
            "likes fast batches and quiet queues",
        ][i % 4],
    }
    if i % 6 == 0:
        data["nick"] = None
    elif i % 6 == 1:
        data["nick"] = f"n{i}"
    return data


def _corpus(tenant: str) -> list[RecordRow]:
    rows = [
        RecordRow(tenant, "people", f"r{i:03d}", _data(i), 1, TIMESTAMP, TIMESTAMP)
        for i in range(48)
    ]
    # Every seventh record is soft-deleted: found by no filter and no search.
    return [replace(r, deleted_at=TIMESTAMP) if n % 7 == 3 else r for n, r in enumerate(rows)]


FILTERS: dict[str, dict[str, Any]] = {
    "a string": {"team": "core"},
    "an integer, which 30.0 equals": {"age": 30},
    "a float, which 30 equals": {"age": 30.0},
    "a string that looks like a number": {"age": "30"},
    "true, which 1 does not equal": {"active": True},
    "1, which true does not equal": {"active": 1},
    "false": {"active": False},
    "null, which a missing key is not": {"nick": None},
    "a nested path": {"address.city": "Paris"},
    "a nested path is case-sensitive": {"address.city": "paris"},
    "a string with leading zeros": {"address.zip": "00004"},
    "an array index": {"tags.0": "alpha"},
    "a scalar that an array holds is not equal to it": {"tags": "alpha"},
    "two filters": {"team": "web", "active": False},
    "a path that no record has": {"missing.path": 1},
}

QUERIES = [
    "person",
    "example com",
    "p7@example.com",
    "state-of-the-art",
    "snake_case_names",
    "2.10.3",
    "docs example guide",
    "quiet queues",
    "nobody",
]


@pytest.fixture(scope="module")
def corpus_tenant() -> str:
    import uuid

    return f"parity_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def stores(
    tmp_path: Path, pg_url: str, corpus_tenant: str
) -> AsyncIterator[tuple[Store, PostgresStore]]:
    sqlite = await open_store(make_sqlite_url(tmp_path / "parity.db"))
    pg = await open_store(pg_url, pool_size=2, index_search=False)
    assert isinstance(pg, PostgresStore)
    rows = _corpus(corpus_tenant)
    try:
        await sqlite.run(lambda tx: tx.insert_records(rows))
        await pg.run(lambda tx: tx.delete_records(corpus_tenant, "people", [r.id for r in rows]))
        await pg.run(lambda tx: tx.insert_records(rows))
        yield sqlite, pg
    finally:
        await sqlite.close()
        await pg.close()


async def _lists(store: Store, tenant: str, filters: dict[str, Any]) -> tuple[list[str], int]:
    def read(tx: Any) -> tuple[list[str], int]:
        rows = tx.list_records(tenant, "people", filters=filters, after_id=None, limit=1000)
        return [r.id for r in rows], tx.count_records(tenant, "people", filters=filters)

    result: tuple[list[str], int] = await store.run(read)
    return result


async def _search(store: Store, tenant: str, query: str, filters: dict[str, Any]) -> Any:
    hits, total = await store.run(
        lambda tx: tx.search_records(tenant, "people", query=query, filters=filters, limit=1000)
    )
    return sorted(row.id for row, _ in hits), total


async def _catch_up(pg: PostgresStore) -> None:
    while await pg.index_search():
        pass


@pytest.mark.parametrize("filters", list(FILTERS.values()), ids=list(FILTERS))
@pytest.mark.parametrize("index", ["as written", "indexed"])
async def test_a_filter_finds_the_same_records_on_both_backends(
    stores: tuple[Store, PostgresStore], corpus_tenant: str, filters: dict[str, Any], index: str
) -> None:
    sqlite, pg = stores
    if index == "indexed":
        await _catch_up(pg)
    expected = await _lists(sqlite, corpus_tenant, filters)
    assert await _lists(pg, corpus_tenant, filters) == expected


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("index", ["as written", "indexed"])
async def test_a_search_finds_the_same_records_on_both_backends(
    stores: tuple[Store, PostgresStore], corpus_tenant: str, query: str, index: str
) -> None:
    sqlite, pg = stores
    if index == "indexed":
        await _catch_up(pg)
    expected = await _search(sqlite, corpus_tenant, query, {})
    assert await _search(pg, corpus_tenant, query, {}) == expected


@pytest.mark.parametrize("filters", list(FILTERS.values()), ids=list(FILTERS))
async def test_a_filtered_search_finds_the_same_records_on_both_backends(
    stores: tuple[Store, PostgresStore], corpus_tenant: str, filters: dict[str, Any]
) -> None:
    sqlite, pg = stores
    expected = await _search(sqlite, corpus_tenant, "person", filters)
    assert await _search(pg, corpus_tenant, "person", filters) == expected


async def test_the_corpus_tells_the_filters_apart(
    stores: tuple[Store, PostgresStore], corpus_tenant: str
) -> None:
    # Guards the matrix: each filter must find some records and not all of them (else
    # agreeing on it would prove little) — except the path no record has.
    sqlite, _ = stores
    everyone = (await _lists(sqlite, corpus_tenant, {}))[1]
    for name, filters in FILTERS.items():
        found = (await _lists(sqlite, corpus_tenant, filters))[1]
        if name == "a path that no record has":
            assert found == 0
        else:
            assert 0 < found < everyone, name
