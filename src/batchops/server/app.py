"""``create_app(settings)``: the records service as an ASGI app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from batchops._exceptions import RequestTimeoutError, StoreError
from batchops.server.auth import (
    Authenticator,
    KeyCheckingStore,
    create_first_key,
    forget_caller,
    restore_caller,
)
from batchops.server.batch import endpoint as batch
from batchops.server.batch import job as batch_job
from batchops.server.bulk import job as bulk_job
from batchops.server.bulk.router import router as bulk_router
from batchops.server.console.router import router as console_router
from batchops.server.deps import Services
from batchops.server.drain import DRAIN_STATE, Drain
from batchops.server.graphql import endpoint as graphql
from batchops.server.graphql.schema import build_schema
from batchops.server.health import router as health_router
from batchops.server.http import JSONResponse, error_response, install_error_handlers
from batchops.server.imports import job as import_job
from batchops.server.imports.router import router as imports_router
from batchops.server.jobs.inputs import job_inputs
from batchops.server.jobs.router import router as jobs_router
from batchops.server.jobs.runner import JobKinds, JobRunner
from batchops.server.observability import metrics, tracing
from batchops.server.observability.middleware import RequestObserver
from batchops.server.openapi import install
from batchops.server.ratelimit import KeyRateLimits
from batchops.server.records.router import router as records_router
from batchops.server.settings import Settings
from batchops.server.webhooks.delivery import WebhookSender
from batchops.server.webhooks.outbox import enqueue_job_event
from batchops.server.webhooks.router import router as webhooks_router
from batchops.store import open_store
from batchops.store.observe import set_run_observer

__all__ = ["create_app", "job_kinds"]

log = logging.getLogger("batchops.server")


def job_kinds() -> JobKinds:
    """The job kinds this server runs, each registered by its package, and the end hook
    every job's terminal transaction runs: the webhooks' outbox, so a job's end notice
    commits with its state (see batchops.server.jobs.runner)."""
    return JobKinds(
        {**import_job.KINDS, **bulk_job.KINDS, **batch_job.KINDS},
        on_end=[enqueue_job_event],
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The records service. The store opens (and migrates) when the app starts.

    What it serves follows ``settings.role``: the API (``all``, ``api``), the job runner
    and the webhook sender (``all``, ``worker``); a ``worker`` answers only the health
    probes. How it stops: :mod:`batchops.server.drain`.

    >>> app = create_app(Settings(db_url="sqlite:///tmp/example.db"))
    """
    settings = settings or Settings.from_env()
    kinds = job_kinds()
    # Process-wide, like the metrics they feed (one app per process when served).
    set_run_observer(metrics.observe_store_run)
    tracing.configure_tracing(settings.tracing)
    drain = Drain(settings.drain_delay_s, settings.shutdown_grace_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        store = await open_store(
            settings.db_url,
            statement_timeout_ms=settings.statement_timeout_ms,
            pool_size=settings.db_pool_size or None,
        )
        try:
            if settings.print_first_key:
                await _first_key(store)
            # Routes see the store through the key check (see batchops.server.auth): an
            # upload's chunks and its job are written while the key is live. The job runner
            # and the webhook sender act for no request, so it is the store itself for them.
            checked = KeyCheckingStore(store)
            inputs = job_inputs(settings, checked)
            jobs = JobRunner(store, settings, kinds, inputs) if settings.run_jobs else None
            limiter = KeyRateLimits(
                requests_per_minute=settings.rate_limit_requests_per_minute,
                operations_per_minute=settings.rate_limit_operations_per_minute,
                # A worker answers no API request: nothing to count, no Redis to ask.
                redis_url=settings.redis_url if settings.serves_api else None,
                redis_timeout_s=settings.redis_timeout_ms / 1000,
            )
            if settings.serves_api:
                _warn_if_limits_are_per_process(settings, store.dialect)
            app.state.services = Services(
                settings=settings,
                store=checked,
                authenticator=Authenticator(store, ttl_s=settings.auth_cache_ttl_s),
                limiter=limiter,
                inputs=inputs,
                jobs=jobs,
            )
            if jobs is not None:
                await jobs.start()
            # Webhook deliveries are sent by the processes that run jobs.
            sender = WebhookSender(store, settings, jobs.events) if jobs is not None else None
            app.state.webhook_sender = sender
            if sender is not None:
                await sender.start()
            try:
                # The server that stops this app in two steps finds its drain here.
                yield {DRAIN_STATE: drain}
            finally:
                # Both within what is left of the shutdown grace (the server spent some of
                # it waiting for the requests in flight): the runner hands each job back
                # after the chunk it is writing, the sender records its attempts in flight.
                stops = [jobs.stop(grace_s=drain.grace_left())] if jobs is not None else []
                if sender is not None:
                    stops.append(sender.stop())
                for failed in await asyncio.gather(*stops, return_exceptions=True):
                    if isinstance(failed, BaseException):
                        log.error("stopping the jobs or webhooks failed", exc_info=failed)
                await inputs.close()
                await limiter.close()
        finally:
            await store.close()

    api = settings.serves_api
    app = _App(
        title="batchops",
        version="0.1.0",
        summary="A records service whose POST /v1/batch runs many operations in one request.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # A worker serves the probes alone: no document, no docs pages.
        openapi_url="/openapi.json" if api else None,
        # FastAPI's own OpenTelemetry layer (on by default since 0.16x) is off: our spans
        # (Settings.tracing, batchops.server.observability.tracing) are the one source,
        # covering /v1/batch's fast path too, and off they cost nothing per request; left
        # on, it would add a span per FastAPI route and send metrics and logs to whatever
        # global providers are set.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.job_kinds = kinds  # the /v1/jobs routes answer kind-specific parts from it
    app.state.drain = app.drain = drain

    async def job_counts() -> list[tuple[str, str, int]]:
        services: Services = app.state.services
        return await services.store.run(lambda tx: tx.count_jobs())

    app.observer = RequestObserver(
        app,
        metrics_token=settings.metrics_token,
        metrics_port=settings.metrics_port,
        job_counts=job_counts,
    )
    install_error_handlers(app)

    async def on_store_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreError)
        return error_response(exc.to_api_error())

    app.add_exception_handler(StoreError, on_store_error)

    app.include_router(health_router)
    if not api:
        return app
    app.include_router(records_router)
    app.include_router(imports_router)
    app.include_router(jobs_router)
    app.include_router(bulk_router)
    app.include_router(webhooks_router)
    app.include_router(console_router)  # the browser console (not in the OpenAPI document)
    app.router.routes[0:0] = [*batch.routes, *graphql.routes]
    app.state.graphql_schema = build_schema(settings)
    app.batch_fast_path = batch.BatchFastPath(app.exception_handlers)
    install(app, settings, {**batch.OPENAPI_PATHS, **graphql.OPENAPI_PATHS})
    return app


def _warn_if_limits_are_per_process(settings: Settings, dialect: str) -> None:
    """One warning at start when several processes may serve (the store is PostgreSQL, or
    this is one of ``serve --workers N``) while the rate limits are counted per process
    (no Redis): each process would let a key's whole budget through."""
    limited = settings.rate_limit_requests_per_minute or settings.rate_limit_operations_per_minute
    several = dialect == "postgresql" or settings.workers > 1
    if several and not settings.redis_url and limited:
        log.warning(
            "rate limits are per process: %s, every process that serves lets each key its "
            "whole budget (N processes: N times the limit). Give every process the same "
            "--redis URL (BATCHOPS_REDIS_URL) to share them.",
            "with PostgreSQL" if dialect == "postgresql" else f"with --workers {settings.workers}",
        )


class _App(FastAPI):
    """FastAPI, with ``POST /v1/batch`` answered before any of its layers (see
    :class:`~batchops.server.batch.endpoint.BatchFastPath`), the body read timeout
    applied to every request that may carry a body (see :class:`_BodyWatch`), and
    ``Connection: close`` on every answer while the process drains."""

    batch_fast_path: batch.BatchFastPath | None = None
    drain: Drain | None = None
    observer: RequestObserver | None = None
    _body_watch: _BodyWatch | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _BODILESS_METHODS:
            watch = self._body_watch
            if watch is None:
                watch = self._body_watch = _BodyWatch.for_app(self)
            if watch.timeout_s > 0:
                receive = _TimedReceive(receive, watch)
        if scope["type"] == "http":
            send = _with_rate_headers(scope, send)
            if self.drain is not None and self.drain.draining:
                send = _closing(send)
            _drop_trailing_slash(scope)
        # The caller a request authenticates as is its own: forgotten when it ends, even
        # where a server runs requests in a task that outlives them (ASGI test clients).
        token = forget_caller()
        try:
            observer = self.observer
            if observer is not None and scope["type"] == "http":
                await observer(scope, receive, send, self._answer)
            else:
                await self._answer(scope, receive, send)
        finally:
            restore_caller(token)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.batch_fast_path
        if fast is not None and fast.matches(scope):
            scope["app"] = self  # what Starlette's __call__ would have set
            scope["endpoint"] = batch.post_batch  # what routing would have (the route label)
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _drop_trailing_slash(scope: Scope) -> None:
    """``/v1/…/records/`` is ``/v1/…/records``: one trailing slash is tolerated, as the
    batch's REST dialect tolerates it (``batch/routing.py``), rather than answered with
    Starlette's 307 redirect (which some clients follow as a GET, without the body)."""
    path: str = scope["path"]
    if len(path) > 4 and path.endswith("/") and path.startswith("/v1/") and path[-2] != "/":
        scope["path"] = path[:-1]
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and raw.endswith(b"/"):
            scope["raw_path"] = raw[:-1]


def _with_rate_headers(scope: Scope, send: Send) -> Send:
    """``send``, adding the caller's ``RateLimit-*`` headers to an answer that lacks them.

    Every answer after authentication carries the key's request budget (README, "The
    server"), errors included: a route's error is rendered by an exception handler that
    knows nothing of it, and not every route copied the headers onto its own answers. So
    they are added here, once, from what :func:`batchops.server.deps.authenticated` left
    in the request's state (nothing before that: a 401, an unknown path)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            state = scope.get("state")
            rate: dict[str, str] | None = state.get("rate_headers") if state else None
            if rate:
                present = {name.lower() for name, _ in message.get("headers", ())}
                missing = [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in rate.items()
                    if name.lower().encode("latin-1") not in present
                ]
                if missing:
                    message["headers"] = [*message.get("headers", ()), *missing]
        await send(message)

    return sending


def _closing(send: Send) -> Send:
    """``send``, with ``Connection: close`` on the answer: a draining process has the
    client (a load balancer's pooled connection too) open its next connection elsewhere,
    rather than keep one that the process closes when it stops."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (name, value)
                for name, value in message.get("headers", ())
                if name.lower() != b"connection"
            ]
            message["headers"] = [*headers, (b"connection", b"close")]
        await send(message)

    return sending


_BODILESS_METHODS = frozenset({"GET", "HEAD"})
"""Methods whose requests no route reads a body of: they are not watched."""


class _BodyWatch:
    """The body read timeout of one app: a request whose body sends nothing for
    ``timeout_s`` is answered 408 ``REQUEST_TIMEOUT`` with ``Connection: close``.

    Without it, a client that sends headers and part of a body and then stalls holds its
    connection and its request (an upload's open file, a batch's slot) forever.

    It sits at the ASGI ``receive`` callable, so every reader gets it — ``iter_body``,
    Starlette's ``request.stream()``, and ``POST /v1/batch``, which is answered ahead of
    FastAPI's layers — and only time spent waiting for the client counts, never the
    app's own work between reads.

    One coarse timer per app rather than one per read: ``asyncio.timeout`` around each
    read measured 5-7 µs per request (uvloop and asyncio alike) and a bare
    ``loop.call_later`` per read 3-6 µs; this costs ~1 µs (a timestamp and a set insert),
    against ~100 µs of server CPU for the smallest batch. A sweep every
    ``min(1 s, timeout / 4)`` while reads are pending cancels the task of each overdue
    read, so the 408 comes between ``timeout_s`` and one tick more after the last byte.
    """

    __slots__ = ("handle", "loop", "tick_s", "timeout_s", "waiting")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.tick_s = min(1.0, timeout_s / 4)
        self.waiting: set[_TimedReceive] = set()
        self.handle: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_app(cls, app: FastAPI) -> _BodyWatch:
        """The watch of ``app`` at its first request (its settings are set by then)."""
        services = getattr(app.state, "services", None)
        settings = services.settings if isinstance(services, Services) else Settings()
        return cls(settings.body_read_timeout_s)

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle = loop.call_later(self.tick_s, self.sweep)

    def sweep(self) -> None:
        self.handle = None
        overdue = time.monotonic() - self.timeout_s
        for read in [r for r in self.waiting if r.since <= overdue]:
            self.waiting.discard(read)
            read.expire()
        if self.waiting and self.loop is not None:
            self.arm(self.loop)


class _TimedReceive:
    """The ``receive`` of one request, under its app's :class:`_BodyWatch` until the last
    body message has arrived; a plain pass-through after that (a disconnect listener may
    wait as long as it likes)."""

    __slots__ = ("cancelling", "done", "expired", "receive", "since", "task", "watch")

    def __init__(self, receive: Receive, watch: _BodyWatch) -> None:
        self.receive = receive
        self.watch = watch
        self.done = False
        self.expired = False
        self.since = 0.0
        self.task: asyncio.Task[Any] | None = None
        self.cancelling = 0

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        if self.expired:  # the 408 is on its way: the client counts as gone
            return {"type": "http.disconnect"}
        watch = self.watch
        self.task = task = asyncio.current_task()
        assert task is not None
        self.cancelling = task.cancelling()
        self.since = time.monotonic()
        watch.waiting.add(self)
        loop = task.get_loop()
        if watch.handle is None or watch.loop is not loop:
            watch.arm(loop)
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            # Ours only if nobody else cancelled the task meanwhile (asyncio.timeout's rule).
            if self.expired and task.uncancel() <= self.cancelling:
                raise RequestTimeoutError(
                    f"no part of the request body arrived for {watch.timeout_s:g} s",
                    details={"timeout_s": watch.timeout_s},
                    headers={"Connection": "close"},
                ) from None
            raise
        finally:
            watch.waiting.discard(self)
        if not message.get("more_body", False):
            self.done = True
        return message

    def expire(self) -> None:
        """Give up on the body: end the read that is waiting for it."""
        self.expired = True
        if self.task is not None:
            self.task.cancel()


async def _first_key(store: Any) -> None:
    """On first start with no key at all, create one and print it once (one between all
    the servers that start at once, see :func:`~batchops.server.auth.create_first_key`)."""

    key = await store.run(create_first_key)
    if key is not None:
        print(
            "batchops: no API key existed, so one was created for tenant 'default'.\n"
            "batchops: it is shown only this once — keep it:\n"
            f"BATCHOPS_API_KEY={key}",
            flush=True,
        )
