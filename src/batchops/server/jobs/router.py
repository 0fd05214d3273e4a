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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
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
from batchops.server import _ids
from batchops.server.deps import CallerDep, Services, ServicesDep
from batchops.server.http import JSONResponse
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
from batchops.server.jobs.uploads import is_multipart, receive_upload
from batchops.server.jobs.webhooks import (
    WebhookSpec,
    check_notification_target,
    enqueue_job_event,
    job_webhook_row,
    parse_notification_webhook,
)
from batchops.server.openapi import (
    AUTH,
    BODY,
    JOB_LINKS,
    LOCATION,
    STORE,
    import_parameters,
    json_answer,
    param,
    ref,
    responses,
)
from batchops.server.records.schemas import is_id, validate_collection
from batchops.store.base import JobFailureRow, JobRow, Tx

__all__ = ["router"]

router = APIRouter(tags=["jobs"])

_ALWAYS = (*AUTH, *STORE)
_JOB = ref("Job")
_NO_JOB = {404: "No job with this id for this tenant (JOB_NOT_FOUND)."}
_JOB_PATH = {"parameters": [param("job_id")]}

_MEDIA_FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/json": "json",
}
_EXTENSION_FORMATS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json"}


def _format_of(explicit: str | None, content_type: str, filename: str | None, *, part: bool) -> str:
    """``format`` if given, else the file's media type, else (a multipart ``part``) its
    name's extension."""
    if explicit:
        return explicit
    media = content_type.split(";", 1)[0].strip().lower()
    found = _MEDIA_FORMATS.get(media)
    if found is None and filename is not None:
        found = _EXTENSION_FORMATS.get(PurePosixPath(filename).suffix.lower())
    if found is not None:
        return found
    if part:
        raise UnsupportedMediaTypeError(
            "give the file part a Content-Type of text/csv, application/x-ndjson or "
            "application/json, or a filename ending in .csv, .ndjson, .jsonl or .json, "
            "or name the format with format=csv|ndjson|json",
            details={"content_type": content_type, "filename": filename},
        )
    raise UnsupportedMediaTypeError(
        "send the file as text/csv, application/x-ndjson or application/json "
        "(or name it with ?format=csv|ndjson|json)",
        details={"content_type": content_type},
    )


def _merge_options(query: dict[str, str | None], form: dict[str, str]) -> dict[str, str | None]:
    """The options given in the query string and as multipart text fields, as one set;
    400 naming the option when both places give it, differently."""
    merged = dict(query)
    for name, value in form.items():
        given = query.get(name)
        if given not in (None, "") and given != value:
            raise InvalidRequestError(
                f"{name!r} is given both in the query string and as a form field, "
                "with different values; give it once",
                code="CONFLICTING_OPTION",
                details={"path": name},
            )
        merged[name] = value
    return merged


@dataclass(frozen=True, slots=True)
class _ImportRequest:
    """An import's checked options."""

    collection: str
    options: ImportOptions
    hook: WebhookSpec | None


