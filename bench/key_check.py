"""What "revocation everywhere" costs: the key check in every unit of work, A/B.

A revoked key is refused on the next request on every process because every unit of work
a request runs first looks its key up by primary key, in the same transaction
(``batchops.server.auth.KeyCheckingStore``). This measures that lookup's share of the
smallest requests, where it weighs most: a single-record GET and a single-record PATCH,
driven straight through ASGI (no sockets, no HTTP client) so the figure is server CPU.
Arms alternate in one process (the check on, the check off by swapping
``KeyCheckingStore.run`` for the inner store's), ``--rounds`` times; medians.

    .venv/bin/python bench/key_check.py                     # SQLite
    .venv/bin/python bench/key_check.py --db postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import TypeVar

import orjson

from _serve import asgi_request
from batchops.server import auth
from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.settings import Settings
from batchops.store.base import Tx

T = TypeVar("T")
_CHECKED = auth.KeyCheckingStore.run


async def _unchecked(self: auth.KeyCheckingStore, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
    return await self.inner.run(fn, retries=retries)


async def main(db: str | None, requests: int, rounds: int) -> None:
    workdir = tempfile.mkdtemp()
    url = db or f"sqlite:///{workdir}/bench.db"
    app = create_app(
        Settings(
            db_url=url,
            print_first_key=False,
            role="api",
            rate_limit_requests_per_minute=0,
            rate_limit_operations_per_minute=0,
        )
    )
    async with app.router.lifespan_context(app):
        store = app.state.services.store
        key, _ = await store.run(lambda tx: create_api_key(tx, f"keycheck-{time.time_ns()}"))
        auth_header = (b"authorization", f"Bearer {key}".encode())

        async def call(method: str, path: str, body: bytes = b"") -> bytes:
            headers = [auth_header, (b"content-type", b"application/json")]
            statuses, answer = await asgi_request(app, method, path, headers, body)
            assert statuses[0] in (200, 201), (statuses, answer)
            return answer

        created = orjson.loads(
            await call("POST", "/v1/collections/people/records", orjson.dumps({"data": {"n": 0}}))
        )
        path = f"/v1/collections/people/records/{created['id']}"
        patch = orjson.dumps({"data": {"n": 1}})

        async def get() -> None:
            await call("GET", path)

        async def update() -> None:
            await call("PATCH", path, patch)

        results: dict[tuple[str, str], list[float]] = {}
        for what, fn in [("GET", get), ("PATCH", update)]:
            for _ in range(200):
                await fn()  # warm
            for _ in range(rounds):
                for arm, run in [("checked", _CHECKED), ("unchecked", _unchecked)]:
                    auth.KeyCheckingStore.run = run  # type: ignore[method-assign]
                    cpu = time.process_time()
                    for _ in range(requests):
                        await fn()
                    spent = (time.process_time() - cpu) / requests * 1e6
                    results.setdefault((what, arm), []).append(spent)
            auth.KeyCheckingStore.run = _CHECKED  # type: ignore[method-assign]
    backend = "postgresql" if db else "sqlite"
    print(f"{backend}: server CPU a request, medians of {rounds} alternating rounds of {requests}")
    for what in ("GET", "PATCH"):
        checked = statistics.median(results[(what, "checked")])
        unchecked = statistics.median(results[(what, "unchecked")])
        print(
            f"  {what:5} checked {checked:7.1f} µs, unchecked {unchecked:7.1f} µs: "
            f"the check costs {checked - unchecked:+.1f} µs ({checked / unchecked - 1:+.1%})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="postgresql://… (default: a SQLite file)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.requests, args.rounds))
