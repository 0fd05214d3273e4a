"""HTTP routes of jobs, whatever their kind: ``/v1/jobs…`` (see docs/jobs.md).

List, state, cancel, failures, live events (SSE) and results. What is kind-specific comes
from the registry the app built (:class:`~batchops.server.jobs.runner.JobKinds`): a
kind's results, and the end hooks a cancelled job's transaction runs. The routes that
create jobs live with their kind (``/v1/imports``, ``/v1/bulk/…``, ``/v1/batch``).

Every route is scoped to the caller's tenant: another tenant's job id is a 404.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Request
from sse_starlette import EventSourceResponse
from starlette.responses import Response, StreamingResponse

from batchops._exceptions import ConflictError, ValidationError
from batchops.server import _ids
from batchops.server._ids import is_id
from batchops.server.deps import CallerDep, Services, ServicesDep
from batchops.server.http import JSONResponse
from batchops.server.jobs.runner import JobKinds
from batchops.server.jobs.schemas import (
    JOB_STATES,
    JOB_TYPES,
    TERMINAL_STATES,
    job_body,
    job_not_found,
    validate_job_filters,
)
from batchops.server.jobs.sse import job_events
from batchops.server.limits import MAX_PAGE_SIZE, parse_limit_param, validate_limit
from batchops.server.observability.logs import job_event
from batchops.server.openapi_routes import (
    AUTH,
    LIMIT_PARAM,
    STORE,
    json_answer,
    param,
    ref,
    responses,
)
from batchops.store.base import JobFailureRow, JobRow, Tx

__all__ = ["JobKindsDep", "registered_kinds", "router", "tenant_job"]

router = APIRouter(tags=["jobs"])

_ALWAYS = (*AUTH, *STORE)
_JOB = ref("Job")
_NO_JOB = {404: "No job with this id for this tenant (JOB_NOT_FOUND)."}
_JOB_PATH = {"parameters": [param("job_id")]}


def registered_kinds(request: Request) -> JobKinds:
    """The registry of job kinds the app built at start (``app.state.job_kinds``)."""
    kinds: JobKinds = request.app.state.job_kinds
    return kinds


JobKindsDep = Annotated[JobKinds, Depends(registered_kinds)]


async def tenant_job(svc: Services, tenant: str, job_id: str) -> JobRow:
    """The tenant's job, or 404 ``JOB_NOT_FOUND`` (also for an id no job can have)."""
    if not is_id(job_id):
        raise job_not_found(job_id)
    job = await svc.store.run(lambda tx: tx.get_job(job_id, tenant=tenant))
    if job is None:
        raise job_not_found(job_id)
    return job


@router.get(
    "/v1/jobs",
    summary="The caller's jobs, newest first",
    openapi_extra={
        "parameters": [
            param("state", **{"in": "query"}, schema={"type": "string", "enum": list(JOB_STATES)}),
            param("type", **{"in": "query"}, schema={"type": "string", "enum": list(JOB_TYPES)}),
            LIMIT_PARAM,
        ]
    },
    responses=responses(
        {200: json_answer(ref("JobList"), "The jobs.")},
        (*_ALWAYS, 422),
        notes={
            422: "An unknown state or type, or a limit that is not an integer from 1 to "
            f"{MAX_PAGE_SIZE} (VALIDATION_ERROR, details.path names it)."
        },
    ),
)
async def list_jobs(
    caller: CallerDep,
    svc: ServicesDep,
    state: str | None = None,
    type: str | None = None,
    limit: str | None = None,
) -> Response:
    """Filter with ``?state=`` and ``?type=``; ``limit`` by the rule of every list (1-1000,
    default 100: :func:`~batchops.server.limits.validate_limit`)."""
    validate_job_filters(state, type)
    size = validate_limit(None if limit is None else parse_limit_param(limit))
    rows = await svc.store.run(
        lambda tx: tx.list_jobs(caller.tenant, state=state, type=type, limit=size)
    )
    return JSONResponse({"jobs": [job_body(row) for row in rows]})


