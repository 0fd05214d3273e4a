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
- ``MAX_PAGE_SIZE``: every list (records, jobs, webhook deliveries) answers at most 1,000
  rows a page, by one rule (:func:`validate_limit`, the ``?limit=`` text read by
  :func:`parse_limit_param`): one list's page cannot hold the server's memory or the
  database for long, and every list answers a bad ``limit`` with the same 422.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from batchops._exceptions import ValidationError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_FILTERS",
    "MAX_FILTER_PATH_CHARS",
    "MAX_FILTER_SEGMENTS",
    "MAX_JSON_DEPTH",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_CHARS",
    "MAX_SEARCH_TERMS",
    "UINT64_MAX",
    "echo",
    "parse_limit_param",
    "too_deep_path",
    "validate_limit",
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

MAX_PAGE_SIZE: Final = 1000
"""The most rows one page of any list holds (records, jobs, webhook deliveries)."""

DEFAULT_PAGE_SIZE: Final = 100
"""A list's page when it names no ``limit`` (records over REST and both batch dialects,
jobs, webhook deliveries)."""

# At most 18 digits: int() stays cheap, and longer is past any page size anyway.
_LIMIT_RE: Final = re.compile(r"-?[0-9]{1,18}")


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


def parse_limit_param(raw: str) -> Any:
    """A ``limit`` query parameter (percent-decoded): an integer when it is one in digits,
    else the text as sent, which :func:`validate_limit` refuses with its 422 — so
    ``?limit=0``, ``?limit=1e3`` and ``?limit=ten`` answer what ``"limit": 0`` or ``"ten"``
    in a body answers, and ``?limit=`` past 64 bits is that 422 too, never a 500. A
    reference template (in a batch) stays text, resolved before it is judged.

    >>> [parse_limit_param(v) for v in ["20", "-1", "1e3", "ten", " 5"]]
    [20, -1, '1e3', 'ten', ' 5']
    """
    return int(raw) if _LIMIT_RE.fullmatch(raw) else raw


def validate_limit(limit: Any, *, path: str = "limit", default: int = DEFAULT_PAGE_SIZE) -> int:
    """A page size between 1 and ``MAX_PAGE_SIZE`` (``default`` when None); anything else,
    a number or not, is a 422 naming ``path`` and showing the value as sent. The one rule
    of every list's ``limit``.

    >>> validate_limit(None), validate_limit(20), validate_limit(20.0)
    (100, 20, 20)
    >>> validate_limit("20")
    Traceback (most recent call last):
    ...
    batchops._exceptions.ValidationError: 'limit' must be an integer from 1 to 1000
    """
    if limit is None:
        return default
    size = whole_number(limit)  # 20.0 is 20 (JSON has one number type)
    if size is None or not 1 <= size <= MAX_PAGE_SIZE:
        raise ValidationError(
            f"'limit' must be an integer from 1 to {MAX_PAGE_SIZE}",
            details={"path": path, "value": echo(limit)},
        )
    return size


def echo(value: Any) -> Any:
    """``value`` as an error's details may show it back: as it is when the JSON encoder
    can write it, else its ``repr`` cut to 100 characters (an integer past 64 bits or
    nesting past 254 levels made the error itself unrenderable: a 500)."""
    try:
        orjson.dumps(value)
    except TypeError:
        return repr(value)[:100]
    return value


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
