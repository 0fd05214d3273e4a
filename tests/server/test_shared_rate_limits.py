"""Rate limits shared through Redis (``--redis``), and what happens when Redis is not there.

Redis: ``BATCHOPS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/11``, a database of
these tests' own, flushed before each test). Counters are per API key, and every test makes
keys of its own, so tests never share a budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from fastapi import FastAPI

from batchops.server import ratelimit
from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.deps import Services
from tests.server.conftest import settings_for
from tests.server.test_records_api import PEOPLE
from tests.server.test_serve_process import Server, free_port, new_key

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The tests' own Redis database, empty."""
    url = os.environ.get("BATCHOPS_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required for these tests and is unreachable at {url}: {exc}")
    try:
        yield url
    finally:
        client.close()


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


class Cluster:
    """App instances on one database, as separate processes would be, and one key."""

    def __init__(self, apps: list[FastAPI], key: str, stack: AsyncExitStack) -> None:
        self.apps, self.key = apps, key
        self.clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://test",
                headers={"Authorization": f"Bearer {key}"},
            )
            for app in apps
        ]
        for client in self.clients:
            stack.push_async_callback(client.aclose)

    def limiter(self, i: int) -> ratelimit.KeyRateLimits:
        services: Services = self.apps[i].state.services
        return services.limiter


@asynccontextmanager
async def cluster(db_url: str, n: int = 2, **overrides: object) -> AsyncIterator[Cluster]:
    settings = settings_for(db_url, role="api", **overrides)
    async with AsyncExitStack() as stack:
        apps = [await stack.enter_async_context(running(create_app(settings))) for _ in range(n)]
        store = apps[0].state.services.store
        key, _ = await store.run(lambda tx: create_api_key(tx, f"t_{uuid.uuid4().hex[:10]}"))
        yield Cluster(apps, key, stack)


def creates(n: int) -> dict[str, object]:
    return {"operations": [{"type": "create", "collection": "people", "data": {}}] * n}


async def test_two_app_instances_on_one_redis_let_exactly_n_requests_through(
    db_url: str, redis_url: str
) -> None:
    async with cluster(db_url, redis_url=redis_url, rate_limit_requests_per_minute=5) as c:
        statuses = [(await c.clients[i % 2].get(PEOPLE)).status_code for i in range(15)]
    assert statuses.count(200) == 5
    assert statuses.count(429) == 10


async def test_two_app_instances_without_redis_each_let_the_whole_budget_through(
    db_url: str,
) -> None:
    # What --redis fixes: the same traffic as above, counted per process.
    async with cluster(db_url, rate_limit_requests_per_minute=5) as c:
        statuses = [(await c.clients[i % 2].get(PEOPLE)).status_code for i in range(15)]
    assert statuses.count(200) == 10


async def test_a_batch_consumes_its_operation_count_of_the_shared_budget(
    db_url: str, redis_url: str
) -> None:
    async with cluster(db_url, redis_url=redis_url, rate_limit_operations_per_minute=10) as c:
        first = await c.clients[0].post("/v1/batch", json=creates(6))
        refused = await c.clients[1].post("/v1/batch", json=creates(6))
        rest = await c.clients[1].post("/v1/batch", json=creates(4))
        listed = await c.clients[0].get(PEOPLE, params={"limit": "100"})
    assert [first.status_code, refused.status_code, rest.status_code] == [200, 429, 200]
    assert first.headers["RateLimit"].endswith('"operations";r=4;t=60')
    assert '"operations";r=4;' in refused.headers["RateLimit"]
    assert len(listed.json()["records"]) == 10


