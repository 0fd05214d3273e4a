"""``/console``: the jobs console, server-rendered pages over the services the API uses.

Every page and action calls the same service code as the REST route that does the same
thing, in process (no HTTP to itself): the jobs list is
:func:`batchops.server.jobs.service.jobs_page`, as ``GET /v1/jobs``; cancel is
:func:`batchops.server.jobs.service.cancel_job`; the upload is
:func:`batchops.server.imports.router.accept_import`; the failures download is
:func:`batchops.server.jobs.service.failure_lines`; the live bar's events are
:func:`batchops.server.jobs.sse.job_events`; retry is
:func:`batchops.server.imports.retry.retry_failures`; deliveries are
:func:`batchops.server.webhooks.router.read_deliveries`. Every read is scoped by the
signed-in key's tenant: another tenant's job is a 404, as in the API.

Pages are Jinja2 templates (autoescaped); the scripts and styles are files of ``static/``,
served by this router, so the Content-Security-Policy allows no inline script and nothing
from another origin. Actions are plain form posts answered with a redirect (303) to the page
that shows their effect, so a page reload never repeats one. Sign-in and cross-site checks:
:mod:`batchops.server.console.session`. Nothing here is in the OpenAPI document.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Form, Request
from fastapi.routing import APIRoute
from sse_starlette import EventSourceResponse
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from batchops._exceptions import APIError, AuthenticationError, NotFoundError
from batchops.server.console.session import (
    ConsoleCallerDep,
    SameOriginDep,
    SignInRequired,
    clear_session,
    set_session,
)
from batchops.server.deps import ServicesDep
from batchops.server.imports.retry import retry_failures
from batchops.server.imports.router import accept_import
from batchops.server.jobs.router import JobKindsDep, tenant_job
from batchops.server.jobs.schemas import (
    JOB_STATES,
    JOB_TYPES,
    TERMINAL_STATES,
    job_body,
)
from batchops.server.jobs.service import (
    FAILURE_FORMATS,
    cancel_job,
    check_failure_format,
    failure_lines,
    jobs_page,
)
from batchops.server.jobs.sse import job_events
from batchops.server.webhooks.router import read_deliveries
from batchops.store.base import JobFailureRow, JobRow, Tx

__all__ = ["CSP", "PAGE_SIZE", "router"]

PAGE_SIZE: Final = 25
"""Jobs per page of the list."""

FAILURES_SHOWN: Final = 20
"""Failures shown on a job's page (the download has them all)."""

DELIVERIES_SHOWN: Final = 20

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""The Content-Security-Policy of every console answer: this origin's files only, no
inline script or style, no framing, forms post back here only."""

_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show a tenant's data: no shared cache keeps them, the back button re-asks.
    "Cache-Control": "no-store",
}

_STATIC: Final = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("batchops.server.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["rate"] = _rate
    return env


def _rate(job: dict[str, Any]) -> str:
    """Rows per second so far ('–' before the job has processed a row)."""
    started = _epoch(job.get("started_at"))
    if started is None or not job["processed"]:
        return "–"
    ended = _epoch(job.get("finished_at")) or time.time()
    elapsed = max(ended - started, 0.001)
    return f"{job['processed'] / elapsed:,.0f}"


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)


class _ConsoleRoute(APIRoute):
    """A console route: its errors are pages, not the API's JSON envelope (a missing or
    revoked session is the sign-in page), and every answer carries the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as exc:
                if request.method == "GET" and not _is_resource(request):
                    return _signed_out(RedirectResponse("/console/login", status_code=303), request)
                response = _signed_out(
                    _page("login.html", 401, error=exc.reason, signed_in=False), request
                )
            except APIError as exc:
                caller = getattr(request.state, "caller", None)
                response = _page(
                    "error.html",
                    exc.status_code,
                    error=exc,
                    signed_in=caller is not None,
                    tenant=caller.tenant if caller is not None else "",
                )
                response.headers.update(exc.headers)  # a 429's RateLimit-*, a 408's close
                if exc.retry_after is not None:
                    response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            for name, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handle


