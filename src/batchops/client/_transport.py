"""The one place the SDK speaks HTTP (aiohttp) and maps its errors into batchops'.

aiohttp, not httpx: ~150 µs vs ~690 µs of client CPU per small request, measured in
docs/benchmarks.md. One ``ClientSession`` per client (one connection pool); its
connector's ``limit`` caps requests in flight for the whole client.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from batchops._exceptions import APIError, ConnectionFailedError, api_error_from_envelope

__all__ = ["Reply", "Transport"]


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, the headers the SDK uses, and the raw body."""

    status: int
    data: bytes
    retry_after: float | None
    request_id: str | None
    replayed: bool

    def json(self) -> Any:
        """The body as JSON (``None`` if it is empty or not JSON)."""
        try:
            return orjson.loads(self.data) if self.data else None
        except orjson.JSONDecodeError:
            return None

    def error(self) -> APIError:
        """The :class:`APIError` this (4xx/5xx) answer stands for."""
        body = self.json()
        return api_error_from_envelope(
            self.status,
            body if isinstance(body, dict) else None,
            request_id=self.request_id,
            retry_after=self.retry_after,
        )


#: aiohttp's error for a connection that was never opened (refused, name not resolved,
#: TLS failed): raised before any byte of the request is written. Every other failure may
#: come after sending. (A connect timeout would qualify too, but the SDK sets none: its
#: total timeout does not say when it struck. aiohttp never resends a POST by itself.)
_NOT_CONNECTED = aiohttp.ClientConnectorError


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from our server; fall back to backoff
    return seconds if seconds >= 0 else None


class Transport:
    """An aiohttp session bound to one base URL and API key, opened lazily in the loop."""

    __slots__ = ("_api_key", "_base_url", "_max_connections", "_session", "_timeout")

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float, max_connections: int
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop: aiohttp binds a session to it.
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                headers={
                    "Authorization": f"Bearer {self._api_key}",
                    "User-Agent": "batchops-sdk",
                },
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=self._max_connections),
            )
        return session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request; raise :class:`ConnectionFailedError` when no answer came."""
        session = self._open()
        send_headers = {"Content-Type": "application/json"} if body is not None else {}
        if headers:
            send_headers.update(headers)
        try:
            async with session.request(
                method, self._base_url + path, data=body, headers=send_headers
            ) as response:
                data = await response.read()
                return Reply(
                    response.status,
                    data,
                    _retry_after(response.headers.get("Retry-After")),
                    response.headers.get("X-Batch-Id") or response.headers.get("X-Request-Id"),
                    response.headers.get("Idempotent-Replayed") == "true",
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # One exception for "no answer" (refused, reset, dropped, timed out), so
            # callers and the retry policy need not know aiohttp's hierarchy. Whether the
            # request left at all is kept: a connection that could not be opened sent
            # nothing, which makes even a non-idempotent request safe to send again.
            raise ConnectionFailedError(
                f"{method} {path}: no answer from {self._base_url} ({type(exc).__name__}: {exc})",
                before_sending=isinstance(exc, _NOT_CONNECTED),
            ) from exc

    async def upload(
        self,
        path: str,
        file: Path,
        *,
        content_type: str,
        params: dict[str, str],
        on_bytes: Callable[[int], object] | None = None,
    ) -> Reply:
        """POST a file as the raw body, streamed from disk (never read whole).
        ``on_bytes(n)`` is called as each ``n`` bytes are read to be sent (from a thread)."""
        session = self._open()
        try:
            with _CountingReader(file, on_bytes) if on_bytes else file.open("rb") as f:
                async with session.post(
                    self._base_url + path,
                    data=f,
                    params=params,
                    headers={"Content-Type": content_type},
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=self._timeout),
                ) as response:
                    return Reply(response.status, await response.read(), None, None, False)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailedError(
                f"POST {path}: no answer from {self._base_url} ({type(exc).__name__}: {exc})"
            ) from exc

    async def lines(self, path: str, *, headers: dict[str, str]) -> AsyncIterator[bytes]:
        """The body of a long-lived GET (an event stream), line by line. An error status
        raises its APIError; a dropped connection ConnectionFailedError."""
        session = self._open()
        try:
            async with session.get(
                self._base_url + path,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as response:
                if response.status >= 400:
                    data = await response.read()
                    raise Reply(response.status, data, None, None, False).error()
                async for line in response.content:
                    yield line
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailedError(
                f"GET {path}: connection to {self._base_url} lost ({type(exc).__name__}: {exc})"
            ) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class _CountingReader(io.BufferedReader):
    """A file opened for reading that reports the bytes read from it: aiohttp sends it as
    a file (its size known, so with a Content-Length) and reads it in chunks, in a thread."""

    def __init__(self, path: Path, on_bytes: Callable[[int], object]) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._on_bytes = on_bytes

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if data:
            self._on_bytes(len(data))
        return data
