"""``GET /v1/jobs/{id}/events``: the job's progress as Server-Sent Events.

Events are *snapshots*, not a log: each carries the whole job (the shape of
``GET /v1/jobs/{id}``) and ``id`` = the job's ``revision``, which grows with every committed
change. ``progress`` while the job is queued or running, then ONE final ``complete``
(succeeded or cancelled) or ``error`` (failed), after which the stream ends. A client that
reconnects with ``Last-Event-ID: n`` gets only events with ids above ``n``: the current
snapshot if the job moved on, intermediate snapshots coalesced into it (progress is a
state, not a sequence of deltas to replay).

Served with ``sse-starlette`` (keep-alive pings, disconnect detection, and it ends open
streams when the server shuts down instead of holding up a graceful stop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchops.server.deps import Services
from batchops.server.jobs.schemas import TERMINAL_STATES, job_body

__all__ = ["event_kind", "job_events"]


def event_kind(state: str) -> str:
    """``progress``, ``complete`` or ``error`` for a job state."""
    if state == "failed":
        return "error"
    if state in TERMINAL_STATES:
        return "complete"
    return "progress"


async def job_events(
    svc: Services, tenant: str, job_id: str, last_event_id: int, *, poll_s: float = 1.0
) -> AsyncIterator[dict[str, Any]]:
    """The events after ``last_event_id``, until the job ends (or disappears)."""
    last = last_event_id
    while True:
        job = await svc.store.run(lambda tx: tx.get_job(job_id, tenant=tenant))
        if job is None:
            return
        if job.revision > last:
            last = job.revision
            yield {
                "id": str(job.revision),
                "event": event_kind(job.state),
                "data": orjson.dumps(job_body(job)).decode(),
            }
        if job.state in TERMINAL_STATES:
            return
        if svc.jobs is not None:
            await svc.jobs.events.wait(poll_s)
        else:
            import asyncio

            await asyncio.sleep(poll_s)
