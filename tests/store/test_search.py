"""Full-text search: ranking, filters, totals, hostile input, freshness."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from batchops.store import RecordRow, Store

MakeRecord = Callable[..., RecordRow]


def _search(
    store: Store, tenant: str, query: str, filters: dict[str, Any] | None = None, limit: int = 10
) -> Any:
    return store.run(
        lambda tx: tx.search_records(
            tenant, "people", query=query, filters=filters or {}, limit=limit
        )
    )


async def test_search_ranks_the_better_match_first(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(
        lambda tx: tx.insert_records(
            [
                make_record("weak", {"bio": "ada wrote one note among many other words here"}),
                make_record("strong", {"name": "Ada", "bio": "ada ada ada"}),
                make_record("none", {"bio": "grace"}),
            ]
        )
    )
    hits, total = await _search(store, tenant, "ada")
    assert [row.id for row, _ in hits] == ["strong", "weak"]
    assert total == 2
    assert hits[0][1] > hits[1][1]


async def test_search_matches_strings_nested_in_objects_and_arrays(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(
        lambda tx: tx.insert_records([make_record("a", {"deep": {"list": [{"x": "needle"}]}})])
    )
    hits, _ = await _search(store, tenant, "needle")
    assert [row.id for row, _ in hits] == ["a"]


async def test_search_honours_filters_and_counts_the_total_beyond_the_limit(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    rows = [
        make_record(f"r{i}", {"text": "apple pie", "team": "core" if i % 2 else "edge"})
        for i in range(7)
    ]
    await store.run(lambda tx: tx.insert_records(rows))
    hits, total = await _search(store, tenant, "apple", {"team": "core"}, limit=2)
    assert total == 3
    assert len(hits) == 2
    assert all(row.data["team"] == "core" for row, _ in hits)
    assert (await _search(store, tenant, "apple", limit=0)) == ([], 7)


async def test_every_word_of_the_query_must_match(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(
        lambda tx: tx.insert_records(
            [make_record("both", {"t": "red apple"}), make_record("one", {"t": "red pear"})]
        )
    )
    hits, _ = await _search(store, tenant, "apple red")
    assert [row.id for row, _ in hits] == ["both"]


@pytest.mark.parametrize(
    "query", ['"a" OR (', "NEAR(", "*", "a AND", '"', "col:x", "^x", "a - b", "(((", "-x"]
)
async def test_search_survives_fts_syntax_in_user_input(
    store: Store, tenant: str, make_record: MakeRecord, query: str
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a", {"t": "a b x col"})]))
    hits, total = await _search(store, tenant, query)
    assert total == len(hits)


@pytest.mark.parametrize("query", ["", "   ", "()", '"'])
async def test_a_query_without_words_matches_nothing(
    store: Store, tenant: str, make_record: MakeRecord, query: str
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a", {"t": "anything"})]))
    assert await _search(store, tenant, query) == ([], 0)


async def test_search_sees_updated_text_after_update(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a", {"t": "before"})]))
    await store.run(lambda tx: tx.update_records([make_record("a", {"t": "after"})]))
    assert (await _search(store, tenant, "before"))[1] == 0
    hits, _ = await _search(store, tenant, "after")
    assert [row.id for row, _ in hits] == ["a"]


async def test_a_record_updated_twice_in_one_call_is_found_by_its_last_text_only(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a", {"bio": "alpha"})]))
    await _search(store, tenant, "alpha")  # indexes the row, so the updates re-index it
    first = replace(make_record("a", {"bio": "bravo"}), version=2)
    second = replace(make_record("a", {"bio": "charlie"}), version=3)
    await store.run(lambda tx: tx.update_records([first, second]))
    found = {
        word: [row.id for row, _ in (await _search(store, tenant, word))[0]]
        for word in ("alpha", "bravo", "charlie")
    }
    assert found == {"alpha": [], "bravo": [], "charlie": ["a"]}
    got = await store.run(lambda tx: tx.get_records(tenant, "people", ["a"]))
    assert got["a"].version == 3


async def test_search_skips_soft_deleted_and_hard_deleted_records(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(
        lambda tx: tx.insert_records(
            [make_record(i, {"t": "word"}) for i in ("soft", "hard", "live")]
        )
    )
    soft = replace(make_record("soft", {"t": "word"}), deleted_at="2026-01-02T00:00:00.000Z")
    await store.run(lambda tx: tx.update_records([soft]))
    await store.run(lambda tx: tx.delete_records(tenant, "people", ["hard"]))
    hits, total = await _search(store, tenant, "word")
    assert [row.id for row, _ in hits] == ["live"]
    assert total == 1
