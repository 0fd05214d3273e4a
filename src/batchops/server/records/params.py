"""The REST form of a record operation's parameters: query-string values, ``?limit=``, the
flags ``?hard=`` and ``?include_deleted=``, and the ``If-Match`` header, read the same way
by the REST routes (:mod:`batchops.server.records.router`) and by the REST dialect of
``/v1/batch`` (:mod:`batchops.server.batch.routing`), so both hand the records service the
same values.

Also what the OpenAPI document says of them (``*_PARAM``), from the records' own rules:
the routes of records, jobs and webhooks declare their path and page parameters with these.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from batchops._exceptions import InvalidRequestError
from batchops.server.openapi_routes import anchored
from batchops.server.records.schemas import (
    COLLECTION_PATTERN,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    RECORD_ID_PATTERN,
)

__all__ = [
    "COLLECTION_PARAM",
    "FLAG_VALUES",
    "HARD_PARAM",
    "IF_MATCH_PARAM",
    "INCLUDE_DELETED_PARAM",
    "LIMIT_PARAM",
    "RECORD_ID_PARAM",
    "parse_flag_param",
    "parse_if_match",
    "parse_limit_param",
    "parse_query_value",
]

_JSON_SCALAR_RE: Final = re.compile(
    r'-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|"(?:[^"\\]|\\.)*"'
)
_IF_MATCH_RE: Final = re.compile(r'"?([0-9]{1,18})"?')
# At most 18 digits: int() stays cheap, and longer is past any page size anyway.
_LIMIT_RE: Final = re.compile(r"-?[0-9]{1,18}")


def parse_query_value(raw: str) -> Any:
    """Decode a (percent-decoded) query-string value: JSON scalar if it is one, else the text.

    A value containing ``${`` is returned untouched: it is a reference template, and a
    whole-string reference keeps its JSON type when resolved.

    >>> [parse_query_value(v) for v in ["42", "1.5", "true", "null", '"42"', "007", "ada"]]
    [42, 1.5, True, None, '42', '007', 'ada']
    """
    if "${" not in raw and _JSON_SCALAR_RE.fullmatch(raw):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:  # e.g. a bad escape inside quotes: keep the text
            return raw
    return raw


def parse_limit_param(raw: str) -> Any:
    """A ``limit`` query parameter (percent-decoded): an integer when it is one in digits,
    else the text as sent, which the records service refuses with its 422 — so ``?limit=0``,
    ``?limit=1e3`` and ``?limit=ten`` answer what ``"limit": 0`` or ``"ten"`` in a body
    answers. A reference template stays text, resolved before the service judges it.

    >>> [parse_limit_param(v) for v in ["20", "-1", "1e3", "ten"]]
    [20, -1, '1e3', 'ten']
    """
    return int(raw) if _LIMIT_RE.fullmatch(raw) else raw


_FLAGS: Final = {"true": True, "false": False}
FLAG_VALUES: Final = tuple(_FLAGS)
"""The two texts a flag may be in a query string: JSON's literals, lowercase, nothing else
(the OpenAPI document lists them)."""


def parse_flag_param(raw: str) -> Any:
    """A flag query parameter (``?hard=``, ``?include_deleted=``; percent-decoded): exactly
    ``true`` or ``false`` is the boolean, anything else (``1``, ``yes``, ``TRUE``, empty)
    stays the text as sent, which the records service refuses with its 422
    (:func:`batchops.server.records.schemas.validate_flag`) — so ``?hard=yes`` answers
    what ``"hard": "yes"`` in a typed operation answers. Lowercase only: the texts are
    JSON's literals, which the typed dialect sends, and a flag has one spelling rather than
    a table of truthy words. A reference template stays text, resolved before the service
    judges it.

    >>> [parse_flag_param(v) for v in ["true", "false", "1", "TRUE", "yes"]]
    [True, False, '1', 'TRUE', 'yes']
    """
    return _FLAGS.get(raw, raw)


def parse_if_match(value: str) -> int:
    """Parse an ``If-Match`` header into a version: ``3`` or the ETag form ``"3"``.

    Raises :class:`InvalidRequestError` (path ``headers.If-Match``) for anything else,
    including weak ETags (``W/"3"``), lists and ``*``.
    """
    match = _IF_MATCH_RE.fullmatch(value.strip())
    if match is None:
        raise InvalidRequestError(
            f'If-Match must be a record version like 3 or "3", got {value!r}',
            details={"path": "headers.If-Match"},
        )
    return int(match.group(1))


# -- in the OpenAPI document ---------------------------------------------------------------

COLLECTION_PARAM: Final[dict[str, Any]] = {
    "name": "collection",
    "in": "path",
    "required": True,
    "description": "The collection's name.",
    "schema": {"type": "string", "pattern": anchored(COLLECTION_PATTERN)},
}
RECORD_ID_PARAM: Final[dict[str, Any]] = {
    "name": "record_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": anchored(RECORD_ID_PATTERN)},
}
LIMIT_PARAM: Final[dict[str, Any]] = {
    "name": "limit",
    "in": "query",
    "description": "Page size.",
    "schema": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PAGE_SIZE,
        "default": DEFAULT_PAGE_SIZE,
    },
}
"""``?limit=`` of a page of records, jobs, webhooks or deliveries."""
IF_MATCH_PARAM: Final[dict[str, Any]] = {
    "name": "If-Match",
    "in": "header",
    "description": 'The version the record must be at (409 VERSION_MISMATCH): 3 or "3".',
    "schema": {"type": "string", "pattern": '^ *"?[0-9]{1,18}"? *$'},
}
"""The header :func:`parse_if_match` reads."""
HARD_PARAM: Final[dict[str, Any]] = {
    "name": "hard",
    "in": "query",
    "description": "true: delete for good (a soft-deleted record too). Exactly `true` or "
    "`false`; anything else is a 422 naming `hard`.",
    "schema": {"type": "string", "enum": list(FLAG_VALUES), "default": "false"},
}
"""The flag of a delete, read by :func:`parse_flag_param`."""
INCLUDE_DELETED_PARAM: Final[dict[str, Any]] = {
    "name": "include_deleted",
    "in": "query",
    "description": "true: a soft-deleted record is answered too (with `deleted_at`). Exactly "
    "`true` or `false`; anything else is a 422 naming `include_deleted`.",
    "schema": {"type": "string", "enum": list(FLAG_VALUES), "default": "false"},
}
"""The flag of a read, read by :func:`parse_flag_param`."""
