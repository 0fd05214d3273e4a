"""HTTP routes of bulk update/delete and of job results (see docs/jobs.md):
``POST /v1/bulk/update``, ``POST /v1/bulk/delete``, ``GET /v1/jobs/{id}/results``.

Every route is scoped to the caller's tenant: another tenant's job id is a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from batchops._exceptions import ConflictError
from batchops.server.deps import CallerDep, ServicesDep
from batchops.server.http import JSONResponse, parse_json, read_body, require_json
from batchops.server.jobs.batches import batch_results
from batchops.server.jobs.bulk import (
    BULK_TYPES,
    Operation,
    bulk_results,
    parse_request,
    submit_bulk,
)
from batchops.server.jobs.schemas import TERMINAL_STATES, job_body, job_not_found
from batchops.server.jobs.webhooks import check_notification_target
from batchops.server.openapi import (
    AUTH,
    BODY,
    JOB_LINKS,
    LOCATION,
    STORE,
    json_answer,
    json_body,
    param,
    ref,
    responses,
)
from batchops.server.records.schemas import is_id
from batchops.store.base import JobRow, Tx

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
    if svc.jobs is not None:
        svc.jobs.wake()
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


def _no_results(job: JobRow) -> ConflictError:
    if job.state not in TERMINAL_STATES:
        return ConflictError(
            f"job {job.id!r} has not finished ({job.state}); its results come when it ends",
            code="JOB_NOT_FINISHED",
            details={
                "id": job.id,
                "state": job.state,
                "processed": job.processed,
                "total": job.total,
            },
            retry_after=1.0,
        )
    return ConflictError(
        f"job {job.id!r} has no results ({job.type} job, {job.state})",
        code="NO_RESULTS",
        details={"id": job.id, "type": job.type, "state": job.state},
    )


@router.get(
    "/v1/jobs/{job_id}/results",
    summary="What a finished batch or bulk job did",
    openapi_extra={"parameters": [param("job_id")]},
    responses=responses(
        {
            200: json_answer(
                {"anyOf": [ref("BatchResponse"), ref("BulkResult")]},
                "A batch job: the answer the synchronous POST /v1/batch would have given "
                "(its status in Batch-Status). A bulk job: the inline answer's shape.",
                {
                    "Batch-Status": {
                        "description": "A batch job: the status of its answer (200, 207, "
                        "or an atomic batch's failing status).",
                        "schema": {"type": "integer"},
                    },
                    "X-Batch-Id": {
                        "description": "A batch job: its batch id.",
                        "schema": {"type": "string"},
                    },
                },
            )
        },
        (*AUTH, *STORE, 404, 409),
        notes={
            404: "No job with this id for this tenant (JOB_NOT_FOUND).",
            409: "The job has not finished (JOB_NOT_FINISHED, with Retry-After), or has no "
            "results: an import, a batch cancelled before it ran (NO_RESULTS).",
        },
    ),
)
async def job_results(job_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """A ``batch`` job: the JSON the synchronous ``POST /v1/batch`` would have answered
    (its status in ``Batch-Status``). A bulk job: the inline answer's shape, streamed.
    409 ``JOB_NOT_FINISHED`` (with ``Retry-After``) while the job is queued or running."""

    if not is_id(job_id):
        raise job_not_found(job_id)

    def fetch(tx: Tx) -> tuple[JobRow | None, bytes | None]:
        job = tx.get_job(job_id, tenant=caller.tenant)
        if job is None or job.type != "batch":
            return job, None
        return job, tx.get_job_result(job_id, 1)

    job, stored = await svc.store.run(fetch)
    if job is None:
        raise job_not_found(job_id)
    if job.state not in TERMINAL_STATES or job.type not in ("batch", *BULK_TYPES):
        raise _no_results(job)
    if job.type == "batch":
        if stored is None:
            raise _no_results(job)
        status, data = batch_results(stored)
        return Response(
            data,
            media_type="application/json",
            headers={"Batch-Status": str(status), "X-Batch-Id": str(job.options.get("batch_id"))},
        )
    return StreamingResponse(bulk_results(svc.store, job), media_type="application/json")
