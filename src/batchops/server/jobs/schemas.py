"""The wire shape of a job (``GET /v1/jobs/{id}``, its events, the 202 that queued it),
its states and the chunk-size bounds every job kind shares."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from batchops._exceptions import NotFoundError
from batchops.store.base import JobRow

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "JOB_STATES",
    "JOB_TYPES",
    "MAX_CHUNK_SIZE",
    "TERMINAL_STATES",
    "job_body",
    "job_not_found",
]

DEFAULT_CHUNK_SIZE = 1000
MAX_CHUNK_SIZE = 10_000
# The kinds the API names (filters, the OpenAPI document). Each is run by the handler its
# package registers (see batchops.server.jobs.runner.JobKinds); a test checks that the app
# registers exactly these.
JOB_TYPES = ("import", "bulk_update", "bulk_delete", "batch")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


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
