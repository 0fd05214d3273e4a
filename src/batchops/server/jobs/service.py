"""What the jobs' routes do, as functions over the services, so that every front end
(``/v1/jobs…``, the browser console at ``/console``) does it through ONE copy: cancelling a
job and streaming its failures. Each is scoped to the caller's tenant by the caller.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Final

import orjson

from batchops._exceptions import ConflictError, ValidationError
from batchops.server import _ids
from batchops.server._ids import is_id
from batchops.server.deps import Services
from batchops.server.jobs.runner import JobKinds
from batchops.server.jobs.schemas import (
    TERMINAL_STATES,
    decode_job_cursor,
    encode_job_cursor,
    job_not_found,
    validate_job_filters,
)
from batchops.server.limits import parse_limit_param, validate_limit
from batchops.server.observability.logs import job_event
from batchops.store.base import JobFailureRow, JobRow, Tx

__all__ = [
    "FAILURE_FORMATS",
    "cancel_job",
    "check_failure_format",
    "failure_lines",
    "jobs_page",
]

FAILURE_FORMATS: Final = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
"""The formats a job's failures download in, and the media type of each."""


async def cancel_job(svc: Services, kinds: JobKinds, tenant: str, job_id: str) -> JobRow:
    """Cancel the tenant's job: a queued job is cancelled at once, a running one stops
    before its next chunk (chunks already committed stay). 404 ``JOB_NOT_FOUND`` for no
    such job of the tenant, 409 ``JOB_FINISHED`` if it has ended. Returns the job."""
    if not is_id(job_id):
        raise job_not_found(job_id)

    def cancel(tx: Tx) -> JobRow:
        job = tx.get_job(job_id, tenant=tenant, for_update=True)
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
    return job


async def jobs_page(
    svc: Services,
    tenant: str,
    *,
    state: str | None,
    type: str | None,
    limit: str | int | None,
    cursor: str | None,
    limit_path: str = "limit",
    cursor_path: str = "cursor",
) -> tuple[list[JobRow], str | None]:
    """A page of the tenant's jobs, newest first, filtered by ``state`` and ``type`` (422
    naming a bad one), after ``cursor`` (400 for one this API did not hand out): the page
    and the cursor of the next (None on the last page). Keyset paging on
    (created_at, id); a cursor names a position, not a query, so one from another filter
    set pages that list from the same point, never an error and never another tenant's job.
    ``limit``: the page size by the rule of every list, as ``?limit=`` text or a number (None:
    the default; :func:`~batchops.server.limits.validate_limit`). ``limit_path`` and
    ``cursor_path``: the names errors give them (GraphQL's ``first`` and ``after``)."""
    validate_job_filters(state, type)
    size = validate_limit(
        parse_limit_param(limit) if isinstance(limit, str) else limit, path=limit_path
    )
    position = decode_job_cursor(cursor, path=cursor_path)
    # One more than the page tells whether another page follows without a second query.
    rows = await svc.store.run(
        lambda tx: tx.list_jobs(tenant, state=state, type=type, limit=size + 1, after=position)
    )
    more = len(rows) > size
    rows = rows[:size]
    return rows, encode_job_cursor(rows[-1]) if more and rows else None


def check_failure_format(format: str) -> None:
    """422 unless ``format`` is one of :data:`FAILURE_FORMATS`."""
    if format not in FAILURE_FORMATS:
        raise ValidationError("'format' must be ndjson or csv", details={"path": "format"})


async def failure_lines(svc: Services, job_id: str, format: str) -> AsyncIterator[bytes]:
    """A job's failures in row order, a page of the store at a time: one JSON object
    ``{"row", "code", "message", "input"}`` per line, or CSV with the columns
    ``row,code,message,input``. The caller has checked the job is its tenant's and the
    format (:func:`check_failure_format`)."""
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
                    {"row": f.row_number, "code": f.code, "message": f.message, "input": f.input}
                )
                + b"\n"
                for f in page
            )
        after = page[-1].row_number
