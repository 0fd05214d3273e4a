"""REST routes for records: thin HTTP adapters over the records service.

Each handler reads and checks the body shape, then makes ONE ``store.run`` call into the
records service — the same functions both batch dialects and the jobs call, which judge
every value (a page size and a flag included) so each way in answers alike (tests/parity).
Query parameters are therefore taken as text and read by :mod:`batchops.server.records.params`
as the batch's REST dialect reads them, never by FastAPI's own conversions (its bool takes
``1``, ``yes``, ``on``…).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from batchops._exceptions import InvalidRequestError
from batchops.server.deps import CallerDep, ServicesDep
from batchops.server.http import JSONResponse, parse_json, read_body, require_json
from batchops.server.limits import parse_limit_param
from batchops.server.openapi_routes import (
    AUTH,
    BODY,
    LIMIT_PARAM,
    STORE,
    json_answer,
    json_body,
    param,
    ref,
    responses,
)
from batchops.server.records import service
from batchops.server.records.params import (
    COLLECTION_PARAM,
    HARD_PARAM,
    IF_MATCH_PARAM,
    INCLUDE_DELETED_PARAM,
    RECORD_ID_PARAM,
    check_query,
    parse_flag_param,
    parse_if_match,
    parse_query_value,
)
from batchops.server.records.schemas import validate_record_id

__all__ = ["router"]

router = APIRouter(prefix="/v1/collections/{collection}", tags=["records"])

# What every route here may answer besides its success: no key or a spent budget, a
# store fault, and a collection name (or record id) the records rules refuse (422).
_ALWAYS = (*AUTH, *STORE, 422)
_RECORD = ref("Record")
_NOT_FOUND = {404: "No live record with this id in the collection (NOT_FOUND)."}
_PATH = [COLLECTION_PARAM]
_RECORD_PATH = [COLLECTION_PARAM, RECORD_ID_PARAM]
_IF_MATCH = [IF_MATCH_PARAM]
_QUERY_400 = (
    "a query parameter given twice or not taken here (INVALID_REQUEST, `details.parameter`)"
)
_FLAG_422 = (
    "A {flag} other than true or false, a bad collection name or record id (VALIDATION_ERROR)."
)


def _doc(parameters: list[dict[str, Any]], body: str | None = None) -> dict[str, Any]:
    """``openapi_extra``: the route's parameters and, if it reads one, its JSON body."""
    extra: dict[str, Any] = {"parameters": parameters}
    if body is not None:
        extra.update(json_body(ref(body)))
    return extra


async def _json_object(
    request: Request, svc: ServicesDep, allowed: Iterable[str], required: Iterable[str]
) -> dict[str, Any]:
    require_json(request)
    body = parse_json(await read_body(request, max_bytes=svc.settings.max_body_bytes))
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", details={"path": ""})
    allowed_set = set(allowed)
    for name in body:
        if name not in allowed_set:
            raise InvalidRequestError(
                f"unknown field {name!r}; allowed: {', '.join(sorted(allowed_set))}",
                details={"path": name},
            )
    for name in required:
        if name not in body:
            raise InvalidRequestError(f"missing field {name!r}", details={"path": name})
    return body


def _query(request: Request, op_type: str) -> None:
    """The one query-string rule (:func:`check_query`): REST as the batch's REST dialect."""
    if request.scope.get("query_string"):
        check_query(op_type, (name for name, _ in request.query_params.multi_items()))


def _if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    return parse_if_match(header) if header is not None else None


def _respond(request: Request, body: Any, status: int = 200) -> JSONResponse:
    headers = getattr(request.state, "rate_headers", None) or {}
    return JSONResponse(body, status_code=status, headers=headers)


