"""``POST /v1/batch``: the lean route in front of the planner and the executor.

The route does only what HTTP needs — auth, content type, the byte limit, idempotency,
status and headers — and hands the body to :func:`plan_batch` (msgspec) and the executor
(one store transaction). See docs/batch.md for the wire contract.
"""

from __future__ import annotations

import contextlib
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
    InvalidRequestError,
    PayloadTooLargeError,
    StoreTimeoutError,
    api_error_from_envelope,
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
    lift_deadline,
    options_deadline,
    run_plan,
    timed_out_outcomes,
    validate_plan,
)
from batchops.server.batch.idempotency import (
    MAX_KEY_CHARS,
    Claim,
    claim_key,
    meta_line,
    ndjson_lines,
    release_soon,
)
from batchops.server.batch.model import BatchPlan, PlannedOp
from batchops.server.batch.planner import plan_batch
from batchops.server.batch.response import batch_payload, batch_status
from batchops.server.deps import Services, authenticated
from batchops.server.http import read_body, require_json
from batchops.server.jobs import batches
from batchops.server.openapi import (
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
from batchops.server.records.service import NewRecords
from batchops.store.base import Tx

__all__ = ["OPENAPI_PATHS", "BatchFastPath", "post_batch", "routes"]


# Non-atomic NDJSON streams commit this many operations per transaction, so each line
# sent is already durable.
STREAM_SLICE = 50

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

    claim: Claim | None = None
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None:
        claimed = await claim_key(
            svc.store,
            caller.tenant,
            idempotency_key,
            body,
            stale_after_s=svc.settings.idempotency_stale_after_s,
            ndjson=streaming,
        )
        if not isinstance(claimed, Claim):
            return await batches.refresh_replay(svc, caller, claimed)
        claim = claimed
    try:
        if lane is not None:
            status, data = await _execute_lane(svc, caller, lane, body, batch_id, started, claim)
        else:
            assert plan is not None
            if run_async:
                return await batches.submit_batch(
                    svc, caller, body, plan, batch_id, claim, headers, hook
                )
            if streaming:
                # The stream settles or releases its claim itself, whenever it ends.
                stream = _stream(svc, caller, plan, batch_id, started, claim)
                claim = None
                return _ClosingStream(stream, media_type="application/x-ndjson", headers=headers)
            status, data = await _execute(svc, caller, plan, batch_id, started, claim)
    finally:
        if claim is not None:
            await claim.release(svc.store)  # nothing if the answer was stored
    return Response(data, status_code=status, media_type="application/json", headers=headers)


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


def _batch_id(request: Request) -> str:
    given = request.headers.get("x-batch-id")
    if given is None:
        return secrets.token_hex(16)  # as unique as uuid4().hex, without a UUID object
    if not 1 <= len(given) <= 128 or not given.isprintable():
        raise InvalidRequestError(
            "X-Batch-Id must be 1-128 printable characters", details={"path": "headers.X-Batch-Id"}
        )
    return given


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
    claim: Claim | None,
) -> tuple[int, bytes]:
    """Run an all-creates batch; if the lane bails (its transaction rolled back), run the
    same body on the general path with the same deadline."""
    deadline = options_deadline(lane.options, svc.settings.batch_timeout_ms)

    def run(tx: Tx) -> tuple[list[NewRecords], bytes | None]:
        if claim is None:
            return run_creates(tx, caller.tenant, lane, deadline=deadline), None
        claim.hold(tx)
        groups = run_creates(tx, caller.tenant, lane, deadline=deadline)
        # The stored response commits with the records it describes.
        data = render_creates(batch_id, lane, groups, (time.perf_counter() - started) * 1000)
        claim.finish(tx, 200, data)
        return groups, data

    try:
        groups, data = await svc.store.run(run, retries=lane.options.max_retries)
    except LaneBail:
        plan = plan_batch(body, max_operations=svc.settings.max_batch_operations)
        return await _execute(svc, caller, plan, batch_id, started, claim, deadline=deadline)
    if claim is not None:
        claim.settled = True
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
    claim: Claim | None,
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
        assert claim is not None
        claim.finish(tx, status, data)

    def run(tx: Tx) -> list[OpOutcome]:
        if claim is not None:
            claim.hold(tx)
        return run_plan(
            tx,
            caller.tenant,
            plan,
            deadline=deadline,
            finish=finish if claim is not None else None,
        )

    try:
        # Without a key, the response is built after the hop: the database thread is the
        # serial section of a batch, so it does only the database work.
        outcomes = await svc.store.run(run, retries=plan.options.max_retries)
    except (AtomicBatchFailed, StoreTimeoutError) as failed:
        if isinstance(failed, StoreTimeoutError):
            if not failed.unit_lost:
                raise
            # Nothing committed and nothing to blame on one operation: every one of them
            # answers its TIMEOUT, as those the deadline left unstarted do.
            outcomes = timed_out_outcomes(plan)
            status = batch_status(outcomes)
        else:
            outcomes = atomic_failure_outcomes(plan, failed)
            status = failed.error.status_code
        data = orjson.dumps(batch_payload(batch_id, plan, outcomes, started, committed=False))
        if claim is not None:
            settle = claim

            def store_failure(tx: Tx) -> None:
                settle.hold(tx)
                settle.finish(tx, status, data)

            await svc.store.run(store_failure, retries=3)
            claim.settled = True
        return status, data
    if claim is None:
        payload = batch_payload(batch_id, plan, outcomes, started, committed=True)
        return batch_status(outcomes), orjson.dumps(payload)
    claim.settled = True
    return answer["status"], answer["data"]


