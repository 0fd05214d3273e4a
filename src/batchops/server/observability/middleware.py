"""What every HTTP request goes through once (:class:`RequestObserver`): its
``X-Request-Id``, its metrics, its access-log line and its span; and ``GET /metrics``.

It is not a Starlette middleware: the app (``batchops.server.app._App``) calls it around
everything else, the ``POST /v1/batch`` fast path included, so it adds one coroutine and
one wrapped ``send`` per request and nothing per operation.

Where the fields come from, cheaply:

- the route *template*: the route Starlette matched leaves itself (FastAPI: ``route``)
  or its endpoint (Starlette: ``endpoint``) in the request's scope; the endpoint is
  mapped to its path once (:meth:`RequestObserver.route_of`). The fast path is
  ``/v1/batch``; no match is :data:`~batchops.server.observability.metrics.UNMATCHED`;
- the tenant and key id: the authentication dependency leaves the caller in the
  request's state (``scope["state"]["caller"]``, see ``batchops.server.auth``);
- the batch id: the answer's ``X-Batch-Id`` header, read as the answer starts.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from batchops._exceptions import (
    APIError,
    AuthenticationError,
    MethodNotAllowedError,
    NotFoundError,
)
from batchops.server.observability import logs, metrics, tracing

__all__ = ["METRICS_PATH", "RequestObserver"]

METRICS_PATH = "/metrics"

Call = Callable[[Scope, Receive, Send], Awaitable[None]]
JobCounts = Callable[[], Awaitable[list[tuple[str, str, int]]]]


class RequestObserver:
    """Observes each request of one app (see the module docstring) and answers
    ``GET /metrics``: on the app's port, or only on ``metrics_port`` when one is set (the
    app's port then answers it 404), with ``Authorization: Bearer <metrics_token>`` when a
    token is set (401 without). /metrics takes no API key and is not rate-limited."""

    def __init__(
        self,
        app: Any,
        *,
        metrics_token: str | None,
        metrics_port: int | None,
        job_counts: JobCounts | None,
    ) -> None:
        self.app = app
        self.token = f"Bearer {metrics_token}".encode() if metrics_token else None
        self.metrics_port = metrics_port
        self.job_counts = job_counts
        self._paths: dict[Any, str] | None = None

    def route_of(self, scope: Scope) -> str:
        """The path template of the route that answered the request (bounded)."""
        route = scope.get("route")
        if route is not None:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                return path
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return metrics.UNMATCHED
        paths = self._paths
        if paths is None:
            paths = self._paths = {
                getattr(r, "endpoint", None): r.path
                for r in self.app.router.routes
                if isinstance(getattr(r, "path", None), str)
            }
        return paths.get(endpoint, metrics.UNMATCHED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, call: Call) -> None:
        started = time.perf_counter()
        given: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
                break
        request_id = logs.request_id(given)
        status = 500
        size = 0
        batch_id: str | None = None
        echo = (b"x-request-id", request_id.encode("ascii"))

        async def sending(message: Message) -> None:
            nonlocal status, size, batch_id
            kind = message["type"]
            if kind == "http.response.body":
                size += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                for name, value in headers:
                    if name.lower() == b"x-batch-id":
                        batch_id = value.decode("latin-1")
                headers.append(echo)
                message["headers"] = headers
            await send(message)

        path: str = scope["path"]
        method: str = scope["method"]
        is_metrics = path == METRICS_PATH
        on_metrics_port = (
            self.metrics_port is not None
            and (scope.get("server") or (None, None))[1] == self.metrics_port
        )
        route: str | None = None
        # Named by the route template once it is known (the path may hold ids).
        with tracing.span(f"HTTP {method}" if tracing.enabled() else "") as current:
            try:
                if is_metrics and (self.metrics_port is None or on_metrics_port):
                    route = METRICS_PATH
                    await self._metrics(scope, sending)
                elif on_metrics_port or (is_metrics and self.metrics_port is not None):
                    route = metrics.UNMATCHED
                    await _error(sending, NotFoundError("Not Found"))
                else:
                    await call(scope, receive, sending)
            finally:
                if route is None:
                    route = self.route_of(scope)
                seconds = time.perf_counter() - started
                metrics.observe_request(route, method, status, seconds)
                if current is not None:
                    current.update_name(f"{method} {route}")
                    current.set_attribute("http.route", route)
                    current.set_attribute("http.request.method", method)
                    current.set_attribute("http.response.status_code", status)
                    current.set_attribute("batchops.request_id", request_id)
                if logs.ACCESS.isEnabledFor(logging.INFO):
                    state = scope.get("state")
                    caller = state.get("caller") if state else None
                    logs.access(
                        method=method,
                        route=route,
                        status=status,
                        duration_ms=seconds * 1000,
                        size=size,
                        request_id=request_id,
                        tenant=getattr(caller, "tenant", None),
                        key_id=getattr(caller, "key_id", None),
                        batch_id=batch_id,
                    )

    async def _metrics(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            refused: APIError = MethodNotAllowedError(
                f"{scope['method']} is not allowed on /metrics; allowed: GET, HEAD",
                details={"allowed": ["GET", "HEAD"]},
            )
            await _error(send, refused, [(b"allow", b"GET, HEAD")])
            return
        if self.token is not None:
            given = next((v for n, v in scope["headers"] if n == b"authorization"), b"")
            if not hmac.compare_digest(given, self.token):
                refused = AuthenticationError(
                    "send the metrics token as 'Authorization: Bearer <token>'",
                    code="INVALID_METRICS_TOKEN",
                )
                await _error(send, refused, [(b"www-authenticate", b"Bearer")])
                return
        counts = await self.job_counts() if self.job_counts is not None else None
        body = metrics.render(counts)
        await _send(
            send,
            200,
            body,
            content_type=metrics.CONTENT_TYPE.encode(),
            head=scope["method"] == "HEAD",
        )


async def _error(
    send: Send, error: APIError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """``error`` as the JSON envelope every error of the service is."""
    body = orjson.dumps(error.to_envelope())
    await _send(send, error.status_code, body, headers, content_type=b"application/json")


async def _send(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes,
    head: bool = False,
) -> None:
    """One whole answer (a HEAD's: the headers alone, the length the body would have)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
