"""``POST /v1/imports``: an import file, streamed to where jobs' inputs are kept (the
database or the uploads directory, see :mod:`batchops.server.jobs.inputs`), becomes a
queued ``import`` job (see docs/jobs.md).

The options are checked before the file is read when they are all in the query string,
else (multipart: text fields may follow the file) once it has arrived; then cheap checks of
the stored file that deserve an answer now rather than a failed job. The job's row is
inserted in the transaction that makes the upload visible, and nothing stored is left
behind when the request fails.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from batchops._exceptions import InvalidRequestError, UnsupportedMediaTypeError, ValidationError
from batchops.server import _ids
from batchops.server.deps import CallerDep, Services, ServicesDep
from batchops.server.http import JSONResponse
from batchops.server.imports.csv_rows import csv_header
from batchops.server.imports.openapi import import_parameters
from batchops.server.imports.options import ImportOptions
from batchops.server.imports.retry import retry_failures
from batchops.server.imports.uploads import is_multipart, receive_upload
from batchops.server.jobs.runner import queued
from batchops.server.jobs.schemas import job_body
from batchops.server.openapi_routes import (
    AUTH,
    BODY,
    JOB_LINKS,
    LOCATION,
    STORE,
    json_answer,
    param,
    ref,
    responses,
)
from batchops.server.records.schemas import validate_collection
from batchops.server.webhooks.schemas import (
    WebhookSpec,
    check_notification_target,
    job_webhook_row,
    parse_notification_webhook,
)
from batchops.store.base import JobRow, Tx

__all__ = ["accept_import", "router"]

router = APIRouter(tags=["jobs"])

_ALWAYS = (*AUTH, *STORE)
_JOB = ref("Job")

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
    name's extension. An empty ``format=`` is not "absent": it is refused as any value
    outside csv|ndjson|json is (the document declares the option an enum)."""
    if explicit is not None:
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


def _first_byte(open_input: Callable[[], BinaryIO]) -> bytes:
    with open_input() as f:
        while True:
            block = f.read(4096)
            if not block:
                return b""
            stripped = block.lstrip()
            if stripped:
                return stripped[:1]


async def _check_file(
    open_input: Callable[[], BinaryIO], options: ImportOptions
) -> list[str] | None:
    """Cheap checks of the stored file that deserve an answer now rather than a failed job:
    empty, not a JSON array, a CSV without a header or lacking mapped columns. The file is
    read from its start by ``open_input`` (blocking: in a worker thread). A CSV file's
    header cells (kept with the job's options), else None."""
    first = await asyncio.to_thread(_first_byte, open_input)
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
            header = await asyncio.to_thread(lambda: csv_header(open_input()))
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
        return header
    return None


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
    body (whose text fields may carry the options too); either way it is streamed to the
    job inputs' storage. The answer (202) is the queued job."""
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
    job = await accept_import(request, svc, caller.tenant, query)
    return JSONResponse(job_body(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


async def accept_import(
    request: Request,
    svc: Services,
    tenant: str,
    query: dict[str, str | None],
    *,
    blank_is_absent: bool = False,
) -> JobRow:
    """Receive the import file of ``request`` (its raw body, or the part named ``file`` of
    a multipart body whose text fields may carry options too), check it with its options
    (``query``: the options given outside the body) and queue its job for ``tenant``: what
    ``POST /v1/imports`` does, and the console's upload form. ``blank_is_absent``: an empty
    text field means the option is not given (an HTML form sends every field it has).
    Returns the queued job; nothing stored is left behind when it raises."""
    content_type = request.headers.get("content-type", "")
    # A raw body's options are all in the query string: refuse bad ones before reading it.
    # A multipart body's may follow the file, so they are checked once it has arrived.
    checked = (
        None
        if is_multipart(content_type)
        else await _import_request(query, svc, content_type=content_type)
    )
    job_id = _ids.new_record_id()
    writer = svc.inputs.receive(job_id)
    try:
        upload = await receive_upload(
            request, writer, max_bytes=svc.settings.max_upload_bytes, fields=query.keys()
        )
        await writer.finish()
        if checked is None:
            fields = upload.fields
            if blank_is_absent:
                fields = {name: value for name, value in fields.items() if value != ""}
            checked = await _import_request(
                _merge_options(query, fields),
                svc,
                content_type=upload.content_type,
                filename=upload.filename,
                part=True,
            )
        header = await _check_file(writer.open, checked.options)
        hook = checked.hook
        stored = ImportOptions(
            **{**_fields(checked.options), "bytes": upload.size, "header": header}
        )
        job = JobRow(
            id=job_id,
            tenant=tenant,
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

        # The job's row commits with the upload made whole and visible, or not at all.
        await writer.publish(insert)
    except BaseException:
        await writer.abort()
        raise
    queued(svc.jobs, job)
    return job


@router.post(
    "/v1/jobs/{job_id}/retry-failures",
    status_code=202,
    summary="Import a finished import's failed rows again, as a new job",
    openapi_extra={"parameters": [param("job_id")]},
    responses=responses(
        {202: json_answer(_JOB, "The new import job, queued.", LOCATION, JOB_LINKS)},
        (*_ALWAYS, 404, 409),
        notes={
            404: "No job with this id for this tenant (JOB_NOT_FOUND).",
            409: "Not an import (NOT_AN_IMPORT), not finished (JOB_NOT_FINISHED, with "
            "Retry-After), a CSV import uploaded before its header was kept "
            "(CSV_HEADER_UNKNOWN), or no failed row to retry (NO_FAILURES).",
        },
    ),
)
async def retry_job_failures(job_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """The failed rows of a finished import become the upload of a new import job: the
    same collection and options, the rows in their order (see
    :mod:`batchops.server.imports.retry`)."""
    job = await retry_failures(svc, caller.tenant, job_id)
    return JSONResponse(job_body(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _fields(options: ImportOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in ImportOptions.__slots__}
