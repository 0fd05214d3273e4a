"""Shapes and validation of records: the one copy, used by REST, batch and jobs alike."""

from __future__ import annotations

import re
from typing import Any

import orjson

from batchops._exceptions import NotFoundError, ValidationError
from batchops.store.base import RecordRow

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "MAX_RECORD_BYTES_HINT",
    "encode_data",
    "not_found",
    "record_body",
    "validate_collection",
    "validate_data",
    "validate_filters",
    "validate_limit",
    "validate_record_id",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_RECORD_BYTES_HINT = 1 << 20

# Names travel in URLs and in SQL parameters (never in SQL text); keeping them to a
# URL-safe alphabet makes every path unambiguous without escaping.
_COLLECTION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_RECORD_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}")
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
    hold (an integer beyond 64 bits, a string with a lone surrogate).

    >>> encode_data({"n": 2**70})
    Traceback (most recent call last):
    ...
    batchops._exceptions.ValidationError: data.n: integers must fit in 64 bits ...
    """
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        where, why = _unencodable(data, path)
        raise ValidationError(f"{where}: {why}", details={"path": where}) from None


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


def validate_limit(limit: Any, *, path: str = "limit", default: int = DEFAULT_PAGE_SIZE) -> int:
    """A page size between 1 and MAX_PAGE_SIZE."""
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError(
            f"'limit' must be an integer from 1 to {MAX_PAGE_SIZE}",
            details={"path": path, "value": limit},
        )
    return limit


def validate_filters(filters: Any, *, path: str = "filters") -> dict[str, Any]:
    """Equality filters: ``{"dot.path": scalar}``."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError(
            f"'filters' must be an object of dot paths to values, got {_json_type(filters)}",
            details={"path": path},
        )
    for field, value in filters.items():
        if _FILTER_PATH_RE.fullmatch(field) is None:
            raise ValidationError(
                f"filter field {field!r} is not a dot path of letters, digits, '_' and '-'",
                details={"path": f"{path}.{field}"},
            )
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValidationError(
                "filter values must be JSON scalars (string, number, boolean or null)",
                details={"path": f"{path}.{field}"},
            )
    return filters


def record_body(row: RecordRow) -> dict[str, Any]:
    """The wire shape of a record."""
    return {
        "id": row.id,
        "collection": row.collection,
        "data": row.data,
        "version": row.version,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


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
