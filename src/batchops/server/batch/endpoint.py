"""``POST /v1/batch``: the HTTP side of the batch service.

The endpoint does only what HTTP needs — auth, content type, the byte limit, the rate
limit, the Idempotency-Key claim, the choice of answer (JSON, an NDJSON stream, a job),
status and headers — and hands the body to :mod:`batchops.server.batch.service`, which
plans it once and runs it. See docs/batch.md for the wire contract.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, request_response
from starlette.types import Message, Receive, Scope, Send

from batchops._exceptions import BatchTooLargeError, InvalidRequestError, PayloadTooLargeError
from batchops.server.batch import job as batches
from batchops.server.batch import service
from batchops.server.batch.executor import options_deadline
from batchops.server.batch.idempotency import MAX_KEY_CHARS, Claim, claim_key
from batchops.server.batch.planner import plan_batch
from batchops.server.deps import Services, authenticated
from batchops.server.http import read_body, require_json
from batchops.server.openapi_routes import (
    AUTH,
    ERROR_STATUSES,
    JOB_LINKS,
    LOCATION,
    STORE,
    json_answer,
    param,
    ref,
    responses,
)

__all__ = ["OPENAPI_PATHS", "BatchFastPath", "post_batch", "request_batch_id", "routes"]

_PRINTABLE = "!-~\\u00a1-\\u00ac\\u00ae-\\u00ff"
"""Printable Latin-1 (HTTP header text) but the space, as a regex class body."""


def _printable(most: int) -> str:
    # 1-``most`` printable characters; no space at either end (HTTP trims header values).
    return f"^[{_PRINTABLE}](?:[ {_PRINTABLE}]{{0,{most - 2}}}[{_PRINTABLE}])?$"


# An atomic batch that fails answers its failing operation's status, with the batch
# response as the body (every other operation 424 ROLLED_BACK).
_ATOMIC = "An atomic batch whose failing operation answered this status: nothing committed."
_OR_ATOMIC = {"anyOf": [ref("ErrorEnvelope"), ref("BatchResponse")]}


def _atomic_too(status: int, why: str) -> dict[str, Any]:
    return json_answer(_OR_ATOMIC, f"{why} Or: {_ATOMIC}", _ERRORS[status].get("headers"))


_ERRORS = responses({}, (*AUTH, *STORE, 400, 404, 408, 409, 413, 415, 422))
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "true when this is the stored answer of an earlier request with the "
        "same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
_ANSWER_HEADERS = {
    "X-Batch-Id": {
        "description": "The batch's id: the request's X-Batch-Id, or one the server made "
        "(absent from a replayed answer, whose body names the first request's).",
        "schema": {"type": "string"},
    },
    **_REPLAYED,
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/batch": {
        "post": {
            "tags": ["batch"],
            "summary": "Run many operations in one request",
            "description": "See docs/batch.md: both dialects, references, atomicity, "
            "idempotency, NDJSON streaming (`Accept: application/x-ndjson`), async batches "
            "(`Prefer: respond-async`). Results come in input order; 207 when some "
            "operations failed and the others committed.",
            "operationId": "post_batch",
            "parameters": [
                param(
                    "Idempotency-Key",
                    **{"in": "header"},
                    description="A retry with the same key and body answers the stored "
                    "response instead of running again (the same key with another body is "
                    "422 IDEMPOTENCY_KEY_REUSED; one still running, 409 IDEMPOTENCY_IN_FLIGHT).",
                    schema={"type": "string", "pattern": _printable(MAX_KEY_CHARS)},
                ),
                param(
                    "X-Batch-Id",
                    **{"in": "header"},
                    description="Your id for the batch (echoed, and the answer's batch_id).",
                    schema={"type": "string", "pattern": _printable(128)},
                ),
                param(
                    "Prefer",
                    **{"in": "header"},
                    description="`respond-async`: answer 202 with a job at once instead of "
                    "running the batch while you wait (RFC 7240).",
                    schema={"type": "string"},
                ),
            ],
            "requestBody": {
                "required": True,
                "description": "Up to the server's byte limit (10 MiB by default; 413 "
                "BATCH_TOO_LARGE past it), gzip with Content-Encoding.",
                "content": {
                    "application/json": {
                        "schema": ref("BatchRequest"),
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
            },
            "responses": {
                "200": {
                    "description": "Every operation succeeded (or, streamed, whatever "
                    "happened: the last line carries the status).",
                    "headers": _ANSWER_HEADERS,
                    "content": {
                        "application/json": {"schema": ref("BatchResponse")},
                        "application/x-ndjson": {
                            "schema": {
                                "type": "string",
                                "description": "One BatchStreamLine per line.",
                            }
                        },
                    },
                },
                "202": json_answer(
                    ref("Job"),
                    "Prefer: respond-async: the batch job (its answer at /v1/jobs/{id}/results).",
                    {**LOCATION, **_REPLAYED},
                    JOB_LINKS,
                ),
                "207": json_answer(
                    ref("BatchResponse"),
                    "Some operations failed, the others committed: read each result's status.",
                    _ANSWER_HEADERS,
                ),
                **{str(code): answer for code, answer in _ERRORS.items()},
                "400": _atomic_too(
                    400,
                    "INVALID_BATCH_REQUEST: not a batch (details.path is the JSON path of "
                    "the fault), a reference or depends_on naming no earlier operation, "
                    "contradictory options; nothing ran.",
                ),
                "404": _atomic_too(
                    404, "A replayed async batch whose job is gone (JOB_NOT_FOUND)."
                ),
                "405": json_answer(ref("BatchResponse"), _ATOMIC),
                "409": _atomic_too(
                    409, "IDEMPOTENCY_IN_FLIGHT: a request with this key is running."
                ),
                "413": json_answer(
                    ref("ErrorEnvelope"),
                    "BATCH_TOO_LARGE: more operations or bytes than the server takes; "
                    "details {limit, actual, unit}.",
                ),
                "422": _atomic_too(
                    422,
                    "IDEMPOTENCY_KEY_REUSED, or a bad notification_webhook (details.path).",
                ),
                "504": _atomic_too(504, str(ERROR_STATUSES[504])),
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
    batch_id = request_batch_id(request)
    require_json(request)
    try:
        body = await read_body(request, max_bytes=svc.settings.max_batch_bytes, what="batch")
    except PayloadTooLargeError as exc:
        raise BatchTooLargeError(exc.message, details=exc.details) from exc
    run_async = batches.prefers_async(request.headers.get("prefer"))
    streaming = "application/x-ndjson" in request.headers.get("accept", "")
    settings = svc.settings
    max_operations = settings.max_batch_operations
    # A stream answers operation by operation, and an async batch is planned again by its
    # job: neither needs the runs of a batch of plain creates (see BatchPlan).
    plan = plan_batch(body, max_operations=max_operations, runs=not (run_async or streaming))
    # Checked before the key is claimed and anything is written; a body without the member
    # (the common case) pays one attribute test.
    hook = (
        await batches.notification_webhook(svc, plan, run_async=run_async)
        if plan.notification_webhook is not None
        else None
    )
    headers = {"X-Batch-Id": batch_id}
    charged = getattr(request.state, "rate_headers", None) or {}
    headers.update(await svc.limiter.hit_operations(caller.key_id, plan.count, charged))

    if plan.options.validate_only:
        checked = service.validated(batch_id, plan, started)
        return Response(
            checked.data, status_code=checked.status, media_type="application/json", headers=headers
        )

    claim: Claim | None = None
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None:
        claimed = await claim_key(
            svc.store,
            caller.tenant,
            idempotency_key,
            body,
            stale_after_s=settings.idempotency_stale_after_s,
            ndjson=streaming,
        )
        if not isinstance(claimed, Claim):
            return await batches.refresh_replay(svc, caller, claimed)
        claim = claimed
    guard = claim.hold if claim is not None else None
    keep = service.keeper(claim)
    try:
        if run_async:
            return await batches.submit_batch(
                svc, caller, body, plan, batch_id, claim, headers, hook
            )
        if streaming:
            # The stream settles or releases its claim itself, whenever it ends.
            lines = service.stream(
                svc.store,
                caller.tenant,
                plan,
                batch_id=batch_id,
                started=started,
                default_timeout_ms=settings.batch_timeout_ms,
                claim=claim,
            )
            claim = None
            return _ClosingStream(lines, media_type="application/x-ndjson", headers=headers)
        answer = await service.run_whole(
            svc.store,
            caller.tenant,
            plan,
            batch_id=batch_id,
            started=started,
            deadline=options_deadline(plan.options, settings.batch_timeout_ms),
            guard=guard,
            keep=keep,
        )
        if claim is not None:
            claim.settled = True  # the answer was kept with what it describes
    finally:
        if claim is not None:
            await claim.release(svc.store)  # nothing if the answer was kept
    return Response(
        answer.data, status_code=answer.status, media_type="application/json", headers=headers
    )


class _ClosingStream(StreamingResponse):
    """A streamed answer whose body generator is closed however the answer ends.

    When the client goes away, Starlette ends the response wherever its task is — often
    inside ``send``, with the generator suspended at a ``yield`` — and leaves the generator
    to the garbage collector, which may take any time to run its ``finally``. The batch
    stream's ``finally`` gives its Idempotency-Key up for a retry: that must happen now.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


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


def request_batch_id(request: Request) -> str:
    """The request's ``X-Batch-Id`` (1-128 printable characters, else 400), or a new id:
    what names a batch in its answer (``/v1/batch``, and the batches ``/graphql`` runs)."""
    given = request.headers.get("x-batch-id")
    if given is None:
        return secrets.token_hex(16)  # as unique as uuid4().hex, without a UUID object
    if not 1 <= len(given) <= 128 or not given.isprintable():
        raise InvalidRequestError(
            "X-Batch-Id must be 1-128 printable characters", details={"path": "headers.X-Batch-Id"}
        )
    return given
