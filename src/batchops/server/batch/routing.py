"""Normalise one batch operation (either dialect) into a :class:`Route`.

REST operations are mapped by method and path::

    POST   /v1/collections/{c}/records          create   body {"id"?, "data"}
    GET    /v1/collections/{c}/records?f=v...   list     query string, see below
    GET    /v1/collections/{c}/records/{id}     read
    PATCH  /v1/collections/{c}/records/{id}     update   body {"data"} (a merge patch)
    PUT    /v1/collections/{c}/records/{id}     replace  body {"data"}
    DELETE /v1/collections/{c}/records/{id}     delete   ?hard=true|false
    POST   /v1/collections/{c}/records/{id}/restore   restore
    GET    /v1/collections/{c}/records/{id}?include_deleted=true   read (soft-deleted too)
    POST   /v1/collections/{c}/search           search   body {"query", "filters"?, "limit"?}

Typed operations give the same information as fields (``options`` holds ``hard`` for delete,
``filters``/``limit``/``cursor`` for list, ``filters``/``limit`` for search).

Only the *shape* of an operation is checked here (a known path and method, data present,
query a string, no unknown keys); everything a record rule judges — collection names,
record ids, data, filters, a page size and its default, the flags ``hard`` and
``include_deleted``, cursors, queries — is passed on as sent and judged by the records service
(:mod:`batchops.server.records.service`) when the operation runs, the same way as over
REST, so each rule has one copy and every way in answers alike (tests/parity). Shape
failures are raised as :class:`APIError` with ``details["path"]`` relative to the operation
(``body.data``, ``options.x``, ``headers.If-Match``); the planner prefixes
``operations[i].`` and keeps them as per-operation results. The one exception is a path
under ``/v1/batch``: :class:`InvalidBatchRequestError`, which rejects the whole batch.

Path segments are percent-decoded, except a segment that contains ``${`` (a reference):
it is kept verbatim as template text and resolved later, and the resolved value is used as
is (never percent-decoded). A segment that only *decodes* to ``${`` is refused, because it
would turn into a reference nobody declared.

List query strings: ``limit`` and ``cursor`` are reserved, every other key is an equality
filter on a dot path (``?profile.team=core``). ``limit`` is read by
:func:`parse_limit_param` (digits are a number, anything else stays text for the service to
refuse), as the REST route reads it; so are the flags ``?hard=`` and ``?include_deleted=``
by :func:`parse_flag_param` (exactly ``true`` or ``false``; anything else stays text, a
422 from the service). Filter values are parsed by
:func:`parse_query_value`: a JSON scalar (number, ``true``, ``false``, ``null``, or a
double-quoted JSON string) is decoded, anything else is taken as the raw string. So
``?age=42`` filters on the number 42, ``?zip=007`` on the string "007" (not valid JSON),
and ``?code="42"`` on the string "42". A repeated key is an error (400).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, unquote_plus

import msgspec

from batchops._exceptions import (
    InvalidBatchRequestError,
    InvalidRequestError,
    MethodNotAllowedError,
)
from batchops.server.batch.model import OpType
from batchops.server.limits import INT64_MAX, parse_limit_param, whole_number
from batchops.server.records.params import (
    check_query,
    parse_flag_param,
    parse_if_match,
    parse_query_value,
)

__all__ = [
    "Route",
    "route_rest",
    "route_typed",
]

_UNSET: Final = msgspec.UNSET


_RECORD_ID_TYPES: Final = frozenset({"read", "update", "replace", "delete", "restore"})
_DATA_TYPES: Final = frozenset({"create", "update", "replace"})
_IF_MATCH_TYPES: Final = frozenset({"update", "replace", "delete", "restore"})
_OPTION_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "create": frozenset(),
    "read": frozenset({"include_deleted"}),
    "restore": frozenset(),
    "update": frozenset(),
    "replace": frozenset(),
    "delete": frozenset({"hard"}),
    "list": frozenset({"filters", "limit", "cursor"}),
    "search": frozenset({"filters", "limit"}),
}


@dataclass(slots=True)
class Route:
    """What an operation does, in the terms of :class:`~batchops.server.batch.model.PlannedOp`."""

    type: OpType
    collection: str
    record_id: str | None = None
    data: Any = None
    query: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    if_match: int | None = None


def route_rest(
    method: str,
    path: str,
    body: Any = _UNSET,
    headers: Mapping[str, str] | None = None,
) -> Route:
    """Map a REST operation (``method``, ``path`` with query string, ``body``, ``headers``).

    ``body`` is ``msgspec.UNSET`` when absent. Raises :class:`InvalidBatchRequestError` for a
    ``/v1/batch`` path, :class:`MethodNotAllowedError` (405, ``details["allowed"]``) for a
    known path with the wrong method, and :class:`InvalidRequestError` (400;
    ``UNSUPPORTED_OPERATION`` for an unknown path) for everything else.

    >>> route = route_rest("DELETE", "/v1/collections/people/records/r1?hard=true")
    >>> route.type, route.collection, route.record_id, route.params
    ('delete', 'people', 'r1', {'hard': True})
    >>> route_rest("DELETE", "/v1/collections/people/records/r1?hard=yes").params
    {'hard': 'yes'}
    """
    raw_path, _, query_string = path.partition("?")
    if not raw_path.startswith("/v1/"):
        raise _unsupported(path, "paths in a batch start with /v1/")
    raw_segments = raw_path[len("/v1/") :].split("/")
    if len(raw_segments) > 1 and raw_segments[-1] == "":
        raw_segments.pop()  # tolerate one trailing slash
    segments = [_path_segment(s) for s in raw_segments]
    if segments[0] == "batch":
        raise InvalidBatchRequestError(
            "a batch cannot contain /v1/batch: send the inner operations directly",
            details={"path": "path", "value": path},
        )
    if "" in segments or len(segments) < 3 or segments[0] != "collections":
        raise _unsupported(path, "batch operations address /v1/collections/{collection}/...")
    collection = segments[1]
    tail = segments[2:]
    op_type = _match(method, path, tail)
    if_match = _header_if_match(headers, op_type)
    query: dict[str, str] = {}
    if query_string:  # most operations have none: no work for them (bench/planner.py)
        pairs = _parse_query_string(query_string)
        check_query(op_type, (key for key, _ in pairs), path="path")
        query = dict(pairs)

    if op_type == "create":
        fields = _body_object(body, {"id", "data"}, required=("data",))
        record_id = fields.get("id")
        if "id" in fields and not isinstance(record_id, str):  # null too: omit it instead
            raise InvalidRequestError(
                "body.id must be a string; omit it to have one generated",
                details={"path": "body.id"},
            )
        return Route("create", collection, record_id=record_id, data=fields["data"])
    if op_type in ("update", "replace"):
        fields = _body_object(body, {"data"}, required=("data",))
        return Route(op_type, collection, record_id=tail[1], data=fields["data"], if_match=if_match)
    if op_type == "search":
        fields = _body_object(body, {"query", "filters", "limit"}, required=("query",))
        if not isinstance(fields["query"], str):
            raise InvalidRequestError("body.query must be a string", details={"path": "body.query"})
        params = {"filters": fields.get("filters"), "limit": fields.get("limit")}
        return Route("search", collection, query=fields["query"], params=params)

    _no_body(body, op_type)
    if op_type == "read":
        raw_include = query.get("include_deleted")
        include = None if raw_include is None else parse_flag_param(raw_include)
        return Route("read", collection, record_id=tail[1], params=_read_params(include))
    if op_type == "restore":
        return Route("restore", collection, record_id=tail[1], if_match=if_match)
    if op_type == "delete":
        raw_hard = query.get("hard")
        params = {} if raw_hard is None else {"hard": parse_flag_param(raw_hard)}
        return Route("delete", collection, record_id=tail[1], params=params, if_match=if_match)
    # list: limit and cursor are reserved, the other keys are equality filters
    raw_limit = query.pop("limit", None)
    limit = None if raw_limit is None else parse_limit_param(raw_limit)
    cursor = query.pop("cursor", None)  # opaque: kept as text, never JSON-parsed
    filters = {key: parse_query_value(value) for key, value in query.items()}
    return Route("list", collection, params={"filters": filters, "limit": limit, "cursor": cursor})


def route_typed(
    type: OpType,
    collection: str,
    *,
    record_id: str | msgspec.UnsetType | None = _UNSET,
    data: Any = _UNSET,
    query: str | None = None,
    options: Mapping[str, Any] | None = None,
    if_match: float | None = None,
) -> Route:
    """Check and map a typed operation; fields a type does not use are errors (400).

    ``data`` and ``record_id`` are ``msgspec.UNSET`` when absent; an explicit ``"id":
    null`` is an error (omit the id to have one generated). Error paths are the typed
    field names (``id``, ``data``, ``query``, ``options.limit``, ``if_match``).
    """
    if record_id is None:
        raise InvalidRequestError(
            "id must be a string; omit it to have one generated", details={"path": "id"}
        )
    if record_id is _UNSET:
        record_id = None
    assert record_id is None or isinstance(record_id, str)
    if type in _RECORD_ID_TYPES:
        if record_id is None:
            raise InvalidRequestError(f"{type} needs the record id", details={"path": "id"})
    elif record_id is not None and type != "create":
        raise InvalidRequestError(f"{type} takes no record id", details={"path": "id"})
    if type in _DATA_TYPES:
        if data is _UNSET or data is None:
            raise InvalidRequestError(f"{type} needs data", details={"path": "data"})
    elif data is not _UNSET:
        raise InvalidRequestError(f"{type} takes no data", details={"path": "data"})
    if type == "search":
        if query is None:
            raise InvalidRequestError("search needs a query string", details={"path": "query"})
    elif query is not None:
        raise InvalidRequestError(f"{type} takes no query", details={"path": "query"})
    if if_match is not None:
        if type not in _IF_MATCH_TYPES:
            raise InvalidRequestError(
                "if_match applies to update, replace and delete", details={"path": "if_match"}
            )
        version = whole_number(if_match)  # 3.0 is 3 (JSON has one number type)
        # Bounded like every version: one past 64 bits was echoed in the 409's details,
        # which the JSON encoder cannot write (a 500).
        if version is None or not 0 <= version <= INT64_MAX:
            raise InvalidRequestError(
                f"if_match must be a version number from 0 to {INT64_MAX}",
                details={"path": "if_match"},
            )
        if_match = version
    if not options and type in ("create", "read", "update", "replace", "restore"):
        # The common case: nothing optional to check or convert.
        return Route(
            type,
            collection,
            record_id=record_id,
            data=None if data is _UNSET else data,
            query=query,
            params={},
            if_match=if_match,
        )
    opts = dict(options or {})
    for key in opts:
        if key not in _OPTION_KEYS[type]:
            known = ", ".join(sorted(_OPTION_KEYS[type])) or "none"
            raise InvalidRequestError(
                f"unknown option {key!r} for {type} (known: {known})",
                details={"path": f"options.{key}"},
            )

    params: dict[str, Any] = {}
    if type == "delete":
        if "hard" in opts:
            params = {"hard": opts["hard"]}
    elif type == "read":
        params = _read_params(opts.get("include_deleted"))
    elif type in ("list", "search"):
        params = {"filters": opts.get("filters"), "limit": opts.get("limit")}
        if type == "list":
            params["cursor"] = opts.get("cursor")
    return Route(
        type,
        collection,
        record_id=record_id,
        data=None if data is _UNSET else data,
        query=query,
        params=params,
        if_match=if_match,
    )


# -- helpers ---------------------------------------------------------------------------------


def _match(method: str, path: str, tail: list[str]) -> OpType:
    if tail == ["records"]:
        by_method: dict[str, OpType] = {"GET": "list", "POST": "create"}
    elif len(tail) == 2 and tail[0] == "records":
        by_method = {"GET": "read", "PATCH": "update", "PUT": "replace", "DELETE": "delete"}
    elif len(tail) == 3 and tail[0] == "records" and tail[2] == "restore":
        by_method = {"POST": "restore"}
    elif tail == ["search"]:
        by_method = {"POST": "search"}
    else:
        raise _unsupported(path, "no such batch operation")
    op_type = by_method.get(method)
    if op_type is None:
        allowed = list(by_method)
        raise MethodNotAllowedError(
            f"{method} is not allowed on {path.partition('?')[0]}; allowed: {', '.join(allowed)}",
            details={"path": "method", "allowed": allowed},
        )
    return op_type


def _unsupported(path: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"unsupported operation path {path!r}: {why}",
        code="UNSUPPORTED_OPERATION",
        details={"path": "path", "value": path},
    )


def _path_segment(raw: str) -> str:
    if "%" not in raw:
        return raw  # nothing to decode (the common case); a reference stays verbatim
    if "${" in raw:
        return raw  # a reference: resolved later, verbatim
    decoded = unquote(raw)  # in a path, "+" is a plus sign
    if "${" in decoded:
        raise _encoded_template()
    return decoded


def _encoded_template() -> InvalidRequestError:
    return InvalidRequestError(
        "a percent-encoded '${' in the path would become an undeclared reference: "
        "write references unencoded",
        details={"path": "path"},
    )


def _parse_query_string(query_string: str) -> list[tuple[str, str]]:
    # Values are percent-decoded text; references stay verbatim (see the module docstring).
    # Repeated and unknown keys are judged by records.params.check_query (REST's rule).
    values: list[tuple[str, str]] = []
    for pair in query_string.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = unquote_plus(raw_key)
        if "${" in raw_value:
            values.append((key, raw_value))
            continue
        decoded = unquote_plus(raw_value)
        if "${" in decoded:
            raise _encoded_template()
        values.append((key, decoded))
    return values


def _header_if_match(headers: Mapping[str, str] | None, op_type: OpType) -> int | None:
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "if-match"), None)
    if value is None:
        return None
    if op_type not in _IF_MATCH_TYPES:
        raise InvalidRequestError(
            "If-Match applies to PATCH, PUT and DELETE of a record",
            details={"path": "headers.If-Match"},
        )
    return parse_if_match(value)


def _body_object(body: Any, allowed: set[str], *, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        shape = "absent" if body is _UNSET else type(body).__name__
        keys = ", ".join(f'"{k}"' for k in sorted(allowed))
        raise InvalidRequestError(
            f"body must be an object with {keys}, got {shape}", details={"path": "body"}
        )
    for key in body:
        if key not in allowed:
            raise InvalidRequestError(
                f"unknown body field {key!r}", details={"path": f"body.{key}"}
            )
    for key in required:
        if body.get(key) is None:
            raise InvalidRequestError(f"body.{key} is required", details={"path": f"body.{key}"})
    return body


def _no_body(body: Any, op_type: str) -> None:
    if body is not _UNSET and body is not None:
        raise InvalidRequestError(f"{op_type} takes no body", details={"path": "body"})


def _read_params(include_deleted: Any) -> dict[str, Any]:
    """A read's params: none when it does not ask for deleted records (None or false: such
    reads of one collection share one statement), else ``include_deleted`` as sent."""
    if include_deleted is None or include_deleted is False:
        return {}
    return {"include_deleted": include_deleted}
