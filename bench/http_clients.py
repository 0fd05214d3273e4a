"""Benchmark: client CPU per small HTTP request, aiohttp vs httpx (sniffio installed).

Why: the SDK's transport is chosen by this figure (docs/benchmarks.md). The server
is a trivial Starlette app under uvicorn in a *subprocess*, so its CPU is not counted;
the client's CPU is ``time.process_time()`` of this process over N sequential requests
on one kept-alive connection (a warm-up of 200 requests first).

Run: ``.venv/bin/python bench/http_clients.py`` (``-n 5000 --rounds 3``).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time

import aiohttp
import httpx

WARMUP = 200


def _serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def ping(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    app = Starlette(routes=[Route("/ping", ping)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _aiohttp(url: str, n: int) -> float:
    async with aiohttp.ClientSession() as session:
        for _ in range(WARMUP):
            async with session.get(url) as r:
                await r.read()
        t0 = time.process_time()
        for _ in range(n):
            async with session.get(url) as r:
                await r.read()
        return (time.process_time() - t0) / n


async def _httpx(url: str, n: int) -> float:
    async with httpx.AsyncClient() as client:
        for _ in range(WARMUP):
            (await client.get(url)).read()
        t0 = time.process_time()
        for _ in range(n):
            (await client.get(url)).read()
        return (time.process_time() - t0) / n


def main() -> None:
    """Start the server, measure each client ``--rounds`` times, print medians."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        _serve(args.serve)
        return
    import sniffio  # noqa: F401 - without it httpx is 16-26% slower (docs/benchmarks.md)

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    url = f"http://127.0.0.1:{port}/ping"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        figures: dict[str, list[float]] = {"aiohttp": [], "httpx": []}
        for _ in range(args.rounds):
            figures["aiohttp"].append(asyncio.run(_aiohttp(url, args.n)))
            figures["httpx"].append(asyncio.run(_httpx(url, args.n)))
        print(f"client CPU per request, {args.n} sequential requests, median of {args.rounds}:")
        for name, values in figures.items():
            runs = ", ".join(f"{v * 1e6:.0f}" for v in values)
            print(f"  {name:8s} {statistics.median(values) * 1e6:7.0f} µs   (runs: {runs})")
        ratio = statistics.median(figures["httpx"]) / statistics.median(figures["aiohttp"])
        print(f"  httpx / aiohttp = {ratio:.1f}x")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
