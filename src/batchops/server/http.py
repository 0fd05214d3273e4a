"""HTTP plumbing shared by every route: fast JSON responses, the error envelope, and
reading a request body within a byte limit (gzip included).

A gzip body is inflated in steps of at most 256 KiB of output, so a request's memory is
bounded whatever its compression ratio. Before, each arriving chunk was inflated in one
call bounded only by the byte limit: 4 concurrent 2 MB gzip bombs against the 1 GiB upload
limit took a real server from 84 MB to 2.4 GB RSS, each writing 1 GiB to disk before its
413. Now they add ~6 MB, each refused by the inflation ratio guard after ~1.3 MB, and
~12 MB with the guard off (tests/server/test_request_bodies.py). docs/limits.md lists
every limit and the answer a client gets.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import msgspec
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from batchops._exceptions import (
    APIError,
    InternalServerError,
    InvalidRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    api_error_from_envelope,
)
from batchops.server.limits import MAX_JSON_DEPTH, too_deep_path
from batchops.server.settings import Settings

__all__ = [
    "JSONResponse",
    "error_response",
    "install_error_handlers",
    "iter_body",
    "json_too_deep",
    "parse_json",
    "read_body",
    "require_json",
]


class JSONResponse(StarletteJSONResponse):
    """A JSON response encoded with orjson (about 5x faster than the stdlib encoder).

    A Starlette ``JSONResponse`` (whose ``render`` it replaces), so that FastAPI documents
    a route's JSON answer by the schema the route declares instead of as a string."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The envelope ``{"error": {"code", "message", "details"}}`` with the error's status."""
    all_headers = {**error.headers, **(headers or {})}
    if error.retry_after is not None:
        all_headers.setdefault("Retry-After", str(max(1, round(error.retry_after))))
    return JSONResponse(error.to_envelope(), status_code=error.status_code, headers=all_headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error, anywhere, leaves as the JSON envelope; a client mistake is never a 500."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            return _method_not_allowed(request, headers)
        error = api_error_from_envelope(exc.status_code, {"error": {"message": str(exc.detail)}})
        return error_response(error, headers=headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        path = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return error_response(
            InvalidRequestError(
                str(first.get("msg", "invalid request")),
                details={"path": path, "errors": [str(e.get("msg")) for e in exc.errors()]},
            )
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return error_response(InternalServerError("internal server error"))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)


_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def _method_not_allowed(request: Request, headers: dict[str, str]) -> Response:
    """405 with ``Allow`` naming every method the path takes (RFC 9110 §15.5.6).

    The router's own 405 names only the methods of the first route whose path matched, so
    a path served by several routes (``GET`` and ``POST`` on a collection's records) would
    advertise only one of them; here every route of the app is asked, once per method.
    """
    allowed = _allowed_methods(request.app, request.scope) or [
        m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
    ]
    headers["Allow"] = ", ".join(allowed)
    error = MethodNotAllowedError(
        f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}",
        details={"allowed": allowed},
    )
    return error_response(error, headers=headers)


def _allowed_methods(app: Any, scope: Scope) -> list[str]:
    """The methods any route of ``app`` takes on the path of ``scope`` (on the error path
    only: it matches every route once per method)."""
    base = {
        "type": "http",
        "path": scope["path"],
        "root_path": scope.get("app_root_path", scope.get("root_path", "")),
        "headers": scope.get("headers", []),
        "query_string": b"",
    }
    routes = app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**base, "method": method})[0] is Match.FULL for route in routes)
    ]


def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``…+json``)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(
            "send the body as JSON with 'Content-Type: application/json'",
            details={"content_type": content_type},
        )


async def iter_body(
    request: Request,
    *,
    max_bytes: int,
    what: str = "request body",
    code: str | None = None,
    max_inflation_ratio: float | None = None,
) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, decompressed if gzip, refusing it with 413 (with
    ``code`` if given) as soon as it — or its decompressed form — passes ``max_bytes``.

    A gzip body comes out in pieces of at most 256 KiB, may hold several gzip members
    (RFC 1952 §2.2), and is refused with 413 ``INFLATION_RATIO_EXCEEDED`` once it inflates
    more than ``max_inflation_ratio`` times (default: the app's setting) past its first
    MiB; it is refused with 400 if it is not gzip, is truncated, or has anything but
    another member after a member.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(what, max_bytes, int(declared), code)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding!r} is not supported; use gzip or none",
            details={"content_encoding": encoding},
        )
    size = 0
    if encoding == "identity":
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(what, max_bytes, size, code)
            yield chunk
        return
    if max_inflation_ratio is None:
        max_inflation_ratio = _app_settings(request).max_inflation_ratio
    gunzip = _Gunzip(what, max_inflation_ratio)
    async for chunk in request.stream():
        for piece in gunzip.inflate(chunk):
            size += len(piece)
            if size > max_bytes:
                raise _too_large(what, max_bytes, size, code)
            yield piece
    if not gunzip.complete:
        raise InvalidRequestError("the gzip body is truncated", details=_GZIP_DETAILS)


_INFLATE_STEP: Final = 256 * 1024
"""The most one inflation step outputs: what a gzip body can cost in memory at a time."""
_RATIO_GRACE_BYTES: Final = 1024 * 1024
"""Inflated bytes before the ratio guard applies: a small body may compress very well."""
_GZIP_MAGIC: Final = b"\x1f\x8b"
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_GZIP_DETAILS: Final = {"content_encoding": "gzip"}


class _Gunzip:
    """A gzip body inflated in bounded steps, member after member.

    Why steps: ``decompress(data, max_length)`` bounds one call's output, and what it has
    not consumed waits in ``unconsumed_tail``; looping over that tail with a small
    ``max_length`` keeps memory at one step whatever the ratio (one call bounded only by
    the byte limit inflated a 2 MB bomb to hundreds of MB at once).

    Why a ratio guard: with steps alone, a bomb is still inflated — and an upload written
    to disk — up to the byte limit (1 GiB for imports) before its 413. Apache POI refuses
    zip entries that inflate more than 100x (``ZipSecureFile.MIN_INFLATE_RATIO = 0.01``,
    https://poi.apache.org/apidocs/dev/org/apache/poi/openxml4j/util/ZipSecureFile.html);
    likewise a body that has inflated past a grace MiB to more than ``max_ratio`` times
    the compressed bytes consumed so far is refused at once. JSON and CSV gzip 3-20x;
    zeros, the bomb's stuff, ~1000x.
    """

    __slots__ = ("compressed", "inflated", "inflater", "max_ratio", "what")

    def __init__(self, what: str, max_ratio: float) -> None:
        self.what = what
        self.max_ratio = max_ratio
        self.inflater = zlib.decompressobj(_GZIP_WBITS)
        self.compressed = 0
        self.inflated = 0

    @property
    def complete(self) -> bool:
        """Whether the body so far ends at the end of a gzip member."""
        return self.inflater.eof

    def inflate(self, data: bytes) -> Iterator[bytes]:
        """The inflated form of the next piece of the body, in pieces of at most
        :data:`_INFLATE_STEP` bytes."""
        inflater = self.inflater
        while True:
            if inflater.eof:
                # RFC 1952 §2.2: a gzip file is a series of members. Another one may follow
                # (``gzip -c a b``; the magic may be cut between two chunks); anything
                # else after the end is refused rather than silently dropped.
                if not data:
                    return
                if not _GZIP_MAGIC.startswith(data[:2]):
                    raise InvalidRequestError(
                        "the gzip body is followed by bytes that are not a gzip member",
                        details=_GZIP_DETAILS,
                    )
                inflater = self.inflater = zlib.decompressobj(_GZIP_WBITS)
            try:
                out = inflater.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise InvalidRequestError(
                    "the body is not valid gzip", details=_GZIP_DETAILS
                ) from exc
            rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            self.compressed += len(data) - len(rest)
            data = rest
            if out:
                self.inflated += len(out)
                if (
                    self.max_ratio > 0
                    and self.inflated > _RATIO_GRACE_BYTES
                    and self.inflated > self.max_ratio * self.compressed
                ):
                    raise self._ratio_exceeded()
                yield out
            # A full step may leave output pending inside zlib even with no input left.
            if not data and not inflater.eof and len(out) < _INFLATE_STEP:
                return

    def _ratio_exceeded(self) -> PayloadTooLargeError:
        ratio = self.inflated / max(self.compressed, 1)
        return PayloadTooLargeError(
            f"the gzip {self.what} inflates {ratio:.0f} times its compressed size, more "
            f"than the {self.max_ratio:g} allowed",
            code="INFLATION_RATIO_EXCEEDED",
            details={
                "limit": self.max_ratio,
                "actual": round(ratio, 1),
                "unit": "inflated bytes per compressed byte",
                "inflated_bytes": self.inflated,
                "compressed_bytes": self.compressed,
            },
        )


def _app_settings(request: Request) -> Settings:
    """The settings of the app serving ``request`` (its defaults if it was not started)."""
    services = getattr(request.app.state, "services", None)
    settings = getattr(services, "settings", None)
    return settings if isinstance(settings, Settings) else _DEFAULT_SETTINGS


_DEFAULT_SETTINGS: Final = Settings()


async def read_body(request: Request, *, max_bytes: int, what: str = "request body") -> bytes:
    """The whole request body in memory (see :func:`iter_body`); for bodies with a small
    limit — uploads stream chunk by chunk instead."""
    return b"".join([chunk async for chunk in iter_body(request, max_bytes=max_bytes, what=what)])


def _too_large(what: str, limit: int, actual: int, code: str | None) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the {what} is larger than {limit} bytes",
        code=code,
        details={"limit": limit, "actual_at_least": actual, "unit": "bytes"},
    )


def parse_json(body: bytes) -> Any:
    """Decode JSON or answer 400 with where it broke.

    msgspec rather than orjson: orjson turns an integer beyond 64 bits into a float, so a
    record would silently store another number; msgspec keeps it exact and the operations
    layer answers 422 naming it, as ``POST /v1/batch`` (also msgspec) does.
    """
    try:
        return _JSON_DECODER.decode(body)
    except RecursionError:
        raise json_too_deep(body) from None
    except msgspec.DecodeError as exc:
        details: dict[str, Any] = {"path": ""}
        if match := _BYTE_RE.search(str(exc)):
            details["position"] = int(match["byte"])
        elif "truncated" in str(exc):
            details["position"] = len(body)
        raise InvalidRequestError(f"the body is not valid JSON: {exc}", details=details) from exc


def json_too_deep(body: bytes) -> InvalidRequestError:
    """The 400 for a JSON body nested too deep to decode, naming where it goes too deep."""
    return InvalidRequestError(
        f"the body nests objects and arrays deeper than {MAX_JSON_DEPTH} levels",
        code="JSON_TOO_DEEP",
        details={"path": too_deep_path(body) or "", "limit": MAX_JSON_DEPTH},
    )


_JSON_DECODER: Final = msgspec.json.Decoder()
_BYTE_RE: Final = re.compile(r"\(byte (?P<byte>\d+)\)")
