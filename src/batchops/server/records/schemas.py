"""Shapes and validation of records: the one copy, used by REST, batch and jobs alike."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from batchops._exceptions import NotFoundError, ValidationError
from batchops.server._ids import ID_PATTERN
from batchops.server.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_FILTER_PATH_CHARS,
    MAX_FILTER_SEGMENTS,
    MAX_FILTERS,
    MAX_JSON_DEPTH,
    MAX_QUERY_CHARS,
    MAX_SEARCH_TERMS,
    echo,
)
from batchops.store._query import search_tokens
from batchops.store.base import RecordRow

__all__ = [
    "COLLECTION_PATTERN",
    "DEFAULT_SEARCH_SIZE",
    "MAX_RECORD_BYTES_HINT",
    "RECORD_ID_PATTERN",
    "check_encoded",
    "encode_data",
    "not_found",
    "record_body",
    "validate_collection",
    "validate_data",
    "validate_filters",
    "validate_flag",
    "validate_query",
    "validate_record_id",
    "validate_text",
]

# A list's page size — its bounds, its default, the rule — is every list's, not only the
# records': see batchops.server.limits (MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE, validate_limit).
DEFAULT_SEARCH_SIZE = 20
"""A search's best matches when it names no ``limit``: a search is ranked, and its first
results are the ones read (1 to ``MAX_PAGE_SIZE`` like any page)."""
MAX_RECORD_BYTES_HINT = 1 << 20

# Names travel in URLs and in SQL parameters (never in SQL text); keeping them to a
# URL-safe alphabet makes every path unambiguous without escaping.
COLLECTION_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
"""A whole collection name (as ``re.fullmatch`` reads it; the OpenAPI document too)."""
RECORD_ID_PATTERN = ID_PATTERN
"""A whole record id (every id's rule: :data:`batchops.server._ids.ID_PATTERN`)."""
_COLLECTION_RE = re.compile(COLLECTION_PATTERN)
_RECORD_ID_RE = re.compile(RECORD_ID_PATTERN)
_FILTER_PATH_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def validate_collection(name: Any, *, path: str = "collection") -> str:
    """Return ``name`` if it is a valid collection name, else a 422 naming ``path``."""
    if not isinstance(name, str) or _COLLECTION_RE.fullmatch(name) is None:
        raise ValidationError(
            "collection names are 1-64 characters of letters, digits, '_', '.', '-' "
            "and start with a letter, digit or '_'",
            details={"path": path, "value": name if isinstance(name, str) else repr(name)},
        )
    return name


def validate_record_id(record_id: Any, *, path: str = "id") -> str:
    """Return ``record_id`` if valid, else a 422 naming ``path``."""
    if not isinstance(record_id, str) or _RECORD_ID_RE.fullmatch(record_id) is None:
        raise ValidationError(
            "record ids are 1-128 characters of letters, digits and '_.:@-', "
            "starting with a letter, digit or '_'",
            details={
                "path": path,
                "value": record_id if isinstance(record_id, str) else repr(record_id),
            },
        )
    return record_id


def validate_data(data: Any, *, path: str = "data") -> dict[str, Any]:
    """A record's data must be a JSON object."""
    if not isinstance(data, dict):
        raise ValidationError(
            f"'data' must be a JSON object, got {_json_type(data)}", details={"path": path}
        )
    return data


def encode_data(data: Any, *, path: str = "data") -> str:
    """``data`` as the JSON text a record stores, or a 422 naming the value JSON cannot
    hold or the backends refuse: an integer beyond 64 bits, a string with a lone
    surrogate or a NUL (U+0000), nesting deeper than ``MAX_JSON_DEPTH`` levels.

    >>> encode_data({"n": 2**70})
    Traceback (most recent call last):
    ...
    batchops._exceptions.ValidationError: data.n: integers must fit in 64 bits ...
    """
    try:
        text = orjson.dumps(data).decode()
    except TypeError:
        # orjson also refuses nesting past 254 levels: say that first, it is the real cause.
        deep = _too_deep(data, path, 1)
        if deep is not None:
            raise _depth_error(deep) from None
        where, why = _unencodable(data, path)
        raise ValidationError(f"{where}: {why}", details={"path": where}) from None
    check_encoded(text, data, path=path)
    return text


def check_encoded(text: str | bytes, data: Any, *, path: str = "data") -> None:
    """The checks :func:`encode_data` makes on JSON text orjson produced from ``data``
    (a 422 naming the path): no NUL anywhere, at most ``MAX_JSON_DEPTH`` levels.

    Both are cheap substring tests on the text first; ``data`` is walked only when the
    text may hold the fault (an escaped ``\\u0000``, or as many brackets as the limit)."""
    nul = "\\u0000" if isinstance(text, str) else b"\\u0000"
    if nul in text:  # type: ignore[operator]
        where = _nul_path(data, path)
        if where is not None:
            raise ValidationError(
                f"{where}: text may not contain the NUL character (U+0000)",
                details={"path": where},
            )
    braces = ("{", "[") if isinstance(text, str) else (b"{", b"[")
    if text.count(braces[0]) + text.count(braces[1]) > MAX_JSON_DEPTH:  # type: ignore[arg-type]
        deep = _too_deep(data, path, 1)
        if deep is not None:
            raise _depth_error(deep)


def validate_text(value: Any, *, path: str) -> None:
    """A 422 naming ``path`` when the string ``value`` holds a NUL (U+0000), which neither
    backend can take the same way (PostgreSQL refuses it)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValidationError(
            f"{path}: text may not contain the NUL character (U+0000)", details={"path": path}
        )


def _depth_error(where: str) -> ValidationError:
    return ValidationError(
        f"{where}: JSON may nest at most {MAX_JSON_DEPTH} levels of objects and arrays",
        code="JSON_TOO_DEEP",
        details={"path": where, "limit": MAX_JSON_DEPTH},
    )


def _too_deep(value: Any, path: str, depth: int) -> str | None:
    """The path of the first container nested past ``MAX_JSON_DEPTH`` levels, or None."""
    if isinstance(value, dict):
        if depth > MAX_JSON_DEPTH:
            return path
        for key, item in value.items():
            if isinstance(item, dict | list) and (
                found := _too_deep(item, f"{path}.{key}", depth + 1)
            ):
                return found
    elif isinstance(value, list):
        if depth > MAX_JSON_DEPTH:
            return path
        for index, item in enumerate(value):
            if isinstance(item, dict | list) and (
                found := _too_deep(item, f"{path}[{index}]", depth + 1)
            ):
                return found
    return None


def _nul_path(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding a NUL, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if isinstance(key, str) and "\x00" in key:
                    return where
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def _unencodable(value: Any, path: str) -> tuple[str, str]:
    """The path of the first value in ``value`` that JSON cannot hold, and why."""
    if isinstance(value, dict):
        for key, item in value.items():
            try:
                orjson.dumps(item)
            except TypeError:
                return _unencodable(item, f"{path}.{key}")
            try:
                orjson.dumps(key)
            except TypeError:
                return path, "object keys must be valid Unicode text (no lone surrogates)"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            try:
                orjson.dumps(item)
            except TypeError:
                return _unencodable(item, f"{path}[{index}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        return path, (
            "integers must fit in 64 bits (-2**63 to 2**64-1); send larger numbers as "
            "strings or floats"
        )
    elif isinstance(value, str):
        return path, "strings must be valid Unicode text (no lone surrogates)"
    return path, f"a {type(value).__name__} cannot be stored as JSON"


def validate_flag(value: Any, *, path: str) -> bool:
    """A flag (``hard`` of a delete, ``include_deleted`` of a read): a JSON boolean, off
    when None (not sent). Anything else — ``1``, ``"yes"``, even ``"true"`` — is a 422
    naming ``path``: one rule for every way in, as a query string's ``true`` and ``false``
    are read into booleans first (:func:`batchops.server.records.params.parse_flag_param`).

    >>> validate_flag(None, path="hard"), validate_flag(True, path="hard")
    (False, True)
    >>> validate_flag(1, path="hard")
    Traceback (most recent call last):
    ...
    batchops._exceptions.ValidationError: 'hard' must be true or false ...
    """
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError(
            f"'{path}' must be true or false (in a query string: exactly true or false, lowercase)",
            details={"path": path, "value": echo(value)},
        )
    return value


def validate_filters(filters: Any, *, path: str = "filters") -> dict[str, Any]:
    """Equality filters: ``{"dot.path": scalar}``; at most ``MAX_FILTERS`` of them, paths
    of at most ``MAX_FILTER_SEGMENTS`` segments, integers within signed 64 bits, no NUL."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError(
            f"'filters' must be an object of dot paths to values, got {_json_type(filters)}",
            details={"path": path},
        )
    if len(filters) > MAX_FILTERS:
        raise ValidationError(
            f"at most {MAX_FILTERS} filters may be given, got {len(filters)}",
            code="TOO_MANY_FILTERS",
            details={"path": path, "limit": MAX_FILTERS, "actual": len(filters)},
        )
    for field, value in filters.items():
        where = f"{path}.{field}"
        if (
            not isinstance(field, str)
            or len(field) > MAX_FILTER_PATH_CHARS
            or _FILTER_PATH_RE.fullmatch(field) is None
        ):
            shown = field[:80] if isinstance(field, str) else repr(field)
            raise ValidationError(
                f"filter field {shown!r} is not a dot path of letters, digits, '_' and '-' "
                f"(at most {MAX_FILTER_PATH_CHARS} characters)",
                details={"path": where[:200]},
            )
        if field.count(".") >= MAX_FILTER_SEGMENTS:
            raise ValidationError(
                f"a filter path may have at most {MAX_FILTER_SEGMENTS} segments",
                details={"path": where[:200], "limit": MAX_FILTER_SEGMENTS},
            )
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValidationError(
                "filter values must be JSON scalars (string, number, boolean or null)",
                details={"path": where},
            )
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise ValidationError(
                    "filter integers must fit in signed 64 bits (-2**63 to 2**63-1)",
                    details={"path": where},
                )
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("filter numbers must be finite", details={"path": where})
        validate_text(value, path=where)
    return filters


