"""HTTP routes of bulk update/delete (see docs/jobs.md): ``POST /v1/bulk/update`` and
``POST /v1/bulk/delete``. A job's results are answered by ``GET /v1/jobs/{id}/results``
(:mod:`batchops.server.jobs.router`), from :func:`batchops.server.bulk.job.bulk_results`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from batchops.server.bulk.service import Operation, parse_request, submit_bulk
from batchops.server.deps import CallerDep, ServicesDep
from batchops.server.http import JSONResponse, parse_json, read_body, require_json
from batchops.server.jobs.runner import queued
from batchops.server.jobs.schemas import job_body
from batchops.server.openapi_routes import (
    AUTH,
    BODY,
    JOB_LINKS,
    LOCATION,
    STORE,
    json_answer,
    json_body,
    ref,
    responses,
)
from batchops.server.webhooks.schemas import check_notification_target

__all__ = ["router"]

router = APIRouter(tags=["jobs"])


def _doc(schema: str, example: dict[str, Any]) -> dict[str, Any]:
    return json_body(ref(schema), example=example)


def _answers(done: str) -> dict[int | str, dict[str, Any]]:
    return responses(
        {
            200: json_answer(ref("BulkResult"), f"Few enough matches: {done} at once."),
            202: json_answer(
                ref("Job"),
                "More matches than the server handles inline, or a notification_webhook: "
                "a job (its results at /v1/jobs/{id}/results).",
                LOCATION,
                JOB_LINKS,
            ),
        },
        (*AUTH, *STORE, *BODY, 422),
        notes={
            422: "A bad value (details.path names it): an invalid collection name or "
            "filter, a non-object update, a notification_webhook target not allowed."
        },
    )


async def _bulk(operation: Operation, request: Request, caller: Any, svc: Any) -> Response:
    require_json(request)
    body = parse_json(await read_body(request, max_bytes=svc.settings.max_body_bytes))
    collection, options, ids, hook = parse_request(operation, body)
    if hook is not None:  # before the transaction: a refused target writes nothing
        await check_notification_target(hook, allow_private=svc.settings.allow_private_webhooks)
    inline_max = svc.settings.bulk_inline_max
    answer, job = await svc.store.run(
        lambda tx: submit_bulk(
            tx, caller.tenant, collection, options, ids, inline_max=inline_max, hook=hook
        ),
        retries=3,
    )
    headers = dict(getattr(request.state, "rate_headers", None) or {})
    if job is None:
        return JSONResponse(answer, headers=headers)
    queued(svc.jobs, job)
    headers["Location"] = f"/v1/jobs/{job.id}"
    return JSONResponse(job_body(job), status_code=202, headers=headers)


@router.post(
    "/v1/bulk/update",
    summary="Merge-patch every live record matching a filter (inline when small, else a job)",
    openapi_extra=_doc(
        "BulkUpdateRequest",
        {"collection": "people", "filter": {"status": "draft"}, "update": {"archived": True}},
    ),
    responses=_answers("updated"),
)
async def bulk_update(request: Request, caller: CallerDep, svc: ServicesDep) -> Response:
    """``{collection, filter, update, dry_run?, limit?, chunk_size?, notification_webhook?}``:
    200 with ``{operation, collection, dry_run, matched, updated, ids}`` for at most
    ``bulk_inline_max`` matches, else 202 with a ``bulk_update`` job (always a job when a
    ``notification_webhook`` is given: the webhook reports the job's end)."""
    return await _bulk("update", request, caller, svc)


@router.post(
    "/v1/bulk/delete",
    summary="Delete live records by filter or ids (inline when small, else a job)",
    openapi_extra=_doc(
        "BulkDeleteRequest",
        {
            "collection": "people",
            "filter": {"status": "draft"},
            "soft": True,
            "notification_webhook": {
                "url": "https://hooks.example.com/batchops",
                "events": ["job.succeeded", "job.failed"],
                "secret": "a-secret-of-16-or-more-characters",
            },
        },
    ),
    responses=_answers("deleted"),
)
async def bulk_delete(request: Request, caller: CallerDep, svc: ServicesDep) -> Response:
    """``{collection, filter | ids, soft?, dry_run?, limit?, chunk_size?,
    notification_webhook?}``: 200 with ``{operation, collection, dry_run, matched, deleted,
    soft, ids, not_found}``, or 202 with a ``bulk_delete`` job (always a job when a
    ``notification_webhook`` is given)."""
    return await _bulk("delete", request, caller, svc)