async def test_with_redis_down_requests_are_answered_under_a_per_process_limit_and_a_warning(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/11"
    with caplog.at_level(logging.WARNING, logger="batchops.ratelimit"):
        async with cluster(
            sqlite_url, n=1, redis_url=closed, rate_limit_requests_per_minute=3
        ) as c:
            statuses = [(await c.clients[0].get(PEOPLE)).status_code for _ in range(5)]
            batch = await c.clients[0].post("/v1/batch", json=creates(2))
            failures = c.limiter(0).redis_failures
    assert statuses == [200, 200, 200, 429, 429]
    assert batch.status_code == 429  # the request budget, still counted in the process
    warnings = [r.getMessage() for r in caplog.records if r.name == "batchops.ratelimit"]
    assert len(warnings) == 1  # one warning, not one per request
    assert "unreachable" in warnings[0]
    assert "counted per process" in warnings[0]
    assert failures == 1  # tried once; the others stayed in memory until the retry time


class _Proxy:
    """A TCP proxy to Redis that can be cut (every connection closed, nothing accepted)
    and restored on the same port, or made to hang (accept, never answer)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 6379
        self.db = int(parts.path.strip("/") or 0)
        self.port = free_port()
        self.hang = False
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            if self.hang:
                await reader.read()  # read until the client gives up; answer nothing
                return
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
            self.writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_when_redis_goes_away_mid_run_no_request_fails_and_limits_are_shared_again_after(
    sqlite_url: str,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit, "_RETRY_REDIS_AFTER_S", 0.2)
    proxy = _Proxy(redis_url)
    await proxy.start()
    try:
        with caplog.at_level(logging.WARNING, logger="batchops.ratelimit"):
            async with cluster(
                sqlite_url, redis_url=proxy.url, rate_limit_requests_per_minute=100
            ) as c:
                before = [(await c.clients[i % 2].get(PEOPLE)).status_code for i in range(4)]
                await proxy.cut()
                during = [(await c.clients[i % 2].get(PEOPLE)).status_code for i in range(4)]
                remaining_during = (await c.clients[0].get(PEOPLE)).headers["RateLimit"]
                await proxy.start()
                await asyncio.sleep(0.3)
                after = [(await c.clients[i % 2].get(PEOPLE)).status_code for i in range(2)]
                # Back on Redis: the budget counts the 4 before and the 2 after (the
                # requests of the outage were counted in each process).
                shared = (await c.clients[0].get(PEOPLE)).headers["RateLimit"]
    finally:
        if proxy.server is not None:
            await proxy.cut()
    assert before + during + after == [200] * 10
    # Counted in app 0's memory during the outage: 2 requests before this one, and this one.
    assert remaining_during.startswith('"requests";r=97;')
    assert shared.startswith('"requests";r=93;')
    messages = [r.getMessage() for r in caplog.records if r.name == "batchops.ratelimit"]
    assert any("unreachable" in m for m in messages)
    assert any("answers again" in m for m in messages)


async def test_a_hung_redis_delays_a_request_by_at_most_its_timeout(
    sqlite_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = _Proxy(redis_url)
    proxy.hang = True
    await proxy.start()
    try:
        with caplog.at_level(logging.WARNING, logger="batchops.ratelimit"):
            async with cluster(sqlite_url, n=1, redis_url=proxy.url, redis_timeout_ms=200) as c:
                started = time.monotonic()
                first = await c.clients[0].get(PEOPLE)
                first_s = time.monotonic() - started
                started = time.monotonic()
                second = await c.clients[0].get(PEOPLE)
                second_s = time.monotonic() - started
    finally:
        await proxy.cut()
    assert (first.status_code, second.status_code) == (200, 200)
    assert first_s < 1.0  # one Redis call timed out (0.2 s); the rest went to memory
    assert second_s < 0.1  # not tried again before the retry time
    assert any("unreachable" in r.getMessage() for r in caplog.records)


_PARAM = r'[a-z][a-z0-9_.*-]*=(?:\d+|"[^"\\]*")'
_ITEM = rf'"(?:requests|operations)"(?:;{_PARAM})+'
"""One Item of a Structured Field List (RFC 9651) as these headers use it: a String and
parameters whose values are Integers or Strings."""


def _sf_list(value: str) -> list[tuple[str, dict[str, str]]]:
    """``value`` parsed as a List of such Items: [(name, {param: value})]."""
    assert re.fullmatch(rf"{_ITEM}(?:, {_ITEM})*", value), value
    members = []
    for member in value.split(", "):
        name, *params = member.split(";")
        members.append((name.strip('"'), dict(p.split("=", 1) for p in params)))
    return members


async def test_ratelimit_headers_follow_the_ietf_draft_structured_fields(
    sqlite_url: str, redis_url: str
) -> None:
    async with cluster(
        sqlite_url,
        n=1,
        redis_url=redis_url,
        rate_limit_requests_per_minute=50,
        rate_limit_operations_per_minute=1000,
    ) as c:
        plain = await c.clients[0].get(PEOPLE)
        batch = await c.clients[0].post("/v1/batch", json=creates(3))
    policy = _sf_list(plain.headers["RateLimit-Policy"])
    assert policy == [
        ("requests", {"q": "50", "w": "60"}),
        ("operations", {"q": "1000", "w": "60", "batchops-unit": '"operations"'}),
    ]
    assert _sf_list(plain.headers["RateLimit"]) == [("requests", {"r": "49", "t": "60"})]
    assert batch.headers["RateLimit-Policy"] == plain.headers["RateLimit-Policy"]
    assert _sf_list(batch.headers["RateLimit"]) == [
        ("requests", {"r": "48", "t": "60"}),
        ("operations", {"r": "997", "t": "60"}),
    ]
    for retired in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert retired not in plain.headers


async def test_postgresql_without_redis_warns_at_start_that_limits_are_per_process(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="batchops.server"):
        async with cluster(pg_url, n=1):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.name == "batchops.server"]
    assert len(warnings) == 1
    assert "rate limits are per process" in warnings[0]
    assert "--redis" in warnings[0]


async def test_several_workers_on_sqlite_without_redis_warn_at_start_that_limits_are_per_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="batchops.server"):
        async with cluster(f"sqlite:///{tmp_path / 'w.db'}", n=1, workers=2):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.name == "batchops.server"]
    assert len(warnings) == 1
    assert "rate limits are per process: with --workers 2" in warnings[0]


@pytest.mark.parametrize("where", ["sqlite", "postgresql with redis"])
async def test_no_per_process_warning_where_one_process_serves_or_redis_shares_the_limits(
    where: str,
    sqlite_url: str,
    redis_url: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if where == "sqlite":
        url, overrides = sqlite_url, {}
    else:
        url, overrides = request.getfixturevalue("pg_url"), {"redis_url": redis_url}
    with caplog.at_level(logging.WARNING, logger="batchops.server"):
        async with cluster(url, n=1, **overrides):
            pass
    assert not [r for r in caplog.records if r.name == "batchops.server"]


@pytest.mark.slow
def test_two_serve_processes_with_redis_let_exactly_n_of_3n_requests_through(
    tmp_path: Path, redis_url: str
) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["--redis", redis_url, "--rate-limit-requests", "10"]
    with Server(db, tmp_path, args).running() as a, Server(db, tmp_path, args).running() as b:
        key = new_key(a)
        auth = {"Authorization": f"Bearer {key}"}
        statuses = [
            httpx.get(f"{srv.url}{PEOPLE}", headers=auth).status_code for srv in [a, b] * 15
        ]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 20