def validate_query(query: Any, *, path: str = "query") -> str:
    """A search query: a string with at least one word, at most ``MAX_QUERY_CHARS``
    characters and ``MAX_SEARCH_TERMS`` distinct words; else a 422 naming ``path``."""
    if not isinstance(query, str) or not query.strip():
        raise ValidationError("'query' must be a non-empty string", details={"path": path})
    if len(query) > MAX_QUERY_CHARS:
        raise ValidationError(
            f"'query' may have at most {MAX_QUERY_CHARS} characters, got {len(query)}",
            code="QUERY_TOO_LONG",
            details={"path": path, "limit": MAX_QUERY_CHARS, "actual": len(query)},
        )
    terms = len(set(search_tokens(query)))
    if terms > MAX_SEARCH_TERMS:
        raise ValidationError(
            f"'query' may have at most {MAX_SEARCH_TERMS} distinct words, got {terms}",
            code="TOO_MANY_SEARCH_TERMS",
            details={"path": path, "limit": MAX_SEARCH_TERMS, "actual": terms},
        )
    return query


def record_body(row: RecordRow) -> dict[str, Any]:
    """The wire shape of a record (``deleted_at`` only on a soft-deleted one, which only
    a read that asks to include deleted records shows)."""
    body = {
        "id": row.id,
        "collection": row.collection,
        "data": row.data,
        "version": row.version,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if row.deleted_at is not None:
        body["deleted_at"] = row.deleted_at
    return body


def not_found(collection: str, record_id: str) -> NotFoundError:
    """The 404 for a record that does not exist (or is soft-deleted) for this tenant."""
    return NotFoundError(
        f"record {record_id!r} not found in collection {collection!r}",
        details={"collection": collection, "id": record_id},
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__
