"""REST routes for records: thin HTTP adapters over the operations layer.

Each handler reads and checks the body shape, then makes ONE ``store.run`` call into the
operations layer — the same functions the batch executor and jobs call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from batchops._exceptions import InvalidRequestError
from batchops.server.batch.routing import parse_if_match, parse_query_value
from batchops.server.deps import CallerDep, ServicesDep
from batchops.server.http import JSONResponse, parse_json, read_body, require_json
from batchops.server.records import operations as ops

__all__ = ["router"]

router = APIRouter(prefix="/v1/collections/{collection}", tags=["records"])

_DATA_SCHEMA = {"type": "object", "additionalProperties": True}
_RECORD_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "collection": {"type": "string"},
        "data": _DATA_SCHEMA,
        "version": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


def _body_doc(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": required,
                        "additionalProperties": False,
                    }
                }
            },
        }
    }


def _record_doc(status: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"content": {"application/json": {"schema": _RECORD_SCHEMA}}}}


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
    openapi_extra=_body_doc({"id": {"type": "string"}, "data": _DATA_SCHEMA}, ["data"]),
    responses=_record_doc("201"),
)
async def create_record(
    collection: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    body = await _json_object(request, svc, ("id", "data"), ("data",))
    record_id = body.get("id")
    record = await svc.store.run(
        lambda tx: ops.create(tx, caller.tenant, collection, body["data"], record_id)
    )
    return _respond(request, record, 201)


@router.get("/records/{record_id}", summary="Read a record", responses=_record_doc("200"))
async def read_record(
    collection: str, record_id: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    record = await svc.store.run(lambda tx: ops.read(tx, caller.tenant, collection, record_id))
    return _respond(request, record)


@router.patch(
    "/records/{record_id}",
    summary="Merge-patch a record's data (RFC 7386)",
    openapi_extra=_body_doc({"data": _DATA_SCHEMA}, ["data"]),
    responses=_record_doc("200"),
)
async def update_record(
    collection: str, record_id: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    body = await _json_object(request, svc, ("data",), ("data",))
    if_match = _if_match(request)
    record = await svc.store.run(
        lambda tx: ops.update(
            tx, caller.tenant, collection, record_id, body["data"], if_match=if_match
        )
    )
    return _respond(request, record)


@router.put(
    "/records/{record_id}",
    summary="Replace a record's data",
    openapi_extra=_body_doc({"data": _DATA_SCHEMA}, ["data"]),
    responses=_record_doc("200"),
)
async def replace_record(
    collection: str, record_id: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    body = await _json_object(request, svc, ("data",), ("data",))
    if_match = _if_match(request)
    record = await svc.store.run(
        lambda tx: ops.replace(
            tx, caller.tenant, collection, record_id, body["data"], if_match=if_match
        )
    )
    return _respond(request, record)


@router.delete("/records/{record_id}", summary="Delete a record (soft unless ?hard=true)")
async def delete_record(
    collection: str,
    record_id: str,
    request: Request,
    caller: CallerDep,
    svc: ServicesDep,
    hard: bool = False,
) -> Response:
    if_match = _if_match(request)
    result = await svc.store.run(
        lambda tx: ops.delete(
            tx, caller.tenant, collection, record_id, hard=hard, if_match=if_match
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
)
async def list_records(
    collection: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    params = request.query_params
    filters = {
        name: parse_query_value(value)
        for name, value in params.multi_items()
        if name not in ("limit", "cursor")
    }
    limit_raw = params.get("limit")
    if limit_raw is not None and not limit_raw.isdigit():
        raise InvalidRequestError("'limit' must be an integer", details={"path": "limit"})
    limit = int(limit_raw) if limit_raw is not None else None
    cursor = params.get("cursor")
    page = await svc.store.run(
        lambda tx: ops.list_records(
            tx, caller.tenant, collection, filters=filters, limit=limit, cursor=cursor
        )
    )
    return _respond(request, page)


@router.post(
    "/search",
    summary="Full-text search",
    openapi_extra=_body_doc(
        {
            "query": {"type": "string"},
            "filters": {"type": "object"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        ["query"],
    ),
)
async def search_records(
    collection: str, request: Request, caller: CallerDep, svc: ServicesDep
) -> Response:
    body = await _json_object(request, svc, ("query", "filters", "limit"), ("query",))
    found = await svc.store.run(
        lambda tx: ops.search(
            tx,
            caller.tenant,
            collection,
            query=body["query"],
            filters=body.get("filters"),
            limit=body.get("limit"),
        )
    )
    return _respond(request, found)