async def _stream(
    svc: Services,
    caller: Caller,
    plan: BatchPlan,
    batch_id: str,
    started: float,
    claim: Claim | None,
) -> AsyncIterator[bytes]:
    """One JSON line per operation as its slice commits, then the meta line.

    Atomic batches and batches with atomicity groups need the whole batch in one
    transaction, so their lines come after that one commit. With an Idempotency-Key, each
    slice's transaction also stores the slice's results as the key's progress, so that a
    retry after an interrupted stream resumes after the last committed slice (see
    :mod:`batchops.server.batch.idempotency`); the lines of the slices an earlier run
    committed are sent first, as they were."""
    try:
        needs_one_tx = plan.options.atomic or any(
            isinstance(op, PlannedOp) and op.atomicity_group for op in plan.ops
        )
        if needs_one_tx:
            status, data = await _execute(svc, caller, plan, batch_id, started, claim)
            yield ndjson_lines(orjson.loads(data), status)
            return
        deadline = options_deadline(plan.options, svc.settings.batch_timeout_ms)
        state = RunState(plan, caller.tenant, deadline)
        n = len(plan.ops)
        resume_at = _resume(state, claim.progress) if claim is not None else 0
        if resume_at:
            yield _lines(plan, state.outcomes[:resume_at])
        for start in range(resume_at, n, STREAM_SLICE):
            stop = min(n, start + STREAM_SLICE)
            saved = state.snapshot()

            def run_slice(
                tx: Tx,
                start: int = start,
                stop: int = stop,
                saved: tuple[Any, Any, bool] = saved,
            ) -> None:
                state.restore(saved)
                if claim is not None:
                    claim.hold(tx)
                state.run_range(tx, start, stop)
                if claim is not None:
                    lift_deadline(tx, plan)
                    claim.save_progress(tx, start, _progress_part(state, start, stop))

            try:
                await svc.store.run(run_slice, retries=plan.options.max_retries)
            except StoreTimeoutError as exc:
                if not exc.unit_lost:
                    raise
                # This slice rolled back whole: it and every later operation answer
                # TIMEOUT (what earlier slices committed stays, and is said so).
                state.restore(saved)
                for outcome in timed_out_outcomes(plan, start):
                    state.outcomes[outcome.index] = outcome
                state.stopped = True
                yield _lines(plan, state.outcomes[start:])
                break
            yield _lines(plan, state.outcomes[start:stop])
        outcomes = state.finished()
        status = batch_status(outcomes)
        payload = batch_payload(batch_id, plan, outcomes, started, committed=True)
        if claim is not None:
            data, settle = orjson.dumps(payload), claim

            def finish(tx: Tx) -> None:
                settle.hold(tx)
                settle.finish(tx, status, data)

            await svc.store.run(finish, retries=3)
            claim.settled = True
        yield orjson.dumps(meta_line(payload, status)) + b"\n"
    except APIError as exc:
        yield orjson.dumps(exc.to_envelope()) + b"\n"
    finally:
        # Every other exit (an error above, a client that went away: the response is
        # cancelled, and no await may run here) gives the key up for a retry.
        release_soon(claim, svc.store)


def _lines(plan: BatchPlan, outcomes: list[OpOutcome | None]) -> bytes:
    suppress = plan.options.suppress_success
    return b"".join(
        orjson.dumps(outcome.to_wire()) + b"\n"
        for outcome in outcomes
        if outcome is not None and not (suppress and outcome.counted == "succeeded")
    )


def _progress_part(state: RunState, start: int, stop: int) -> bytes:
    """Operations ``start..stop-1``'s outcomes (and whether the run stopped), as stored
    for a resumed stream."""
    return orjson.dumps(
        {
            "stopped": state.stopped,
            "outcomes": [
                {
                    "index": o.index,
                    "name": o.name,
                    "type": o.type,
                    "status": o.status,
                    "body": o.body,
                    "error": o.error.to_envelope() if o.error is not None else None,
                    "counted": o.counted,
                }
                for o in state.outcomes[start:stop]
                if o is not None
            ],
        }
    )


def _resume(state: RunState, parts: list[bytes]) -> int:
    """Put the outcomes an interrupted run committed back into ``state``; the index of
    the first operation still to run."""
    resume_at = 0
    for raw in parts:
        part = orjson.loads(raw)
        for o in part["outcomes"]:
            error = o["error"]
            outcome = OpOutcome(
                o["index"],
                o["name"],
                o["type"],
                o["status"],
                body=o["body"],
                error=api_error_from_envelope(o["status"], error) if error is not None else None,
                counted=o["counted"],
            )
            state.outcomes[outcome.index] = outcome
            if outcome.name is not None:
                state.results_by_name[outcome.name] = {
                    "status": outcome.status,
                    "body": outcome.body,
                }
            resume_at = max(resume_at, outcome.index + 1)
        state.stopped = part["stopped"]
    return resume_at
