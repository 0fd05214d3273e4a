"""``create_app(settings)``: the records service as an ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from batchops._exceptions import ServiceUnavailableError, StoreError, TransientStoreError
from batchops.server.auth import Authenticator, create_api_key
from batchops.server.batch import router as batch
from batchops.server.deps import Services
from batchops.server.http import JSONResponse, error_response, install_error_handlers
from batchops.server.jobs.bulk_router import router as bulk_router
from batchops.server.jobs.delivery import WebhookSender
from batchops.server.jobs.router import router as jobs_router
from batchops.server.jobs.runner import JobRunner
from batchops.server.jobs.webhook_router import router as webhooks_router
from batchops.server.ratelimit import RateLimiter
from batchops.server.records.router import router as records_router
from batchops.server.settings import Settings
from batchops.store import open_store

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The records service. The store opens (and migrates) when the app starts.

    >>> app = create_app(Settings(db_url="sqlite:///tmp/example.db"))
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings.db_url)
        try:
            if settings.print_first_key:
                await _first_key(store)
            jobs = JobRunner(store, settings) if settings.run_jobs else None
            app.state.services = Services(
                settings=settings,
                store=store,
                authenticator=Authenticator(store, ttl_s=settings.auth_cache_ttl_s),
                limiter=RateLimiter(
                    requests_per_minute=settings.rate_limit_requests_per_minute,
                    operations_per_minute=settings.rate_limit_operations_per_minute,
                ),
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
                yield
            finally:
                if sender is not None:
                    await sender.stop()
                if jobs is not None:
                    await jobs.stop()
        finally:
            await store.close()

    app = _App(
        title="batchops",
        version="0.1.0",
        summary="A records service whose POST /v1/batch runs many operations in one request.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    install_error_handlers(app)

    async def on_store_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, TransientStoreError):
            return error_response(
                ServiceUnavailableError(
                    "the database is busy; retry shortly", code="STORE_BUSY", retry_after=1.0
                )
            )
        return error_response(ServiceUnavailableError("the database failed", code="STORE_ERROR"))

    app.add_exception_handler(StoreError, on_store_error)

    @app.get("/healthz", tags=["service"], summary="Liveness and database reachability")
    async def healthz(request: Request) -> dict[str, Any]:
        services: Services = request.app.state.services
        await services.store.run(lambda tx: tx.count_api_keys())
        return {"status": "ok", "database": services.store.dialect}

    app.include_router(records_router)
    app.include_router(jobs_router)
    app.include_router(bulk_router)
    app.include_router(webhooks_router)
    app.router.routes[0:0] = batch.routes
    app.batch_fast_path = batch.BatchFastPath(app.exception_handlers)
    _document(app, batch.OPENAPI_PATHS)
    return app


class _App(FastAPI):
    """FastAPI, with ``POST /v1/batch`` answered before any of its layers (see
    :class:`~batchops.server.batch.router.BatchFastPath`)."""

    batch_fast_path: batch.BatchFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.batch_fast_path
        if fast is not None and fast.matches(scope):
            scope["app"] = self  # what Starlette's __call__ would have set
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _document(app: FastAPI, paths: dict[str, Any]) -> None:
    """Add hand-written OpenAPI entries for plain Starlette routes (FastAPI documents only
    its own routes)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("paths", {}).update(paths)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _first_key(store: Any) -> None:
    """On first start with no key at all, create one and print it once."""

    def make(tx: Any) -> str | None:
        if tx.count_api_keys() > 0:
            return None
        key, _ = create_api_key(tx, "default", "created on first start")
        return key

    key = await store.run(make)
    if key is not None:
        print(
            "batchops: no API key existed, so one was created for tenant 'default'.\n"
            "batchops: it is shown only this once — keep it:\n"
            f"BATCHOPS_API_KEY={key}",
            flush=True,
        )