@router.get(
    "/v1/jobs/{job_id}",
    summary="A job's state and progress",
    openapi_extra=_JOB_PATH,
    responses=responses({200: json_answer(_JOB, "The job.")}, (*_ALWAYS, 404), notes=_NO_JOB),
)
async def get_job(job_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """State, counters, percentage and ETA."""
    return JSONResponse(job_body(await tenant_job(svc, caller.tenant, job_id)))


@router.post(
    "/v1/jobs/{job_id}/cancel",
    status_code=202,
    summary="Stop a job at its next chunk boundary",
    openapi_extra=_JOB_PATH,
    responses=responses(
        {202: json_answer(_JOB, "The job: cancelled, or to stop at its next chunk.")},
        (*_ALWAYS, 404, 409),
        notes={**_NO_JOB, 409: "The job has finished (JOB_FINISHED)."},
    ),
)
async def cancel_job(
    job_id: str, caller: CallerDep, svc: ServicesDep, kinds: JobKindsDep
) -> Response:
    """A queued job is cancelled at once; a running one stops before its next chunk
    (chunks already committed stay). 409 if the job has finished."""

    if not is_id(job_id):
        raise job_not_found(job_id)

    def cancel(tx: Tx) -> JobRow:
        job = tx.get_job(job_id, tenant=caller.tenant, for_update=True)
        if job is None:
            raise job_not_found(job_id)
        if job.state in TERMINAL_STATES:
            raise ConflictError(
                f"job {job_id!r} has finished ({job.state})",
                code="JOB_FINISHED",
                details={"id": job_id, "state": job.state},
            )
        job.cancel_requested = True
        if job.state == "queued":
            job.state = "cancelled"
            job.finished_at = _ids.now_iso()
        job.revision += 1
        tx.save_job(job)
        if job.state == "cancelled":
            kinds.ended(tx, job)  # the end hooks (webhooks' outbox): same transaction
        return job

    job = await svc.store.run(cancel, retries=3)
    if job.state == "cancelled":  # it never started: its input file is of no further use
        job_event("cancelled", job.id, job.type, processed=0, succeeded=0, failed=0)
        await svc.inputs.discard(job_id)  # (its chunk rows went with the cancel: kinds.ended)
    else:
        job_event("cancel requested", job.id, job.type)
    if svc.jobs is not None:
        svc.jobs.events.notify()
    return JSONResponse(job_body(job), status_code=202)


@router.get(
    "/v1/jobs/{job_id}/failures",
    summary="The rows a job could not apply, as NDJSON (default) or CSV",
    response_class=StreamingResponse,
    openapi_extra={
        "parameters": [
            param("job_id"),
            param(
                "format",
                **{"in": "query"},
                schema={"type": "string", "enum": ["ndjson", "csv"], "default": "ndjson"},
            ),
        ]
    },
    responses=responses(
        {
            200: {
                "description": "The failed rows, in row order: one JSON object per line "
                "(JobFailure), or CSV with the columns row,code,message,input.",
                "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
        (*_ALWAYS, 404, 422),
        notes={**_NO_JOB, 422: "format is neither ndjson nor csv."},
    ),
)
async def job_failures(
    job_id: str, caller: CallerDep, svc: ServicesDep, format: str = "ndjson"
) -> Response:
    """Streamed in row order: ``{"row", "code", "message", "input"}`` per line, or CSV with
    the columns ``row,code,message,input``."""
    if format not in ("ndjson", "csv"):
        raise ValidationError("'format' must be ndjson or csv", details={"path": "format"})
    await tenant_job(svc, caller.tenant, job_id)

    async def lines() -> AsyncIterator[bytes]:
        after = 0
        if format == "csv":
            yield b"row,code,message,input\r\n"
        while True:

            def fetch(tx: Tx, a: int = after) -> list[JobFailureRow]:
                return tx.list_job_failures(job_id, after_row=a, limit=1000)

            page = await svc.store.run(fetch)
            if not page:
                return
            if format == "csv":
                out = io.StringIO()
                writer = csv.writer(out)
                for f in page:
                    writer.writerow([f.row_number, f.code, f.message, f.input])
                yield out.getvalue().encode()
            else:
                yield b"".join(
                    orjson.dumps(
                        {
                            "row": f.row_number,
                            "code": f.code,
                            "message": f.message,
                            "input": f.input,
                        }
                    )
                    + b"\n"
                    for f in page
                )
            after = page[-1].row_number

    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(lines(), media_type=media)


@router.get(
    "/v1/jobs/{job_id}/events",
    summary="Live progress as Server-Sent Events",
    response_class=EventSourceResponse,
    openapi_extra={
        "parameters": [
            param("job_id"),
            param(
                "Last-Event-ID",
                **{"in": "header"},
                description="Resume after this event (a job revision).",
                schema={"type": "string"},
            ),
        ]
    },
    responses=responses(
        {
            200: {
                "description": "`progress` events, then one `complete` or `error`; each "
                "event's `id` is the job's revision and its `data` the job (the shape of "
                "GET /v1/jobs/{id}).",
                "content": {"text/event-stream": {"schema": ref("JobEvent")}},
            }
        },
        (*_ALWAYS, 404),
        notes=_NO_JOB,
    ),
)
async def job_events_stream(
    job_id: str,
    caller: CallerDep,
    svc: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """``progress`` events, then one ``complete`` or ``error``; resumable with
    ``Last-Event-ID`` (see batchops.server.jobs.sse)."""
    await tenant_job(svc, caller.tenant, job_id)
    try:
        last = int(last_event_id) if last_event_id else 0
    except ValueError:
        last = 0
    poll_s = svc.settings.job_poll_s
    return EventSourceResponse(job_events(svc, caller.tenant, job_id, last, poll_s=poll_s), ping=15)


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
async def job_results(
    job_id: str, caller: CallerDep, svc: ServicesDep, kinds: JobKindsDep
) -> Response:
    """A ``batch`` job: the JSON the synchronous ``POST /v1/batch`` would have answered
    (its status in ``Batch-Status``). A bulk job: the inline answer's shape, streamed.
    409 ``JOB_NOT_FINISHED`` (with ``Retry-After``) while the job is queued or running."""
    # (Answered by the job's kind: JobKind.results, registered at app start.)
    job = await tenant_job(svc, caller.tenant, job_id)
    kind = kinds.get(job.type)
    if job.state not in TERMINAL_STATES or kind is None or kind.results is None:
        raise _no_results(job)
    answer = await kind.results(svc.store, job)
    if answer is None:
        raise _no_results(job)
    return answer
