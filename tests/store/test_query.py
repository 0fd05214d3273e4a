"""Pure helpers: search text, query words, filter paths, store URLs."""

from __future__ import annotations

import pytest

from batchops.store import parse_store_url
from batchops.store._query import FilterPath, search_text, search_tokens


def test_search_text_joins_every_string_value_in_document_order() -> None:
    data = {"a": "one", "b": [2, "two", {"c": "three"}], "d": {"e": "four"}, "f": True}
    assert search_text(data) == "one two three four"


def test_search_tokens_keep_only_words() -> None:
    assert search_tokens('"a" OR (b*) c:d_e') == ["a", "OR", "b", "c", "d", "e"]
    assert search_tokens("  ()  ") == []


def test_filter_paths_map_to_sqlite_paths_and_containment() -> None:
    f = FilterPath("a.b.0", 1)
    assert f.sqlite_path() == '$."a"."b"[0]'
    assert f.indexes_array
    assert FilterPath("a.b", None).containment() == {"a": {"b": None}}


@pytest.mark.parametrize("path", ["", "a..b", ".a", 'a."b'])
def test_a_malformed_filter_path_is_a_value_error(path: str) -> None:
    with pytest.raises(ValueError, match="filter path"):
        FilterPath(path, 1)


def test_store_urls_name_their_backend() -> None:
    assert parse_store_url(None) == ("sqlite", "batchops.db")
    assert parse_store_url("data/x.db") == ("sqlite", "data/x.db")
    assert parse_store_url("sqlite:///rel.db") == ("sqlite", "rel.db")
    assert parse_store_url("postgres://u@h/db") == ("postgresql", "postgresql://u@h/db")
    with pytest.raises(ValueError, match="unsupported store URL"):
        parse_store_url("mysql://x")
    with pytest.raises(ValueError, match="in-memory"):
        parse_store_url(":memory:")
