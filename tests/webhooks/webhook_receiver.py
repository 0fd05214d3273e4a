"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1 that verifies every
signature the way docs/jobs.md tells receivers to, and can answer 500 a few times first."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiohttp import web


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: int = 300
) -> bool:
    """The verification snippet of docs/jobs.md, verbatim."""
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False  # too old (or from the future): a replay
    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@dataclass
class Receiver:
    """What the receiver saw. ``fail_first``: answer 500 to that many (valid) requests;
    ``delay_s``: answer each valid request that long after counting it in ``hits``."""

    url: str
    secret: str
    fail_first: int = 0
    status: int = 204
    delay_s: float = 0.0
    hits: int = 0
    rejected: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def wait_hits(self, count: int, timeout_s: float = 15) -> None:
        """Until ``count`` correctly signed requests arrived (whatever the answer)."""
        deadline = time.monotonic() + timeout_s
        while self.hits < count:
            assert time.monotonic() < deadline, f"{self.hits} hits of {count}"
            await asyncio.sleep(0.01)

    async def wait_accepted(self, count: int, timeout_s: float = 15) -> list[dict[str, Any]]:
        """Until ``count`` payloads were accepted (answered 2xx)."""
        deadline = time.monotonic() + timeout_s
        while len(self.accepted) < count:
            assert time.monotonic() < deadline, f"accepted {len(self.accepted)} of {count}"
            await asyncio.sleep(0.02)
        return self.accepted


@asynccontextmanager
async def run_receiver(secret: str, *, fail_first: int = 0) -> AsyncIterator[Receiver]:
    """Serve on a free loopback port while the block runs."""
    receiver = Receiver(url="", secret=secret, fail_first=fail_first)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        receiver.headers.append(dict(request.headers))
        ok = verify(
            receiver.secret,
            request.headers.get("X-Batchops-Timestamp", "0"),
            body,
            request.headers.get("X-Batchops-Signature", ""),
        )
        if not ok:
            receiver.rejected += 1
            return web.Response(status=401, text="bad signature")
        receiver.hits += 1
        hit = receiver.hits
        if receiver.delay_s:
            await asyncio.sleep(receiver.delay_s)
        if hit <= receiver.fail_first:
            return web.Response(status=500, text="try again")
        receiver.accepted.append(orjson.loads(body))
        return web.Response(status=receiver.status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def wait_deliveries(
    client: httpx.AsyncClient,
    path: str,
    *,
    count: int = 1,
    timeout_s: float = 15,
) -> list[dict[str, Any]]:
    """GET ``path`` (a deliveries list) until ``count`` deliveries have ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(path)
        assert response.status_code == 200, response.text
        deliveries: list[dict[str, Any]] = response.json()["deliveries"]
        if len([d for d in deliveries if d["state"] != "pending"]) >= count:
            return deliveries
        assert time.monotonic() < deadline, f"deliveries still pending: {deliveries}"
        await asyncio.sleep(0.02)