async def _import_request(
    values: dict[str, str | None],
    svc: Services,
    *,
    content_type: str,
    filename: str | None = None,
    part: bool = False,
) -> _ImportRequest:
    """Check the import's options (from wherever they came): 422 naming the bad one, 415
    when the format cannot be told."""
    collection = values.get("collection")
    validate_collection(collection)
    assert collection is not None
    hook = parse_notification_webhook(values.get("notification_webhook"))
    if hook is not None:
        await check_notification_target(hook, allow_private=svc.settings.allow_private_webhooks)
    options = ImportOptions.parse(
        format=_format_of(values.get("format"), content_type, filename, part=part),
        validation=values.get("validation"),
        dry_run=values.get("dry_run"),
        upsert_key=values.get("upsert_key"),
        chunk_size=values.get("chunk_size"),
        mapping=values.get("mapping"),
    )
    return _ImportRequest(collection, options, hook)


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
    openapi_extra=import_parameters(),
    responses=responses(
        {202: json_answer(_JOB, "The queued import job.", LOCATION, JOB_LINKS)},
        (*_ALWAYS, *BODY, 422),
        notes={
            400: "An empty file (EMPTY_UPLOAD), a JSON file that is not an array "
            "(INVALID_JSON), a CSV header that cannot be read (INVALID_CSV), a malformed "
            "multipart body (INVALID_MULTIPART), an option given twice differently "
            "(CONFLICTING_OPTION), a bad gzip body.",
            413: "The file is larger than the server's upload limit (UPLOAD_TOO_LARGE) or "
            "inflates too much (INFLATION_RATIO_EXCEEDED).",
            415: "The format cannot be told from format=, the media type or the file name.",
            422: "A bad option (details.path names it), mapped columns missing from the CSV "
            "header, or a notification_webhook target that is not allowed.",
        },
    ),
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
    """The file is the raw body, or the part named ``file`` of a ``multipart/form-data``
    body (whose text fields may carry the options too); either way it is streamed to disk.
    The answer (202) is the queued job."""
    query: dict[str, str | None] = {
        "collection": collection,
        "format": format,
        "validation": validation,
        "dry_run": dry_run,
        "upsert_key": upsert_key,
        "chunk_size": chunk_size,
        "mapping": mapping,
        "notification_webhook": notification_webhook,
    }
    content_type = request.headers.get("content-type", "")
    # A raw body's options are all in the query string: refuse bad ones before reading it.
    # A multipart body's may follow the file, so they are checked once it has arrived.
    checked = (
        None
        if is_multipart(content_type)
        else await _import_request(query, svc, content_type=content_type)
    )
    job_id = _ids.new_record_id()
    directory = uploads_dir(svc.settings)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{job_id}.part"
    try:
        upload = await receive_upload(
            request, partial, max_bytes=svc.settings.max_upload_bytes, fields=query.keys()
        )
        if checked is None:
            checked = await _import_request(
                _merge_options(query, upload.fields),
                svc,
                content_type=upload.content_type,
                filename=upload.filename,
                part=True,
            )
        await _check_file(partial, checked.options)
        os.replace(partial, directory / job_id)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    hook = checked.hook
    stored = ImportOptions(**{**_fields(checked.options), "bytes": upload.size})
    job = JobRow(
        id=job_id,
        tenant=caller.tenant,
        type="import",
        state="queued",
        collection=checked.collection,
        options=stored.to_dict(),
        created_at=_ids.now_iso(),
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


@router.get(
    "/v1/jobs",
    summary="The caller's jobs, newest first",
    openapi_extra={
        "parameters": [
            param("state", **{"in": "query"}, schema={"type": "string", "enum": list(JOB_STATES)}),
            param("type", **{"in": "query"}, schema={"type": "string", "enum": list(JOB_TYPES)}),
            param("limit"),
        ]
    },
    responses=responses(
        {200: json_answer(ref("JobList"), "The jobs.")},
        (*_ALWAYS, 400, 422),
        notes={422: "An unknown state or type, or a limit out of range."},
    ),
)
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
    if not is_id(job_id):
        raise job_not_found(job_id)
    job: JobRow | None = await svc.store.run(lambda tx: tx.get_job(job_id, tenant=tenant))
    if job is None:
        raise job_not_found(job_id)
    return job


@router.get(
    "/v1/jobs/{job_id}",
    summary="A job's state and progress",
    openapi_extra=_JOB_PATH,
    responses=responses({200: json_answer(_JOB, "The job.")}, (*_ALWAYS, 404), notes=_NO_JOB),
)
async def get_job(job_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """State, counters, percentage and ETA."""
    return JSONResponse(job_body(await _job(svc, caller.tenant, job_id)))


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
async def cancel_job(job_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
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
    await _job(svc, caller.tenant, job_id)
    try:
        last = int(last_event_id) if last_event_id else 0
    except ValueError:
        last = 0
    poll_s = svc.settings.job_poll_s
    return EventSourceResponse(job_events(svc, caller.tenant, job_id, last, poll_s=poll_s), ping=15)
