"""Every bound on what one request may ask of the server, in one place.

Each limit exists because, without it, one request could make the server fail (a 5xx
instead of a 4xx) or stall every other request. docs/limits.md lists them with the answer
a client gets; tests/server/test_input_limits.py proves each on both backends.

Why these numbers:

- ``MAX_JSON_DEPTH``: record data is stored as JSON text by orjson, which refuses more than
  254 levels, and decoded by msgspec, which runs out of C stack near 990. 128 levels is far
  beyond any real document and well inside both.
- ``MAX_SEARCH_TERMS`` / ``MAX_QUERY_CHARS``: every distinct word of a search is one more
  term of SQLite's FTS5 MATCH and of PostgreSQL's tsquery. A 1 MiB query (~100k words)
  froze the SQLite server for 31 s and overflowed PostgreSQL's parser stack.
- ``MAX_FILTERS`` / ``MAX_FILTER_SEGMENTS``: each filter is a clause of one statement; 500
  of them overflowed SQLite's expression tree, and a 300-segment path PostgreSQL's.
- Integers: both backends store signed 64-bit integers; JSON data may also hold unsigned
  64-bit ones (orjson writes them), but a filter compares through a bound parameter, which
  must fit SQLite's INTEGER.
- ``NUL``: PostgreSQL's text and jsonb cannot hold U+0000 at all; SQLite could. One rule for
  both backends: refused, with the path of the value.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_FILTERS",
    "MAX_FILTER_PATH_CHARS",
    "MAX_FILTER_SEGMENTS",
    "MAX_JSON_DEPTH",
    "MAX_QUERY_CHARS",
    "MAX_SEARCH_TERMS",
    "UINT64_MAX",
    "too_deep_path",
    "whole_number",
]

MAX_JSON_DEPTH: Final = 128
"""Most levels of nested objects and arrays in record data (the data object is level 1)."""

MAX_SEARCH_TERMS: Final = 32
"""Most distinct words in one search query (repeated words count once)."""

MAX_QUERY_CHARS: Final = 4096
"""Most characters in one search query."""

MAX_FILTERS: Final = 64
"""Most equality filters in one list, search, count or bulk selection."""

MAX_FILTER_SEGMENTS: Final = 32
"""Most dot-separated segments in one filter path (``a.b.c`` has 3)."""

MAX_FILTER_PATH_CHARS: Final = 512
"""Most characters in one filter path."""

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
"""The range of an integer a filter, a limit or a version may hold."""

UINT64_MAX: Final = 2**64 - 1
"""The largest integer record data may hold (orjson writes unsigned 64-bit integers)."""


def whole_number(value: Any) -> int | None:
    """``value`` as an int if it is a JSON integer, else None (booleans are not).

    JSON has one number type: ``2.0`` is the integer 2 — JSON Schema reads it so, and the
    OpenAPI document calls these fields "integer" — so a count sent as ``2.0`` is taken,
    while ``2.5`` is not a count.

    >>> [whole_number(v) for v in (2, 2.0, 2.5, True, "2")]
    [2, 2, None, None, None]
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def too_deep_path(body: bytes, limit: int = MAX_JSON_DEPTH) -> str | None:
    """The JSON path (``operations[0].body.data.a``) of the first object or array that
    opens past ``limit`` levels in the JSON text ``body``, or None if none does.

    A plain scan of the text, for the error path only: when a decoder gave up on a body
    too deep to decode (msgspec raises RecursionError near 990 levels), this says where.

    >>> too_deep_path(b'{"a": [{"b": [[1]]}]}', limit=3)
    'a[0].b'
    """
    # Each open container: [is_array, index or key]; the path is built only at the end.
    stack: list[list[Any]] = []
    key: str | None = None
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == 0x22:  # a string: a key if an object waits for one, else a value
            j = i + 1
            while j < n and body[j] != 0x22:
                j += 2 if body[j] == 0x5C else 1
            text = body[i + 1 : j].decode("utf-8", "replace")
            if stack and not stack[-1][0] and stack[-1][2]:
                key = text
            i = j + 1
            continue
        if c in (0x7B, 0x5B):  # { or [
            if stack:
                top = stack[-1]
                top[1] = top[1] if top[0] else key
            if len(stack) >= limit:
                return _path(stack)
            stack.append([c == 0x5B, 0 if c == 0x5B else None, c == 0x7B])
        elif c in (0x7D, 0x5D):  # } or ]
            if stack:
                stack.pop()
        elif c == 0x3A and stack:  # : after a key
            stack[-1][1] = key
            stack[-1][2] = False
        elif c == 0x2C and stack:  # , the next element or member
            top = stack[-1]
            if top[0]:
                top[1] += 1
            else:
                top[2] = True
        i += 1
    return None


def _path(stack: list[list[Any]]) -> str:
    out = ""
    for is_array, at, _ in stack:
        if at is None:
            continue
        out += f"[{at}]" if is_array else (f".{at}" if out else str(at))
    return out
