"""The wire shape of a job (``GET /v1/jobs/{id}``, its events, the 202 that queued it),
its states and the chunk-size bounds every job kind shares."""

from __future__ import annotations

import base64
import binascii
import re
import time
from datetime import datetime
from typing import Any

import orjson

from batchops._exceptions import InvalidRequestError, NotFoundError, ValidationError
from batchops.server._ids import is_id
from batchops.store.base import JobRow

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "JOB_STATES",
    "JOB_TYPES",
    "MAX_CHUNK_SIZE",
    "TERMINAL_STATES",
    "decode_job_cursor",
    "encode_job_cursor",
    "job_body",
    "job_not_found",
    "validate_job_filters",
]

DEFAULT_CHUNK_SIZE = 1000
MAX_CHUNK_SIZE = 10_000
# The kinds the API names (filters, the OpenAPI document). Each is run by the handler its
# package registers (see batchops.server.jobs.runner.JobKinds); a test checks that the app
# registers exactly these.
JOB_TYPES = ("import", "bulk_update", "bulk_delete", "batch")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
# A job's created_at as rows carry it (batchops.server._ids.now_iso).
_CREATED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


def _epoch(iso: str | None) -> float | None:
    if iso is None:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def job_body(job: JobRow, *, now: float | None = None) -> dict[str, Any]:
    """The job as the API shows it (GET /v1/jobs/{id}, events, the 202 of an import)."""
    total = job.total
    if total:
        percentage = round(100.0 * job.processed / total, 1)
    else:
        percentage = 100.0 if job.state == "succeeded" else 0.0
    eta_s: float | None = None
    started = _epoch(job.started_at)
    if job.state == "running" and total and job.processed and started is not None:
        elapsed = max((now if now is not None else time.time()) - started, 0.0)
        eta_s = round(elapsed / job.processed * (total - job.processed), 1)
    elif job.state in TERMINAL_STATES:
        eta_s = 0.0
    return {
        "id": job.id,
        "type": job.type,
        "state": job.state,
        "collection": job.collection,
        "total": total,
        "processed": job.processed,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "percentage": percentage,
        "eta_s": eta_s,
        "checkpoint": job.checkpoint,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": job.error,
        "options": job.options,
        "links": {
            "self": f"/v1/jobs/{job.id}",
            "events": f"/v1/jobs/{job.id}/events",
            "failures": f"/v1/jobs/{job.id}/failures",
            **({"results": f"/v1/jobs/{job.id}/results"} if job.type != "import" else {}),
        },
    }


def job_not_found(job_id: str) -> NotFoundError:
    """404 for a job that does not exist or belongs to another tenant."""
    return NotFoundError(f"no job {job_id!r}", code="JOB_NOT_FOUND", details={"id": job_id})


def validate_job_filters(state: Any, type: Any) -> None:
    """A jobs list's ``state`` and ``type`` filters (None: any): one of :data:`JOB_STATES`
    and :data:`JOB_TYPES`, else a 422 naming the filter."""
    if state is not None and state not in JOB_STATES:
        raise ValidationError(
            f"'state' must be one of {', '.join(JOB_STATES)}", details={"path": "state"}
        )
    if type is not None and type not in JOB_TYPES:
        raise ValidationError(
            f"'type' must be one of {', '.join(JOB_TYPES)}", details={"path": "type"}
        )


def encode_job_cursor(last: JobRow) -> str:
    """An opaque cursor for the page of jobs after ``last`` (newest first: created before
    it, or at the same time with a smaller id)."""
    raw = orjson.dumps([last.created_at, last.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_job_cursor(cursor: str | None, *, path: str = "cursor") -> tuple[str, str] | None:
    """The (created_at, id) a cursor of :func:`encode_job_cursor` points after; None for
    no cursor; a 400 naming ``path`` for anything this API did not hand out."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, job_id = orjson.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
    except (binascii.Error, ValueError, TypeError):
        created_at = job_id = None
    # Only what encode_job_cursor can make: a forged position holding what a database
    # refuses (PostgreSQL: a NUL) would otherwise be the store's error, not this one.
    if (
        not isinstance(created_at, str)
        or not isinstance(job_id, str)
        or _CREATED_AT.fullmatch(created_at) is None
        or not is_id(job_id)
    ):
        raise InvalidRequestError(
            f"{path!r} is not a cursor returned by this API", details={"path": path}
        )
    return created_at, job_id
