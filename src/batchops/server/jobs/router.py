"""HTTP routes of bulk jobs: ``POST /v1/imports`` and ``/v1/jobs…`` (see docs/jobs.md).

Every route is scoped to the caller's tenant: another tenant's job id is a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse
from starlette.responses import Response, StreamingResponse

from batchops._exceptions import (
    ConflictError,
    InvalidRequestError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from batchops.server.deps import CallerDep, ServicesDep
from batchops.server.http import JSONResponse, iter_body
from batchops.server.jobs.imports import csv_header
from batchops.server.jobs.runner import uploads_dir
from batchops.server.jobs.schemas import (
    JOB_STATES,
    JOB_TYPES,
    TERMINAL_STATES,
    ImportOptions,
    job_body,
    job_not_found,
)
from batchops.server.jobs.sse import job_events
from batchops.server.jobs.targets import check_target
from batchops.server.jobs.webhooks import (
    enqueue_job_event,
    job_webhook_row,
    parse_notification_webhook,
)
from batchops.server.records import operations
from batchops.server.records.schemas import validate_collection
from batchops.store.base import JobFailureRow, JobRow, Tx

__all__ = ["router"]

router = APIRouter(tags=["jobs"])

_MEDIA_FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/json": "json",
}
_WRITE_BUFFER = 1 << 20


def _format_of(explicit: str | None, content_type: str) -> str:
    if explicit:
        return explicit
    media = content_type.split(";", 1)[0].strip().lower()
    found = _MEDIA_FORMATS.get(media)
    if found is None:
        raise UnsupportedMediaTypeError(
            "send the file as text/csv, application/x-ndjson or application/json "
            "(or name it with ?format=csv|ndjson|json)",
            details={"content_type": content_type},
        )
    return found


async def _store_upload(request: Request, target: Path, max_bytes: int) -> int:
    """Stream the body to ``target`` (gunzipped if ``Content-Encoding: gzip``), counting
    bytes; 413 past ``max_bytes``. Never more than ~1 MiB of it in memory."""
    size = 0
    buffer = bytearray()
    with target.open("wb") as f:
        async for chunk in iter_body(
            request, max_bytes=max_bytes, what="upload", code="UPLOAD_TOO_LARGE"
        ):
            size += len(chunk)
            buffer += chunk
            if len(buffer) >= _WRITE_BUFFER:
                data, buffer = bytes(buffer), bytearray()
                await asyncio.to_thread(f.write, data)
        if buffer:
            await asyncio.to_thread(f.write, bytes(buffer))
    return size


def _first_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        while True:
            block = f.read(4096)
            if not block:
                return b""
            stripped = block.lstrip()
            if stripped:
                return stripped[:1]


async def _check_file(path: Path, options: ImportOptions) -> None:
    """Cheap checks of the stored file that deserve an answer now rather than a failed job:
    empty, not a JSON array, a CSV without a header or lacking mapped columns."""
    first = await asyncio.to_thread(_first_byte, path)
    if not first:
        raise InvalidRequestError("the uploaded file is empty", code="EMPTY_UPLOAD")
    if options.format == "json" and first != b"[":
        raise InvalidRequestError(
            "a JSON import is one top-level array of objects; use format=ndjson for one "
            "object per line",
            code="INVALID_JSON",
        )
    if options.format == "csv":
        try:
            header = await asyncio.to_thread(csv_header, path)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidRequestError(
                f"the CSV header cannot be read: {exc}", code="INVALID_CSV"
            ) from exc
        if options.mapping is not None:
            missing = sorted(set(options.mapping) - set(header))
            if missing:
                raise ValidationError(
                    f"mapped columns are not in the CSV header: {', '.join(missing)}",
                    details={"path": "mapping", "missing": missing, "header": header},
                )


@router.post(
    "/v1/imports",
    status_code=202,
    summary="Upload a CSV / NDJSON / JSON file and import it as a background job",
)
async def create_import(
    request: Request,
    caller: CallerDep,
    svc: ServicesDep,
    collection: Annotated[str | None, Query()] = None,
    format: Annotated[str | None, Query(description="csv | ndjson | json")] = None,
    validation: Annotated[str | None, Query(description="strict (default) | lenient")] = None,
    dry_run: Annotated[str | None, Query()] = None,
    upsert_key: Annotated[str | None, Query()] = None,
    chunk_size: Annotated[str | None, Query()] = None,
    mapping: Annotated[str | None, Query(description="JSON: column -> {field, type}")] = None,
    notification_webhook: Annotated[
        str | None, Query(description="JSON: {url, events?, secret} called when the job ends")
    ] = None,
) -> Response:
    """The body is the file itself, streamed to disk; the answer (202) is the queued job."""
    validate_collection(collection)
    hook = parse_notification_webhook(notification_webhook)
    if hook is not None:
        await check_target(hook.url, allow_private=svc.settings.allow_private_webhooks)
    assert collection is not None
    fmt = _format_of(format, request.headers.get("content-type", ""))
    options = ImportOptions.parse(
        format=fmt,
        validation=validation,
        dry_run=dry_run,
        upsert_key=upsert_key,
        chunk_size=chunk_size,
        mapping=mapping,
    )
    job_id = operations.new_record_id()
    directory = uploads_dir(svc.settings)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{job_id}.part"
    try:
        size = await _store_upload(request, partial, svc.settings.max_upload_bytes)
        await _check_file(partial, options)
        os.replace(partial, directory / job_id)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    stored = ImportOptions(**{**_fields(options), "bytes": size})
    job = JobRow(
        id=job_id,
        tenant=caller.tenant,
        type="import",
        state="queued",
        collection=collection,
        options=stored.to_dict(),
        created_at=operations.now_iso(),
        revision=1,
    )

    def insert(tx: Tx) -> None:
        tx.insert_job(job)
        if hook is not None:
            tx.insert_webhook(job_webhook_row(hook, job))

    try:
        await svc.store.run(insert, retries=3)
    except BaseException:
        with contextlib.suppress(OSError):
            (directory / job_id).unlink(missing_ok=True)
        raise
    if svc.jobs is not None:
        svc.jobs.wake()
    return JSONResponse(job_body(job), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})


def _fields(options: ImportOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in ImportOptions.__slots__}


@router.get("/v1/jobs", summary="The caller's jobs, newest first")
async def list_jobs(
    caller: CallerDep,
    svc: ServicesDep,
    state: str | None = None,
    type: str | None = None,
    limit: int = 100,
) -> Response:
    """Filter with ``?state=`` and ``?type=``; ``limit`` 1-1000."""
    if state is not None and state not in JOB_STATES:
        raise ValidationError(
            f"'state' must be one of {', '.join(JOB_STATES)}", details={"path": "state"}
        )
    if type is not None and type not in JOB_TYPES:
        raise ValidationError(
            f"'type' must be one of {', '.join(JOB_TYPES)}", details={"path": "type"}
        )
    if not 1 <= limit <= 1000:
        raise ValidationError("'limit' must be from 1 to 1000", details={"path": "limit"})
    rows = await svc.store.run(
        lambda tx: tx.list_jobs(caller.tenant, state=state, type=type, limit=limit)
    )
    return JSONResponse({"jobs": [job_body(row) for row in rows]})


async def _job(svc: Any, tenant: str, job_id: str) -> JobRow:
    job: JobRow | None = await svc.store.run(lambda tx: tx.get_job(job_id, tenant=tenant))
    if job is None:
        raise job_not_found(job_id)
    return job


@router.get("/v1/jobs/{job_id}", summary="A job's state and progress")
async def get_job(job_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """State, counters, percentage and ETA."""
    return JSONResponse(job_body(await _job(svc, caller.tenant, job_id)))


@router.post("/v1/jobs/{job_id}/cancel", summary="Stop a job at its next chunk boundary")
async def cancel_job(job_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """A queued job is cancelled at once; a running one stops before its next chunk
    (chunks already committed stay). 409 if the job has finished."""

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
            job.finished_at = operations.now_iso()
        job.revision += 1
        tx.save_job(job)
        if job.state == "cancelled":
            enqueue_job_event(tx, job)
        return job

    job = await svc.store.run(cancel, retries=3)
    if job.state == "cancelled":  # it never started: its upload is of no further use
        with contextlib.suppress(OSError):
            await asyncio.to_thread((uploads_dir(svc.settings) / job_id).unlink, missing_ok=True)
    if svc.jobs is not None:
        svc.jobs.events.notify()
    return JSONResponse(job_body(job), status_code=202)


@router.get(
    "/v1/jobs/{job_id}/failures",
    summary="The rows a job could not apply, as NDJSON (default) or CSV",
)
async def job_failures(
    job_id: str, caller: CallerDep, svc: ServicesDep, format: str = "ndjson"
) -> Response:
    """Streamed in row order: ``{"row", "code", "message", "input"}`` per line, or CSV with
    the columns ``row,code,message,input``."""
    if format not in ("ndjson", "csv"):
        raise ValidationError("'format' must be ndjson or csv", details={"path": "format"})
    await _job(svc, caller.tenant, job_id)

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


@router.get("/v1/jobs/{job_id}/events", summary="Live progress as Server-Sent Events")
async def job_events_stream(
    job_id: str,
    caller: CallerDep,
    svc: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """``progress`` events, then one ``complete`` or ``error``; resumable with
    ``Last-Event-ID`` (see batchops.server.jobs.sse)."""
    await _job(svc, caller.tenant, job_id)
    try:
        last = int(last_event_id) if last_event_id else 0
    except ValueError:
        last = 0
    poll_s = svc.settings.job_poll_s
    return EventSourceResponse(job_events(svc, caller.tenant, job_id, last, poll_s=poll_s), ping=15)
