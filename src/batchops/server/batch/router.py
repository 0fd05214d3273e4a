"""``POST /v1/batch``: the lean route in front of the planner and the executor.

The route does only what HTTP needs — auth, content type, the byte limit, idempotency,
status and headers — and hands the body to :func:`plan_batch` (msgspec) and the executor
(one store transaction). See docs/batch.md for the wire contract.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, request_response
from starlette.types import Message, Receive, Scope, Send

from batchops._exceptions import (
    APIError,
    BatchTooLargeError,
    ConflictError,
    InvalidRequestError,
    PayloadTooLargeError,
    ValidationError,
)
from batchops.server.auth import Caller
from batchops.server.batch.creates import (
    CreatePlan,
    LaneBail,
    plan_creates,
    render_creates,
    run_creates,
)
from batchops.server.batch.executor import (
    AtomicBatchFailed,
    OpOutcome,
    RunState,
    atomic_failure_outcomes,
    options_deadline,
    run_plan,
    validate_plan,
)
from batchops.server.batch.model import BatchPlan, PlannedOp
from batchops.server.batch.planner import plan_batch
from batchops.server.batch.response import batch_payload, batch_status
from batchops.server.deps import Services, authenticated
from batchops.server.http import read_body, require_json
from batchops.server.jobs import batches
from batchops.server.jobs.webhooks import NOTIFICATION_WEBHOOK_SCHEMA
from batchops.server.records.operations import NewRecords
from batchops.store.base import Tx

__all__ = ["OPENAPI_PATHS", "BatchFastPath", "post_batch", "routes"]


# Non-atomic NDJSON streams commit this many operations per transaction, so each line
# sent is already durable.
STREAM_SLICE = 50

_BATCH_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["operations"],
                    "properties": {
                        "operations": {"type": "array", "items": {"type": "object"}},
                        "options": {"type": "object"},
                        "notification_webhook": {
                            **NOTIFICATION_WEBHOOK_SCHEMA,
                            "description": "Only with 'Prefer: respond-async': called when "
                            "the batch job ends (see docs/jobs.md#webhooks).",
                        },
                    },
                },
                "example": {
                    "operations": [
                        {
                            "id": "a",
                            "method": "POST",
                            "path": "/v1/collections/people/records",
                            "body": {"data": {"name": "Ada"}},
                        },
                        {"type": "read", "collection": "people", "id": "${a.body.id}"},
                    ],
                    "options": {"atomic": False},
                },
            }
        },
    }
}


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/batch": {
        "post": {
            "tags": ["batch"],
            "summary": "Run many operations in one request",
            "description": "See docs/batch.md: both dialects, references, atomicity, "
            "idempotency, NDJSON streaming.",
            "operationId": "post_batch",
            **_BATCH_DOC,
            "responses": {
                "200": {"description": "Every operation succeeded"},
                "207": {"description": "Some operations failed, the others committed"},
                "400": {"description": "INVALID_BATCH_REQUEST: nothing ran"},
                "413": {"description": "BATCH_TOO_LARGE"},
            },
        }
    }
}
"""How ``/v1/batch`` appears in the OpenAPI document (the route itself is a plain
Starlette route, see :data:`routes`)."""


async def post_batch(request: Request) -> Response:
    """``POST /v1/batch``.

    A plain Starlette endpoint rather than a FastAPI route: FastAPI's request handling and
    dependency solving measured ~15-20% of the server's CPU under a batch load (py-spy),
    and this is the route the whole service exists for. It calls the same authentication
    dependency the other routes use.
    """
    svc: Services = request.app.state.services
    caller = await authenticated(request, svc)
    started = time.perf_counter()
    batch_id = _batch_id(request)
    require_json(request)
    try:
        body = await read_body(request, max_bytes=svc.settings.max_batch_bytes, what="batch")
    except PayloadTooLargeError as exc:
        raise BatchTooLargeError(exc.message, details=exc.details) from exc
    run_async = batches.prefers_async(request.headers.get("prefer"))
    streaming = "application/x-ndjson" in request.headers.get("accept", "")
    max_operations = svc.settings.max_batch_operations
    # The all-creates lane answers plain-create batches byte for byte like the general
    # path, at a fraction of the CPU (see creates.py); anything else is planned here.
    lane = None if run_async or streaming else plan_creates(body, max_operations=max_operations)
    plan = plan_batch(body, max_operations=max_operations) if lane is None else None
    # Checked before the key is claimed and anything is written; a body without the member
    # (the common case) pays one attribute test.
    hook = (
        await batches.notification_webhook(svc, plan, run_async=run_async)
        if plan is not None and plan.notification_webhook is not None
        else None
    )
    headers = {"X-Batch-Id": batch_id}
    headers.update(getattr(request.state, "rate_headers", None) or {})
    n_ops = len(plan.ops) if plan is not None else lane.count if lane else 0
    headers.update(await svc.limiter.hit_operations(caller.key_id, n_ops))

    if plan is not None and plan.options.validate_only:
        outcomes = validate_plan(plan)
        payload = batch_payload(batch_id, plan, outcomes, started, committed=False)
        return _json(payload, 200 if payload["meta"]["failed"] == 0 else 207, headers)

    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None:
        replay = await _claim(svc, caller, idempotency_key, body)
        if replay is not None:
            return await batches.refresh_replay(svc, caller, replay)
    try:
        if lane is not None:
            status, data = await _execute_lane(
                svc, caller, lane, body, batch_id, started, idempotency_key
            )
        else:
            assert plan is not None
            if run_async:
                return await batches.submit_batch(
                    svc, caller, body, plan, batch_id, idempotency_key, headers, hook
                )
            if streaming:
                return StreamingResponse(
                    _stream(svc, caller, plan, batch_id, started, idempotency_key),
                    media_type="application/x-ndjson",
                    headers=headers,
                )
            status, data = await _execute(svc, caller, plan, batch_id, started, idempotency_key)
    except BaseException:
        if idempotency_key is not None:
            await svc.store.run(lambda tx: tx.idempotency_release(caller.tenant, idempotency_key))
        raise
    return Response(data, status_code=status, media_type="application/json", headers=headers)


routes = [Route("/v1/batch", post_batch, methods=["POST"])]
"""Mounted by ``create_app`` before the FastAPI routes: what a POST reaches when it does not
come through :class:`BatchFastPath` (other methods get their 405 there)."""


class BatchFastPath:
    """``POST /v1/batch`` answered ahead of every FastAPI and Starlette layer.

    The app (``create_app``) asks :meth:`matches` before anything else and hands a batch
    straight to :func:`post_batch`. Why: under a batch load, matching the path against every
    FastAPI route and passing through the middleware stack (FastAPI's and Starlette's
    ``__call__``, server-error, telemetry and body-limit layers) measured ~10% of the
    server's GIL time (py-spy), for a route that needs none of it.

    What those layers did for this route is done here: errors are rendered by the app's
    own exception handlers (the lookup Starlette's ExceptionMiddleware does), and anything
    unhandled still answers the 500 envelope, then propagates so the server logs it (what
    ServerErrorMiddleware does).
    """

    def __init__(self, handlers: Mapping[Any, Any]) -> None:
        self.endpoint = request_response(post_batch)
        self.handlers = handlers
        self._split: tuple[dict[Any, Any], dict[Any, Any]] | None = None

    @staticmethod
    def matches(scope: Scope) -> bool:
        """Whether ``scope`` is a ``POST /v1/batch`` request."""
        return bool(
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == scope.get("root_path", "") + "/v1/batch"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._split is None:  # at the first batch: every handler is installed by then
            handlers = self.handlers
            self._split = (
                {
                    k: v
                    for k, v in handlers.items()
                    if not isinstance(k, int) and k is not Exception
                },
                {k: v for k, v in handlers.items() if isinstance(k, int) and k != 500},
            )
        scope["starlette.exception_handlers"] = self._split
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.endpoint(scope, receive, tracked_send)
        except Exception as exc:
            if not started:
                handler = self.handlers.get(Exception) or self.handlers.get(500)
                assert handler is not None, "create_app installs a handler for Exception"
                response = await handler(Request(scope), exc)
                await response(scope, receive, send)
            raise


def _batch_id(request: Request) -> str:
    given = request.headers.get("x-batch-id")
    if given is None:
        return secrets.token_hex(16)  # as unique as uuid4().hex, without a UUID object
    if not 1 <= len(given) <= 128 or not given.isprintable():
        raise InvalidRequestError(
            "X-Batch-Id must be 1-128 printable characters", details={"path": "headers.X-Batch-Id"}
        )
    return given


async def _claim(svc: Services, caller: Caller, key: str, body: bytes) -> Response | None:
    """Claim ``key`` for this request, or answer from what the key already holds."""
    if not 1 <= len(key) <= 255:
        raise InvalidRequestError(
            "Idempotency-Key must be 1-255 characters", details={"path": "headers.Idempotency-Key"}
        )
    fingerprint = hashlib.sha256(body).hexdigest()
    existing = await svc.store.run(
        lambda tx: tx.idempotency_claim(
            caller.tenant,
            key,
            fingerprint,
            now=time.time(),
            stale_after_s=svc.settings.idempotency_stale_after_s,
        )
    )
    if existing is None:
        return None
    if existing.fingerprint != fingerprint:
        raise ValidationError(
            "this Idempotency-Key was used with a different request body",
            code="IDEMPOTENCY_KEY_REUSED",
            details={"idempotency_key": key},
        )
    if existing.state != "done" or existing.response is None:
        raise ConflictError(
            "a request with this Idempotency-Key is still in flight; retry later",
            code="IDEMPOTENCY_IN_FLIGHT",
            details={"idempotency_key": key},
            retry_after=1.0,
        )
    return Response(
        existing.response,
        status_code=existing.status_code or 200,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def _json(payload: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


async def _execute_lane(
    svc: Services,
    caller: Caller,
    lane: CreatePlan,
    body: bytes,
    batch_id: str,
    started: float,
    idempotency_key: str | None,
) -> tuple[int, bytes]:
    """Run an all-creates batch; if the lane bails (its transaction rolled back), run the
    same body on the general path with the same deadline."""
    deadline = options_deadline(lane.options, svc.settings.batch_timeout_ms)

    def run(tx: Tx) -> tuple[list[NewRecords], bytes | None]:
        groups = run_creates(tx, caller.tenant, lane, deadline=deadline)
        if idempotency_key is None:
            return groups, None
        # The stored response commits with the records it describes.
        data = render_creates(batch_id, lane, groups, (time.perf_counter() - started) * 1000)
        tx.idempotency_finish(caller.tenant, idempotency_key, 200, data)
        return groups, data

    try:
        groups, data = await svc.store.run(run, retries=lane.options.max_retries)
    except LaneBail:
        plan = plan_batch(body, max_operations=svc.settings.max_batch_operations)
        return await _execute(
            svc, caller, plan, batch_id, started, idempotency_key, deadline=deadline
        )
    if data is None:
        # Rendered after the hop: the database thread is the serial section.
        data = render_creates(batch_id, lane, groups, (time.perf_counter() - started) * 1000)
    return 200, data


async def _execute(
    svc: Services,
    caller: Caller,
    plan: BatchPlan,
    batch_id: str,
    started: float,
    idempotency_key: str | None,
    *,
    deadline: float | None = None,
) -> tuple[int, bytes]:
    if deadline is None:
        deadline = options_deadline(plan.options, svc.settings.batch_timeout_ms)
    answer: dict[str, Any] = {}

    def finish(tx: Tx, outcomes: list[OpOutcome]) -> None:
        # With an Idempotency-Key the response is built inside the transaction, so the
        # stored response commits with the data it describes.
        status = batch_status(outcomes)
        data = orjson.dumps(batch_payload(batch_id, plan, outcomes, started, committed=True))
        answer["status"], answer["data"] = status, data
        assert idempotency_key is not None
        tx.idempotency_finish(caller.tenant, idempotency_key, status, data)

    try:
        # Without one, the response is built after the hop: the database thread is the
        # serial section of a batch, so it does only the database work.
        outcomes = await svc.store.run(
            lambda tx: run_plan(
                tx,
                caller.tenant,
                plan,
                deadline=deadline,
                finish=finish if idempotency_key is not None else None,
            ),
            retries=plan.options.max_retries,
        )
    except AtomicBatchFailed as failed:
        outcomes = atomic_failure_outcomes(plan, failed)
        status = failed.error.status_code
        data = orjson.dumps(batch_payload(batch_id, plan, outcomes, started, committed=False))
        if idempotency_key is not None:
            key = idempotency_key
            await svc.store.run(lambda tx: tx.idempotency_finish(caller.tenant, key, status, data))
        return status, data
    if idempotency_key is None:
        payload = batch_payload(batch_id, plan, outcomes, started, committed=True)
        return batch_status(outcomes), orjson.dumps(payload)
    return answer["status"], answer["data"]


async def _stream(
    svc: Services,
    caller: Caller,
    plan: BatchPlan,
    batch_id: str,
    started: float,
    idempotency_key: str | None,
) -> AsyncIterator[bytes]:
    """One JSON line per operation as its slice commits, then ``{"meta": …}``.

    Atomic batches and batches with atomicity groups need the whole batch in one
    transaction, so their lines come after that one commit."""
    needs_one_tx = plan.options.atomic or any(
        isinstance(op, PlannedOp) and op.atomicity_group for op in plan.ops
    )
    try:
        if needs_one_tx:
            status, data = await _execute(svc, caller, plan, batch_id, started, idempotency_key)
            payload = orjson.loads(data)
            for result in payload["results"]:
                yield orjson.dumps(result) + b"\n"
            yield orjson.dumps(_meta_line(payload, status)) + b"\n"
            return
        deadline = options_deadline(plan.options, svc.settings.batch_timeout_ms)
        state = RunState(plan, caller.tenant, deadline)
        n = len(plan.ops)
        for start in range(0, n, STREAM_SLICE):
            stop = min(n, start + STREAM_SLICE)
            saved = state.snapshot()

            def run_slice(
                tx: Tx,
                start: int = start,
                stop: int = stop,
                saved: tuple[Any, Any, bool] = saved,
            ) -> None:
                state.restore(saved)
                state.run_range(tx, start, stop)

            await svc.store.run(run_slice, retries=plan.options.max_retries)
            for outcome in state.outcomes[start:stop]:
                if outcome is None or (
                    plan.options.suppress_success and outcome.counted == "succeeded"
                ):
                    continue
                yield orjson.dumps(outcome.to_wire()) + b"\n"
        outcomes = state.finished()
        status = batch_status(outcomes)
        payload = batch_payload(batch_id, plan, outcomes, started, committed=True)
        if idempotency_key is not None:
            key, data = idempotency_key, orjson.dumps(payload)
            await svc.store.run(lambda tx: tx.idempotency_finish(caller.tenant, key, status, data))
        yield orjson.dumps(_meta_line(payload, status)) + b"\n"
    except APIError as exc:
        yield orjson.dumps(exc.to_envelope()) + b"\n"


def _meta_line(payload: dict[str, Any], status: int) -> dict[str, Any]:
    return {
        "batch_id": payload["batch_id"],
        "committed": payload["committed"],
        "status": status,
        "meta": payload["meta"],
    }