def _is_resource(request: Request) -> bool:
    """A request a script or a download makes (events, files): answered, not redirected."""
    path = request.url.path
    return path.endswith("/events") or "/failures." in path


def _signed_out(response: Response, request: Request) -> Response:
    clear_session(response, request)
    return response


router = APIRouter(prefix="/console", route_class=_ConsoleRoute, include_in_schema=False)


@router.get("")
async def home() -> Response:
    """The jobs list (the sign-in page when signed out)."""
    return RedirectResponse("/console/jobs", status_code=303)


@router.get("/login")
async def login_page() -> Response:
    """The sign-in form."""
    return _page("login.html", error=None, signed_in=False)


@router.post("/login")
async def login(
    request: Request, svc: ServicesDep, _: SameOriginDep, key: str = Form("")
) -> Response:
    """Check the key as the API does; when it is live, it becomes the session cookie."""
    key = key.strip()
    if not key:
        return _page("login.html", 401, error="Enter an API key.", signed_in=False)
    try:
        await svc.authenticator.authenticate(key, request)
    except AuthenticationError:
        return _page("login.html", 401, error="The API key is unknown or revoked.", signed_in=False)
    response = RedirectResponse("/console/jobs", status_code=303)
    set_session(response, request, key)
    return response


@router.post("/logout")
async def logout(request: Request, _: SameOriginDep) -> Response:
    """Forget the session (the key stays valid for the API)."""
    return _signed_out(RedirectResponse("/console/login", status_code=303), request)


@router.get("/jobs")
async def jobs_list(
    caller: ConsoleCallerDep,
    svc: ServicesDep,
    state: str = "",
    type: str = "",
    cursor: str = "",
) -> Response:
    """The tenant's jobs, newest first, filtered by state and type, a page at a time."""
    rows, next_cursor = await jobs_page(
        svc,
        caller.tenant,
        state=state or None,
        type=type or None,
        limit=PAGE_SIZE,
        cursor=cursor or None,
    )
    filters = {"state": state, "type": type}
    kept = {name: value for name, value in filters.items() if value}
    next_url = None
    if next_cursor is not None:
        next_url = "/console/jobs?" + urlencode({**kept, "cursor": next_cursor})
    first_url = "/console/jobs?" + urlencode(kept) if cursor else None
    return _page(
        "jobs.html",
        jobs=[job_body(row) for row in rows],
        filters=filters,
        states=JOB_STATES,
        types=JOB_TYPES,
        next_url=next_url,
        first_url=first_url,
        tenant=caller.tenant,
        signed_in=True,
    )


@router.get("/jobs/{job_id}")
async def job_page(job_id: str, caller: ConsoleCallerDep, svc: ServicesDep) -> Response:
    """A job: its summary and live bar, its first failures, its webhook deliveries."""
    job = await tenant_job(svc, caller.tenant, job_id)

    def failures(tx: Tx) -> list[JobFailureRow]:
        return tx.list_job_failures(job.id, limit=FAILURES_SHOWN)

    shown = await svc.store.run(failures)
    deliveries = await svc.store.run(
        read_deliveries(caller.tenant, webhook_id=None, job_id=job.id, limit=DELIVERIES_SHOWN)
    )
    return _page(
        "job.html",
        job=job_body(job),
        failures=shown,
        more_failures=job.failed > len(shown),
        deliveries=deliveries,
        can_cancel=job.state not in TERMINAL_STATES,
        can_retry=_can_retry(job),
        tenant=caller.tenant,
        signed_in=True,
    )


def _can_retry(job: JobRow) -> bool:
    """The retry button: a finished import with failed rows."""
    return job.type == "import" and job.state in TERMINAL_STATES and job.failed > 0


