"""The outbox: a job's end queues its webhook deliveries in the job's own transaction.

:func:`enqueue_job_event` runs INSIDE the transaction that moves a job to a terminal state
(the app registers it as an end hook of the job scheduler, see
:class:`batchops.server.jobs.runner.JobKinds`) and inserts one delivery row per interested
webhook: the event commits with the job's state or not at all, and survives any crash
after. :mod:`batchops.server.webhooks.delivery` sends the pending deliveries, with retries.
"""

from __future__ import annotations

from typing import Any

import orjson

from batchops.server import _ids
from batchops.server.webhooks.schemas import EVENTS
from batchops.store.base import JobRow, Tx, WebhookDeliveryRow

__all__ = ["enqueue_job_event"]


def _job_summary(job: JobRow) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.type,
        "state": job.state,
        "collection": job.collection,
        "total": job.total,
        "processed": job.processed,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": job.error,
        "links": {"self": f"/v1/jobs/{job.id}", "failures": f"/v1/jobs/{job.id}/failures"},
    }


def enqueue_job_event(tx: Tx, job: JobRow) -> None:
    """Queue ``job.<state>`` for every webhook that wants it. Call it in the transaction
    that saves the job in its terminal state (and only then): that is what makes the
    notice exactly as durable as the state change."""
    event = f"job.{job.state}"
    if event not in EVENTS:
        return
    hooks = [h for h in tx.webhooks_for_job(job.tenant, job.id) if event in h.events]
    if not hooks:
        return
    created = _ids.now_iso()
    now = tx.database_now()  # due at once, by the clock every sender compares with
    rows = []
    for delivery_id, hook in zip(_ids.new_record_ids(len(hooks)), hooks, strict=True):
        payload = {
            "delivery_id": delivery_id,
            "webhook_id": hook.id,
            "event": event,
            "created_at": created,
            "job": _job_summary(job),
        }
        rows.append(
            WebhookDeliveryRow(
                id=delivery_id,
                tenant=job.tenant,
                webhook_id=hook.id,
                job_id=job.id,
                event=event,
                url=hook.url,
                payload=orjson.dumps(payload).decode(),
                state="pending",
                created_at=created,
                next_attempt_at=now,
            )
        )
    tx.insert_webhook_deliveries(rows)