@router.post(
    "/records",
    status_code=201,
    summary="Create a record",
    openapi_extra=_doc(_PATH, "RecordCreate"),
    responses=responses(
        {201: json_answer(_RECORD, "The record, at version 1.")},
        (*_ALWAYS, *BODY, 409),
        notes={409: "A record with this id exists (CONFLICT; a soft-deleted one too)."},
    ),
)
async def create_record(
    collection: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    _query(request, "create")
    body = await _json_object(request, svc, ("id", "data"), ("data",))
    record_id = body.get("id")
    if "id" in body and record_id is None:  # an explicit null: omit the id instead
        validate_record_id(record_id, path="id")
    record = await svc.store.run(
        lambda tx: service.create(tx, caller.tenant, collection, body["data"], record_id)
    )
    return _respond(request, record, 201)


@router.get(
    "/records/{record_id}",
    summary="Read a record (a soft-deleted one too with ?include_deleted=true)",
    openapi_extra=_doc([*_RECORD_PATH, INCLUDE_DELETED_PARAM]),
    responses=responses(
        {200: json_answer(_RECORD, "The record.")},
        (*_ALWAYS, 400, 404),
        notes={
            **_NOT_FOUND,
            400: f"{_QUERY_400[0].upper()}{_QUERY_400[1:]}.",
            422: _FLAG_422.format(flag="`include_deleted`"),
        },
    ),
)
async def read_record(
    collection: str,
    record_id: str,
    request: Request,
    caller: CallerDep,
    svc: ServicesDep,
    include_deleted: str | None = None,
) -> Response:
    _query(request, "read")
    flag = None if include_deleted is None else parse_flag_param(include_deleted)
    record = await svc.store.run(
        lambda tx: service.read(tx, caller.tenant, collection, record_id, include_deleted=flag)
    )
    return _respond(request, record)


@router.post(
    "/records/{record_id}/restore",
    summary="Restore a soft-deleted record",
    openapi_extra=_doc(_RECORD_PATH + _IF_MATCH),
    responses=responses(
        {200: json_answer(_RECORD, "The record, live again (its version bumped).")},
        (*_ALWAYS, 400, 404, 409),
        notes={
            404: "No such record, deleted or not (NOT_FOUND).",
            409: "The record is live (NOT_DELETED), or not at the If-Match version "
            "(VERSION_MISMATCH).",
        },
    ),
)
async def restore_record(
    collection: str, record_id: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    _query(request, "restore")
    if_match = _if_match(request)
    record = await svc.store.run(
        lambda tx: service.restore(tx, caller.tenant, collection, record_id, if_match=if_match)
    )
    return _respond(request, record)


@router.patch(
    "/records/{record_id}",
    summary="Merge-patch a record's data (RFC 7386)",
    openapi_extra=_doc(_RECORD_PATH + _IF_MATCH, "RecordWrite"),
    responses=responses(
        {200: json_answer(_RECORD, "The record after the patch (its version bumped).")},
        (*_ALWAYS, *BODY, 404, 409),
        notes={**_NOT_FOUND, 409: "Not at the If-Match version (VERSION_MISMATCH)."},
    ),
)
async def update_record(
    collection: str, record_id: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    _query(request, "update")
    body = await _json_object(request, svc, ("data",), ("data",))
    if_match = _if_match(request)
    record = await svc.store.run(
        lambda tx: service.update(
            tx, caller.tenant, collection, record_id, body["data"], if_match=if_match
        )
    )
    return _respond(request, record)


@router.put(
    "/records/{record_id}",
    summary="Replace a record's data",
    openapi_extra=_doc(_RECORD_PATH + _IF_MATCH, "RecordWrite"),
    responses=responses(
        {200: json_answer(_RECORD, "The record with its new data (its version bumped).")},
        (*_ALWAYS, *BODY, 404, 409),
        notes={**_NOT_FOUND, 409: "Not at the If-Match version (VERSION_MISMATCH)."},
    ),
)
async def replace_record(
    collection: str, record_id: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    _query(request, "replace")
    body = await _json_object(request, svc, ("data",), ("data",))
    if_match = _if_match(request)
    record = await svc.store.run(
        lambda tx: service.replace(
            tx, caller.tenant, collection, record_id, body["data"], if_match=if_match
        )
    )
    return _respond(request, record)


@router.delete(
    "/records/{record_id}",
    summary="Delete a record (soft unless ?hard=true, which also purges a soft-deleted one)",
    openapi_extra=_doc([*_RECORD_PATH, HARD_PARAM, *_IF_MATCH]),
    responses=responses(
        {200: json_answer(ref("RecordDeleted"), "What was deleted.")},
        (*_ALWAYS, 400, 404, 409),
        notes={
            **_NOT_FOUND,
            400: f"An If-Match that is not a record version, or {_QUERY_400}.",
            409: "Not at the If-Match version (VERSION_MISMATCH).",
            422: _FLAG_422.format(flag="`hard`"),
        },
    ),
)
async def delete_record(
    collection: str,
    record_id: str,
    request: Request,
    caller: CallerDep,
    svc: ServicesDep,
    hard: str | None = None,
) -> Response:
    _query(request, "delete")
    if_match = _if_match(request)
    flag = None if hard is None else parse_flag_param(hard)
    result = await svc.store.run(
        lambda tx: service.delete(
            tx, caller.tenant, collection, record_id, hard=flag, if_match=if_match
        )
    )
    return _respond(request, result)


@router.get(
    "/records",
    summary="List records",
    description=(
        "Every query parameter other than `limit` and `cursor` is an equality filter on a "
        "dot path of `data` (`?team=core&address.city=Paris`). Values `true`, `false`, "
        '`null` and numbers are compared as JSON; quote a value (`?code="42"`) to compare '
        "it as a string."
    ),
    openapi_extra=_doc(
        [
            *_PATH,
            LIMIT_PARAM,
            param(
                "cursor",
                **{"in": "query"},
                description="The `next_cursor` of the previous page.",
                schema={"type": "string"},
            ),
        ]
    ),
    responses=responses(
        {200: json_answer(ref("RecordPage"), "A page of live records, by id.")},
        (*_ALWAYS, 400),
        notes={
            400: "A repeated parameter, or a `cursor` this API did not hand out "
            "(INVALID_REQUEST, `details.parameter` / `details.path`).",
            422: "A `limit` that is not an integer from 1 to 1000, a filter the records "
            "rules refuse, or a bad collection name (VALIDATION_ERROR).",
        },
    ),
)
async def list_records(
    collection: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    _query(request, "list")
    params = request.query_params
    filters = {
        name: parse_query_value(value)
        for name, value in params.multi_items()
        if name not in ("limit", "cursor")
    }
    limit_raw = params.get("limit")
    limit = parse_limit_param(limit_raw) if limit_raw is not None else None
    cursor = params.get("cursor")
    page = await svc.store.run(
        lambda tx: service.list_records(
            tx, caller.tenant, collection, filters=filters, limit=limit, cursor=cursor
        )
    )
    return _respond(request, page)


@router.post(
    "/search",
    summary="Full-text search",
    openapi_extra=_doc(_PATH, "SearchRequest"),
    responses=responses(
        {200: json_answer(ref("SearchResult"), "The best matches, best first.")},
        (*_ALWAYS, *BODY),
    ),
)
async def search_records(
    collection: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    _query(request, "search")
    body = await _json_object(request, svc, ("query", "filters", "limit"), ("query",))
    found = await svc.store.run(
        lambda tx: service.search(
            tx,
            caller.tenant,
            collection,
            query=body["query"],
            filters=body.get("filters"),
            limit=body.get("limit"),
        )
    )
    return _respond(request, found)
