"""Full-text search: ranking, filters, totals, hostile input, freshness, what a word is.

Every test runs on SQLite and twice on PostgreSQL: with its rows as written (the search
evaluates them on the fly) and with the search index caught up before every unit of work
(they come from the GIN index): see store.pg_search.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, TypeVar, cast

import psycopg
import pytest
from tests.conftest import make_sqlite_url

from batchops.store import PostgresStore, RecordRow, Store, Tx, migrate, open_store
from batchops.store._query import search_tokens

MakeRecord = Callable[..., RecordRow]
T = TypeVar("T")


class _IndexedFirst:
    """A PostgreSQL store whose search index is caught up before every unit of work."""

    dialect = "postgresql"

    def __init__(self, inner: PostgresStore) -> None:
        self.inner = inner

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        while await self.inner.index_search():
            pass
        return await self.inner.run(fn, retries=retries)


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-indexed"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return make_sqlite_url(tmp_path / "batchops.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(request: pytest.FixtureRequest, store_url: str) -> AsyncIterator[Store]:
    # No background indexer: what a search reads from depends on the test's id only.
    opened = await open_store(store_url, pool_size=2, index_search=False)
    try:
        if request.node.callspec.params["store_url"] == "postgresql-indexed":
            assert isinstance(opened, PostgresStore)
            yield cast(Store, _IndexedFirst(opened))
        else:
            yield opened
    finally:
        await opened.close()


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
    after = replace(make_record("a", {"t": "after"}), version=2)  # a write bumps the version
    await store.run(lambda tx: tx.update_records([after]))
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
    soft = replace(
        make_record("soft", {"t": "word"}), version=2, deleted_at="2026-01-02T00:00:00.000Z"
    )
    await store.run(lambda tx: tx.update_records([soft]))
    await store.run(lambda tx: tx.delete_records(tenant, "people", ["hard"]))
    hits, total = await _search(store, tenant, "word")
    assert [row.id for row, _ in hits] == ["live"]
    assert total == 1


# -- what a word is ---------------------------------------------------------------------------
# Both backends split text into runs of letters and digits (search_tokens); punctuation,
# underscores and combining marks separate words. PostgreSQL's own parser would keep an
# email, URL, host, path or version as one token, so it is fed the words only (migration
# 0005_search_words).


async def _found(
    store: Store, tenant: str, make_record: MakeRecord, text: str, query: str
) -> tuple[list[str], int]:
    """Insert record "a" with ``text``, search ``query``: (ids found, total)."""
    await store.run(lambda tx: tx.insert_records([make_record("a", {"t": text})]))
    hits, total = await _search(store, tenant, query)
    return [row.id for row, _ in hits], total


FINDS = {
    "an email": ("write to u7@x.org", "u7@x.org"),
    "the domain of an email": ("ada@example.com", "example.com"),
    "a url": (
        "see https://docs.example.com/guide/setup?lang=en#top",
        "https://docs.example.com/guide/setup?lang=en#top",
    ),
    "a dotted version": ("fixed in release 2.10.3", "2.10.3"),
    "a file path": ("/usr/local/lib/libfoo.so", "/usr/local/lib"),
    "a hyphenated word": ("state-of-the-art", "state-of-the-art"),
    "one part of a hyphenated word": ("state-of-the-art", "art"),
    "an underscored word": ("snake_case_name", "snake_case_name"),
    "a non-ascii word": ("Crème brûlée, Zürich 東京", "brûlée 東京"),
    # Combining marks (Devanagari vowel signs, a decomposed accent) separate words on both.
    "a word with combining marks": ("हिन्दी cafe\u0301", "हिन्दी cafe\u0301"),
}


@pytest.mark.parametrize(("text", "query"), list(FINDS.values()), ids=list(FINDS))
async def test_searching_a_token_finds_the_record(
    store: Store, tenant: str, make_record: MakeRecord, text: str, query: str
) -> None:
    found = await _found(store, tenant, make_record, text, query)
    assert found == (["a"], 1)


async def test_a_partial_word_does_not_match(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    await store.run(lambda tx: tx.insert_records([make_record("a", {"t": "ada@example.com"})]))
    for query in ("exampl", "ada@ex", "example.co", "xample"):
        assert await _search(store, tenant, query) == ([], 0), query


async def test_only_sqlite_ignores_diacritics(
    store: Store, store_url: str, tenant: str, make_record: MakeRecord
) -> None:
    # A known difference, not copied: FTS5's unicode61 tokenizer removes diacritics
    # (remove_diacritics=1), PostgreSQL's 'simple' configuration keeps them.
    await store.run(lambda tx: tx.insert_records([make_record("a", {"t": "café"})]))
    total = (await _search(store, tenant, "cafe"))[1]
    assert total == (0 if store_url.startswith("postgres") else 1)


@pytest.mark.skipif(
    unicodedata.unidata_version != "14.0.0",
    reason="migration 0005 spells out Unicode 14.0.0's letters and digits (Python 3.11)",
)
async def test_postgresql_indexes_exactly_the_words_search_tokens_splits_out(pg_url: str) -> None:
    # Every assigned code point between two letters: the tsvector of the record's text
    # equals the one of the words search_tokens splits out (the query side's words).
    await asyncio.to_thread(migrate, pg_url)
    texts = [
        f"a{chr(c)}b"
        for c in range(1, 0x110000)
        if unicodedata.category(chr(c)) not in ("Cn", "Co", "Cs")
    ]
    words = [" ".join(search_tokens(text)) for text in texts]
    with psycopg.connect(pg_url) as conn:
        differ = conn.execute(
            "SELECT t FROM unnest(%s::text[], %s::text[]) AS u(t, w) "
            "WHERE to_tsvector('simple', batchops_search_words(t)) <> to_tsvector('simple', w)",
            (texts, words),
        ).fetchall()
    assert differ == []