@router.get("/jobs/{job_id}/events")
async def job_events_stream(job_id: str, caller: ConsoleCallerDep, svc: ServicesDep) -> Response:
    """The job's live progress for the page's bar: the API's event stream, read with the
    session (an ``EventSource`` sends the cookie; it cannot send an Authorization header)."""
    await tenant_job(svc, caller.tenant, job_id)
    events = job_events(svc, caller.tenant, job_id, 0, poll_s=svc.settings.job_poll_s)
    return EventSourceResponse(events, ping=15, headers=_SECURITY_HEADERS)


@router.get("/jobs/{job_id}/failures.{format}")
async def job_failures(
    job_id: str, format: str, caller: ConsoleCallerDep, svc: ServicesDep
) -> Response:
    """Every failure of the job, as a CSV or NDJSON download."""
    try:
        check_failure_format(format)
    except APIError:
        raise NotFoundError(f"no download {format!r}: csv or ndjson") from None
    job = await tenant_job(svc, caller.tenant, job_id)
    return StreamingResponse(
        failure_lines(svc, job.id, format),
        media_type=FAILURE_FORMATS[format],
        headers={
            **_SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="failures-{job.id}.{format}"',
        },
    )


@router.post("/jobs/{job_id}/cancel")
async def cancel(
    job_id: str, caller: ConsoleCallerDep, svc: ServicesDep, kinds: JobKindsDep, _: SameOriginDep
) -> Response:
    """Cancel the job (as ``POST /v1/jobs/{id}/cancel``), then show it."""
    job = await cancel_job(svc, kinds, caller.tenant, job_id)
    return RedirectResponse(f"/console/jobs/{job.id}", status_code=303)


@router.post("/jobs/{job_id}/retry-failures")
async def retry(
    job_id: str, caller: ConsoleCallerDep, svc: ServicesDep, _: SameOriginDep
) -> Response:
    """A new import job of the failed rows of this one; then show the new job."""
    retried = await retry_failures(svc, caller.tenant, job_id)
    return RedirectResponse(f"/console/jobs/{retried.id}", status_code=303)


@router.get("/imports/new")
async def upload_page(caller: ConsoleCallerDep) -> Response:
    """The upload form: file, collection, format, validation, mapping and the rest."""
    return _page("upload.html", error=None, tenant=caller.tenant, signed_in=True)


@router.post("/imports")
async def upload(
    request: Request, caller: ConsoleCallerDep, svc: ServicesDep, _: SameOriginDep
) -> Response:
    """Start an import from the form (as ``POST /v1/imports`` with a multipart body), then
    show its job. A refused upload shows the form again with the reason."""
    query: dict[str, str | None] = dict.fromkeys(
        (
            "collection",
            "format",
            "validation",
            "dry_run",
            "upsert_key",
            "chunk_size",
            "mapping",
            "notification_webhook",
        )
    )
    try:
        job = await accept_import(request, svc, caller.tenant, query, blank_is_absent=True)
    except APIError as exc:
        return _page(
            "upload.html", exc.status_code, error=exc, tenant=caller.tenant, signed_in=True
        )
    return RedirectResponse(f"/console/jobs/{job.id}", status_code=303)


@router.get("/collections")
async def collections_page(caller: ConsoleCallerDep, svc: ServicesDep) -> Response:
    """The tenant's collections and how many live records each holds."""
    counts = await svc.store.run(lambda tx: tx.collection_counts(caller.tenant))
    return _page("collections.html", collections=counts, tenant=caller.tenant, signed_in=True)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The console's own script and style (only these names are ever read)."""
    media = _STATIC.get(name)
    if media is None:
        raise NotFoundError(f"no console file {name!r}")
    return Response(
        _asset(name),
        media_type=media,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@cache
def _asset(name: str) -> bytes:
    return (files("batchops.server.console") / "static" / name).read_bytes()
