"""A small HTTP/1.1 proxy for tests: records every request, injects faults at random.

Faults (each a probability, drawn from a seeded ``random.Random``):

- ``p429`` / ``p503``: answer 429 (``Retry-After: 0``) / 503 without forwarding;
- ``p_drop_before``: close the connection without forwarding (the server never saw it);
- ``p_drop_after``: forward, then close without answering (the server DID apply it:
  only an Idempotency-Key replay makes the retry safe);
- ``p_op503``: for a ``/v1/batch`` request, hold back some operations and answer them
  ``503`` per operation while forwarding the rest. The held-back operations are chosen
  by the request's Idempotency-Key, so a retry of the same request is the same request.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

_FORWARD = (
    "authorization",
    "content-type",
    "idempotency-key",
    "accept",
    "x-batch-id",
    "prefer",
)
_BACK = ("content-type", "retry-after", "idempotent-replayed", "x-batch-id", "location")


async def read_request(reader: asyncio.StreamReader) -> Seen:
    """The next HTTP/1.1 request on ``reader`` (a Content-Length body; raises
    IncompleteReadError when the client closed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Seen(method, path, headers, body)


@dataclass
class Seen:
    """One request as the proxy received it, and what it did with it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    fault: str | None = None

    def operations(self) -> list[dict[str, Any]]:
        """The operations of a /v1/batch body."""
        ops: list[dict[str, Any]] = orjson.loads(self.body)["operations"]
        return ops


@dataclass
class FaultProxy:
    """Listen on a free port and forward to ``upstream`` (see the module docstring)."""

    upstream: str
    seed: int = 0
    p429: float = 0.0
    p503: float = 0.0
    #: Answer this many requests (the first ones) 408 REQUEST_TIMEOUT without forwarding
    #: them, and close the connection: what the server does when a body stalls.
    first_408: int = 0
    p_drop_before: float = 0.0
    p_drop_after: float = 0.0
    p_op503: float = 0.0
    retry_after: str = "0"
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def start(self) -> None:
        """Start listening; ``self.url`` is the proxy's base URL."""
        self._rng = random.Random(self.seed)
        self._session = aiohttp.ClientSession()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Stop listening and close the upstream pool."""
        self._server.close()
        await self._session.close()

    def batches(self) -> list[Seen]:
        """The /v1/batch requests that reached the server."""
        return [
            s
            for s in self.seen
            if s.path == "/v1/batch" and s.fault in (None, "op503", "drop_after")
        ]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                seen = await read_request(reader)
                self.seen.append(seen)
                if not await self._answer(seen, writer):
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _answer(self, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if self.first_408 > 0:
            self.first_408 -= 1
            seen.fault = "408"
            data = orjson.dumps(
                {"error": {"code": "REQUEST_TIMEOUT", "message": "injected", "details": {}}}
            )
            self._write(
                writer, 408, {"content-type": "application/json", "connection": "close"}, data
            )
            return False
        draw = self._rng.random()
        for fault, p in (
            ("429", self.p429),
            ("503", self.p503),
            ("drop_before", self.p_drop_before),
            ("drop_after", self.p_drop_after),
        ):
            if draw < p:
                seen.fault = fault
                break
            draw -= p
        if seen.fault == "drop_before":
            return False
        if seen.fault in ("429", "503"):
            code = "RATE_LIMITED" if seen.fault == "429" else "SERVICE_UNAVAILABLE"
            data = orjson.dumps({"error": {"code": code, "message": "injected", "details": {}}})
            extra = {"retry-after": self.retry_after, "content-type": "application/json"}
            self._write(writer, int(seen.fault), extra, data)
            return True
        held: list[int] = []
        body = seen.body
        if seen.path == "/v1/batch" and self.p_op503 > 0:
            held, body = self._hold_back(seen)
            if held and seen.fault is None:
                seen.fault = "op503"
        headers = {k: v for k, v in seen.headers.items() if k in _FORWARD}
        async with self._session.request(
            seen.method, self.upstream + seen.path, data=body, headers=headers
        ) as response:
            status, data = response.status, await response.read()
            back = {k.lower(): v for k, v in response.headers.items() if k.lower() in _BACK}
        if seen.fault == "drop_after":
            return False
        if held:
            status, data = self._splice(seen, held, status, data)
        self._write(writer, status, back, data)
        return True

    def _hold_back(self, seen: Seen) -> tuple[list[int], bytes]:
        request = orjson.loads(seen.body)
        ops = request["operations"]
        rng = random.Random(f"{self.seed}:{seen.headers.get('idempotency-key')}")
        if len(ops) < 2 or rng.random() >= self.p_op503:
            return [], seen.body
        held = sorted(rng.sample(range(len(ops)), max(1, len(ops) // 10)))
        request["operations"] = [op for i, op in enumerate(ops) if i not in set(held)]
        return held, orjson.dumps(request)

    def _splice(self, seen: Seen, held: list[int], status: int, data: bytes) -> tuple[int, bytes]:
        answer = orjson.loads(data)
        if "results" not in answer:
            return status, data
        total = len(seen.operations())
        forwarded = iter(answer["results"])
        results = []
        for i in range(total):
            if i in held:
                error = {"code": "SERVICE_UNAVAILABLE", "message": "injected", "details": {}}
                results.append({"index": i, "status": 503, "error": error})
            else:
                r = next(forwarded)
                r["index"] = i
                results.append(r)
        answer["results"] = results
        return 207, orjson.dumps(answer)

    def _write(
        self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], data: bytes
    ) -> None:
        lines = [f"HTTP/1.1 {status} X"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"content-length: {len(data)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
