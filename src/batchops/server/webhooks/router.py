"""HTTP routes of webhooks: ``/v1/webhooks…`` (a tenant's subscriptions) and
``GET /v1/jobs/{id}/deliveries`` (see docs/jobs.md, "Webhooks").

Every route is scoped to the caller's tenant: another tenant's webhook id is a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from batchops._exceptions import NotFoundError
from batchops.server import _ids
from batchops.server._ids import is_id
from batchops.server.deps import CallerDep, ServicesDep
from batchops.server.http import JSONResponse, parse_json, read_body, require_json
from batchops.server.jobs.router import tenant_job
from batchops.server.limits import MAX_PAGE_SIZE, parse_limit_param, validate_limit
from batchops.server.openapi_routes import (
    AUTH,
    BODY,
    LIMIT_PARAM,
    LOCATION,
    STORE,
    json_answer,
    json_body,
    param,
    ref,
    responses,
)
from batchops.server.webhooks.schemas import delivery_body, parse_webhook_spec, webhook_body
from batchops.server.webhooks.signing import new_secret
from batchops.server.webhooks.targets import check_target
from batchops.store.base import Tx, WebhookRow

__all__ = ["read_deliveries", "router"]

router = APIRouter(tags=["webhooks"])

_MAX_BODY_BYTES = 16 * 1024
_ALWAYS = (*AUTH, *STORE)
_NO_WEBHOOK = {404: "No webhook with this id for this tenant (WEBHOOK_NOT_FOUND)."}
_WEBHOOK_PATH = {"parameters": [param("webhook_id")]}
_DELIVERIES = responses(
    {200: json_answer(ref("DeliveryList"), "Newest first, each with its attempts.")},
    (*_ALWAYS, 404, 422),
    notes={
        422: f"A limit that is not an integer from 1 to {MAX_PAGE_SIZE} (VALIDATION_ERROR, "
        "details.path limit)."
    },
)


def _known(webhook_id: str) -> None:
    """404 for an id no webhook can have (it never reaches the store)."""
    if not is_id(webhook_id):
        raise _not_found(webhook_id)


def _not_found(webhook_id: str) -> NotFoundError:
    return NotFoundError(
        f"no webhook {webhook_id!r}", code="WEBHOOK_NOT_FOUND", details={"id": webhook_id}
    )


def _limit(limit: str | None) -> int:
    """A deliveries page size, by the rule of every list (1-1000, default 100)."""
    return validate_limit(None if limit is None else parse_limit_param(limit))


@router.post(
    "/v1/webhooks",
    status_code=201,
    summary="Subscribe a URL to the tenant's job events",
    openapi_extra=json_body(ref("WebhookCreate")),
    responses=responses(
        {
            201: json_answer(
                ref("Webhook"), "The subscription, with its secret (only now).", LOCATION
            )
        },
        (*_ALWAYS, *BODY, 422),
        notes={
            413: f"The body is larger than {_MAX_BODY_BYTES} bytes (PAYLOAD_TOO_LARGE).",
            422: "A bad field (details.path names it), or a target that is not allowed "
            "(WEBHOOK_TARGET_NOT_ALLOWED) or does not resolve (WEBHOOK_TARGET_UNRESOLVABLE).",
        },
    ),
)
async def create_webhook(request: Request, caller: CallerDep, svc: ServicesDep) -> Response:
    """Body ``{url, events?, secret?}``. Without a secret one is generated; the answer is
    the only time the secret is shown. 422 for a target on a non-public address unless the
    server allows private webhooks."""
    require_json(request)
    raw = parse_json(await read_body(request, max_bytes=_MAX_BODY_BYTES))
    spec = parse_webhook_spec(raw, path="", secret_required=False)
    await check_target(spec.url, allow_private=svc.settings.allow_private_webhooks)
    row = WebhookRow(
        id=_ids.new_record_id(),
        tenant=caller.tenant,
        url=spec.url,
        events=spec.events,
        secret=spec.secret or new_secret(),
        created_at=_ids.now_iso(),
    )
    await svc.store.run(lambda tx: tx.insert_webhook(row), retries=3)
    return JSONResponse(
        webhook_body(row, with_secret=True),
        status_code=201,
        headers={"Location": f"/v1/webhooks/{row.id}"},
    )


@router.get(
    "/v1/webhooks",
    summary="The tenant's webhook subscriptions",
    responses=responses({200: json_answer(ref("WebhookList"), "Oldest first.")}, _ALWAYS),
)
async def list_webhooks(caller: CallerDep, svc: ServicesDep) -> Response:
    """Oldest first; secrets are never shown again."""
    rows = await svc.store.run(lambda tx: tx.list_webhooks(caller.tenant))
    return JSONResponse({"webhooks": [webhook_body(row) for row in rows]})


@router.get(
    "/v1/webhooks/{webhook_id}",
    summary="One webhook subscription",
    openapi_extra=_WEBHOOK_PATH,
    responses=responses(
        {200: json_answer(ref("Webhook"), "The subscription (without its secret).")},
        (*_ALWAYS, 404),
        notes=_NO_WEBHOOK,
    ),
)
async def get_webhook(webhook_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """The subscription (without its secret)."""
    _known(webhook_id)
    row = await svc.store.run(lambda tx: tx.get_webhook(caller.tenant, webhook_id))
    if row is None:
        raise _not_found(webhook_id)
    return JSONResponse(webhook_body(row))


@router.delete(
    "/v1/webhooks/{webhook_id}",
    status_code=204,
    summary="Unsubscribe",
    openapi_extra=_WEBHOOK_PATH,
    responses=responses(
        {204: {"description": "Unsubscribed; its pending deliveries are cancelled."}},
        (*_ALWAYS, 404),
        notes=_NO_WEBHOOK,
    ),
)
async def delete_webhook(webhook_id: str, caller: CallerDep, svc: ServicesDep) -> Response:
    """Its pending deliveries are cancelled; past deliveries stay visible on their jobs."""
    _known(webhook_id)
    deleted = await svc.store.run(
        lambda tx: tx.delete_webhook(caller.tenant, webhook_id), retries=3
    )
    if not deleted:
        raise _not_found(webhook_id)
    return Response(status_code=204)


def read_deliveries(tenant: str, *, webhook_id: str | None, job_id: str | None, limit: int) -> Any:
    """A unit of work that reads the tenant's deliveries (of one webhook and/or job), newest
    first, each with its attempts, as the API shows them (the console shows them too)."""

    def fn(tx: Tx) -> list[dict[str, Any]]:
        rows = tx.list_webhook_deliveries(tenant, webhook_id=webhook_id, job_id=job_id, limit=limit)
        attempts = tx.list_webhook_attempts([r.id for r in rows])
        return [delivery_body(r, [a for a in attempts if a.delivery_id == r.id]) for r in rows]

    return fn


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries",
    summary="A subscription's deliveries and every attempt at them",
    openapi_extra={"parameters": [param("webhook_id"), LIMIT_PARAM]},
    responses={**_DELIVERIES, 404: _DELIVERIES[404] | {"description": _NO_WEBHOOK[404]}},
)
async def webhook_deliveries(
    webhook_id: str, caller: CallerDep, svc: ServicesDep, limit: str | None = None
) -> Response:
    """Newest first, each with its attempts (status code or error, duration, next retry)."""
    size = _limit(limit)
    _known(webhook_id)
    if await svc.store.run(lambda tx: tx.get_webhook(caller.tenant, webhook_id)) is None:
        raise _not_found(webhook_id)
    fn = read_deliveries(caller.tenant, webhook_id=webhook_id, job_id=None, limit=size)
    return JSONResponse({"deliveries": await svc.store.run(fn)})


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    summary="A job's webhook deliveries and every attempt at them",
    openapi_extra={"parameters": [param("job_id"), LIMIT_PARAM]},
    responses={
        **_DELIVERIES,
        404: _DELIVERIES[404] | {"description": "No job with this id (JOB_NOT_FOUND)."},
    },
)
async def job_deliveries(
    job_id: str, caller: CallerDep, svc: ServicesDep, limit: str | None = None
) -> Response:
    """Deliveries to the job's own webhook and to the tenant's subscriptions."""
    size = _limit(limit)
    await tenant_job(svc, caller.tenant, job_id)
    fn = read_deliveries(caller.tenant, webhook_id=None, job_id=job_id, limit=size)
    return JSONResponse({"deliveries": await svc.store.run(fn)})
