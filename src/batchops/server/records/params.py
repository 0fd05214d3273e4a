"""The REST form of a record operation's parameters: query-string values (filters), the
flags ``?hard=`` and ``?include_deleted=``, and the ``If-Match`` header, read the same way
by the REST routes (:mod:`batchops.server.records.router`) and by the REST dialect of
``/v1/batch`` (:mod:`batchops.server.batch.routing`), so both hand the records service the
same values. (``?limit=`` is every list's, not only the records': it is read by
:func:`batchops.server.limits.parse_limit_param` and declared by
:data:`batchops.server.openapi_routes.LIMIT_PARAM`.)

Also what the OpenAPI document says of them (``*_PARAM``), from the records' own rules:
the records routes declare their path, flag and header parameters with these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from batchops._exceptions import InvalidRequestError
from batchops.server.openapi_routes import anchored
from batchops.server.records.schemas import COLLECTION_PATTERN, RECORD_ID_PATTERN

__all__ = [
    "COLLECTION_PARAM",
    "FLAG_VALUES",
    "HARD_PARAM",
    "IF_MATCH_PARAM",
    "INCLUDE_DELETED_PARAM",
    "QUERY_KEYS",
    "RECORD_ID_PARAM",
    "check_query",
    "parse_flag_param",
    "parse_if_match",
    "parse_query_value",
]

_JSON_SCALAR_RE: Final = re.compile(
    r'-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|"(?:[^"\\]|\\.)*"'
)
_IF_MATCH_RE: Final = re.compile(r'"?([0-9]{1,18})"?')


QUERY_KEYS: Final[Mapping[str, frozenset[str] | None]] = {
    "create": frozenset(),
    "read": frozenset({"include_deleted"}),
    "update": frozenset(),
    "replace": frozenset(),
    "delete": frozenset({"hard"}),
    "restore": frozenset(),
    "list": None,  # any key: the others are filters
    "search": frozenset(),
}
"""The query-string keys each record operation takes (None: any)."""


def check_query(op_type: str, keys: Iterable[str], *, path: str | None = None) -> None:
    """The one rule of a record operation's query string, over REST and in a batch's REST
    dialect: a key given twice is a mistake, never "the last one wins"; a key the operation
    does not take (:data:`QUERY_KEYS`) is a mistake. Either is 400 ``INVALID_REQUEST``
    naming the ``parameter``; ``path`` is where the query string is (a batch operation's
    ``path``), else the parameter itself.

    >>> check_query("delete", ["hard"])
    >>> check_query("delete", ["hard", "hard"])
    Traceback (most recent call last):
    ...
    batchops._exceptions.InvalidRequestError: query parameter 'hard' is repeated
    """
    allowed = QUERY_KEYS[op_type]
    seen: set[str] = set()
    for key in keys:
        where = key if path is None else path
        if key in seen:
            raise InvalidRequestError(
                f"query parameter {key!r} is repeated", details={"path": where, "parameter": key}
            )
        seen.add(key)
        if allowed is not None and key not in allowed:
            takes = ", ".join(sorted(allowed)) or "none"
            raise InvalidRequestError(
                f"unknown query parameter {key!r} for {op_type} (it takes: {takes})",
                details={"path": where, "parameter": key},
            )


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
    # RFC 9110's optional whitespace (spaces and tabs) only, as the document's pattern says.
    match = _IF_MATCH_RE.fullmatch(value.strip(" \t"))
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
IF_MATCH_PARAM: Final[dict[str, Any]] = {
    "name": "If-Match",
    "in": "header",
    "description": 'The version the record must be at (409 VERSION_MISMATCH): 3 or "3".',
    "schema": {"type": "string", "pattern": '^[ \\t]*"?[0-9]{1,18}"?[ \\t]*$'},
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
