"""Reading request bodies on every route: gzip bombs are refused with bounded memory,
concatenated gzip members are read and trailing garbage is refused, a stalled body is
answered 408, and every 405 says which methods the path takes.

In-process tests use the ``service`` fixture (both backends); what needs a real socket or
a real process's memory runs ``batchops serve`` (SQLite: the backend plays no part there).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
from click.testing import CliRunner
from fastapi.routing import APIRoute
from starlette.routing import Route

from batchops.server.app import create_app
from batchops.server.settings import Settings
from tests.jobs.conftest import stored_upload, uploads_left
from tests.server.conftest import Service, settings_for
from tests.server.test_serve_process import Server, new_key

MiB = 1 << 20
JSON = {"Content-Type": "application/json"}
STANDARD_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Service settings with uploads in the test's directory; ``@pytest.mark.limits``
    changes them for a test."""
    overrides: dict[str, object] = {"data_dir": str(tmp_path / "uploads"), "role": "api"}
    marker = request.node.get_closest_marker("limits")
    if marker is not None:
        overrides.update(marker.kwargs)
    return settings_for(db_url, **overrides)


def gzip_bomb(inflated_mib: int) -> bytes:
    """A valid gzip body of ``inflated_mib`` MiB of zeros at deflate's best ratio (~1000x),
    built in well under a second: each 1 MiB block is compressed once, after a full flush
    (so every block compresses to the same bytes), and repeated."""
    block = bytes(MiB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    header, piece = first[:10], first[10:]
    end = deflate.flush()[:-8]  # the final empty block; the trailer is rebuilt below
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(block, crc)
    trailer = struct.pack("<II", crc, (inflated_mib * MiB) & 0xFFFFFFFF)
    return header + piece * inflated_mib + end + trailer


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A request body sent as exactly these ASGI messages."""
    for part in parts:
        yield part


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    error: dict[str, Any] = body["error"]
    return error


# -- gzip: bombs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/imports?collection=bomb&format=ndjson", "INFLATION_RATIO_EXCEEDED"),
        # The batch contract answers every oversized batch as BATCH_TOO_LARGE; the details
        # still say it was the inflation ratio.
        ("/v1/batch", "BATCH_TOO_LARGE"),
    ],
)
async def test_a_gzip_bomb_is_refused_by_its_inflation_ratio_after_a_few_mib(
    service: Service, path: str, code: str
) -> None:
    bomb = gzip_bomb(8)  # 8 MiB: under both byte limits, so only the ratio can refuse it
    media = "application/x-ndjson" if "imports" in path else "application/json"
    response = await service.client.post(
        path, content=bomb, headers={"Content-Type": media, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["details"]["limit"] == 100
    assert error["details"]["inflated_bytes"] <= 2 * MiB
    assert error["details"]["actual"] > 100
    assert await uploads_left(service) == []


async def test_a_gzip_import_with_an_ordinary_ratio_is_accepted_whole(service: Service) -> None:
    lines = b"".join(
        orjson.dumps({"n": i, "h": zlib.crc32(str(i).encode()), "s": f"{i * 7919:x}"}) + b"\n"
        for i in range(100_000)
    )
    body = gzip.compress(lines)
    assert len(lines) > 3 * MiB
    assert len(lines) / len(body) < 100
    response = await service.client.post(
        "/v1/imports?collection=fine&format=ndjson",
        content=body,
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 202, response.text
    assert await stored_upload(service, response.json()["id"]) == lines


@pytest.mark.limits(max_inflation_ratio=0, max_upload_bytes=4 * MiB)
async def test_a_ratio_of_zero_turns_the_guard_off_and_the_byte_limit_still_holds(
    service: Service,
) -> None:
    response = await service.client.post(
        "/v1/imports?collection=bomb&format=ndjson",
        content=gzip_bomb(16),
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413, response.text
    assert error_of(response)["code"] == "UPLOAD_TOO_LARGE"
    assert await uploads_left(service) == []


@pytest.mark.limits(max_inflation_ratio=1.5)
async def test_the_ratio_limit_is_a_setting(service: Service) -> None:
    pad = "".join(f"{zlib.crc32(str(i).encode()):08x}" for i in range(250_000))
    batch = orjson.dumps(
        {"operations": [{"type": "create", "collection": "c", "data": {"pad": pad}}]}
    )
    body = gzip.compress(batch)
    assert 1.5 < len(batch) / len(body) < 2  # hex digits: ~1.75x
    response = await service.client.post(
        "/v1/batch",
        content=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413, response.text
    assert error_of(response)["details"]["limit"] == 1.5


# -- gzip: members, garbage, truncation ------------------------------------------------------


def members(data: bytes, *cuts: int) -> list[bytes]:
    """``data`` cut at ``cuts``, each piece its own gzip member."""
    bounds = [0, *cuts, len(data)]
    return [gzip.compress(data[a:b]) for a, b in itertools.pairwise(bounds)]


RECORD = orjson.dumps({"data": {"name": "Ada", "team": "core", "bio": "x" * 300}})


@pytest.mark.parametrize(
    "split",
    [
        pytest.param(lambda ms: [b"".join(ms)], id="one-message"),
        pytest.param(lambda ms: list(ms), id="a-message-per-member"),
        # The second member's magic is cut between two messages.
        pytest.param(lambda ms: [ms[0] + ms[1][:1], ms[1][1:] + b"".join(ms[2:])], id="cut-magic"),
        pytest.param(lambda ms: [bytes([b]) for b in b"".join(ms)], id="byte-by-byte"),
    ],
)
async def test_concatenated_gzip_members_are_read_as_one_body(
    service: Service, split: Callable[[list[bytes]], list[bytes]]
) -> None:
    parts = split(members(RECORD, 10, 200))
    response = await service.client.post(
        "/v1/collections/people/records",
        content=chunks(*parts),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"] == orjson.loads(RECORD)["data"]


async def test_a_multi_member_gzip_batch_and_import_are_read_whole(service: Service) -> None:
    batch = orjson.dumps(
        {"operations": [{"type": "create", "collection": "m", "data": {"i": i}} for i in range(50)]}
    )
    response = await service.client.post(
        "/v1/batch",
        content=b"".join(members(batch, 100, 1000)),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["succeeded"] == 50

    csv = b"id,name\n" + b"".join(b"r%d,name %d\n" % (i, i) for i in range(1000))
    response = await service.client.post(
        "/v1/imports?collection=m2&format=csv",
        content=b"".join(members(csv, 7, 5000, 9000)),
        headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 202, response.text
    assert await stored_upload(service, response.json()["id"]) == csv


@pytest.mark.parametrize(
    "trailing",
    [
        pytest.param(b"garbage", id="not-gzip"),
        pytest.param(b"\x00" * 8, id="zero-padding"),
        pytest.param(b"\n", id="a-newline"),
        pytest.param(b"\x1f", id="half-a-gzip-magic"),
        pytest.param(b"\x1f\x8bnot a member", id="a-broken-second-member"),
        pytest.param(gzip.compress(b"  ")[:-4], id="a-truncated-second-member"),
    ],
)
@pytest.mark.parametrize(
    "path", ["/v1/collections/people/records", "/v1/batch", "/v1/imports?collection=g&format=json"]
)
async def test_anything_but_a_gzip_member_after_a_gzip_body_is_400(
    service: Service, trailing: bytes, path: str
) -> None:
    body = RECORD if "records" in path else b'{"operations": []}' if "batch" in path else b"[]"
    response = await service.client.post(
        path,
        content=gzip.compress(body) + trailing,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"] == {"content_encoding": "gzip"}
    assert await uploads_left(service) == []


async def test_a_truncated_gzip_body_is_still_400(service: Service) -> None:
    response = await service.client.post(
        "/v1/collections/people/records",
        content=gzip.compress(RECORD)[:-5],
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["details"] == {"content_encoding": "gzip"}


# -- 405 with Allow, on every route -----------------------------------------------------------


def _methods_by_path() -> dict[str, set[str]]:
    """Every path of the app and the methods it takes, read from the app itself: the
    OpenAPI document (every FastAPI route, and ``/v1/batch`` documented by hand) and the
    plain Starlette routes (``/v1/batch`` itself, the docs)."""
    app = create_app(Settings(db_url="sqlite:///never-opened.db"))  # not started
    paths: dict[str, set[str]] = {
        path: {method.upper() for method in ops} for path, ops in app.openapi()["paths"].items()
    }
    for route in app.router.routes:
        if isinstance(route, Route) and not isinstance(route, APIRoute) and route.methods:
            paths.setdefault(route.path, set()).update(route.methods)
    return paths


METHODS_BY_PATH = _methods_by_path()
WRONG_METHODS = [
    pytest.param(re.sub(r"\{[^}]+\}", "x1", path), method, allowed, id=f"{method} {path}")
    for path, allowed in METHODS_BY_PATH.items()
    for method in STANDARD_METHODS
    if method not in allowed
]


def test_the_405_table_covers_every_kind_of_route() -> None:
    paths = set(METHODS_BY_PATH)
    for expected in (
        "/v1/collections/{collection}/records",
        "/v1/collections/{collection}/records/{record_id}",
        "/v1/collections/{collection}/search",
        "/v1/batch",
        "/v1/imports",
        "/v1/jobs/{job_id}",
        "/v1/bulk/update",
        "/v1/webhooks",
        "/healthz",
    ):
        assert expected in paths
    assert len(WRONG_METHODS) > 50


@pytest.mark.parametrize(("path", "method", "allowed"), WRONG_METHODS)
async def test_every_405_carries_allow_with_every_method_of_the_path(
    service: Service, path: str, method: str, allowed: set[str]
) -> None:
    response = await service.client.request(method, path)
    assert response.status_code == 405, response.text
    assert set(response.headers["allow"].split(", ")) == allowed
    error = error_of(response)
    assert error["code"] == "METHOD_NOT_ALLOWED"
    assert set(error["details"]["allowed"]) == allowed


# -- the body read timeout, in process --------------------------------------------------------


async def stalls_after(first: bytes) -> AsyncIterator[bytes]:
    """A body that sends ``first`` and then nothing, ever."""
    yield first
    await asyncio.Event().wait()


@pytest.mark.limits(body_read_timeout_s=0.3)
@pytest.mark.parametrize(
    "path",
    [
        "/v1/batch",
        "/v1/collections/people/records",
        "/v1/collections/people/search",
        "/v1/imports?collection=slow&format=ndjson",
        "/v1/webhooks",
    ],
)
async def test_a_stalled_body_is_408_request_timeout_on_every_route(
    service: Service, path: str
) -> None:
    started = time.monotonic()
    async with asyncio.timeout(5):  # without the body timeout: forever
        response = await service.client.post(
            path,
            content=stalls_after(b'{"operati'),
            headers={"Content-Type": "application/json", "Content-Length": "1000"},
        )
    elapsed = time.monotonic() - started
    assert response.status_code == 408, response.text
    assert response.headers["connection"] == "close"
    error = error_of(response)
    assert error["code"] == "REQUEST_TIMEOUT"
    assert error["details"] == {"timeout_s": 0.3}
    assert 0.3 <= elapsed < 1.5
    assert await uploads_left(service) == []


@pytest.mark.limits(body_read_timeout_s=0.3)
async def test_the_timeout_counts_silence_not_the_whole_upload(service: Service) -> None:
    async def steady() -> AsyncIterator[bytes]:
        for i in range(6):  # 6 lines, 0.15 s apart: 0.9 s in all
            await asyncio.sleep(0.15)
            yield orjson.dumps({"i": i}) + b"\n"

    response = await service.client.post(
        "/v1/imports?collection=steady&format=ndjson",
        content=steady(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text


@pytest.mark.limits(body_read_timeout_s=0.2)
async def test_a_request_cancelled_while_reading_stays_cancelled(service: Service) -> None:
    request = asyncio.ensure_future(
        service.client.post("/v1/batch", content=stalls_after(b"{"), headers=JSON)
    )
    await asyncio.sleep(0.05)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request


@pytest.mark.limits(body_read_timeout_s=0)
async def test_a_body_read_timeout_of_zero_turns_the_timeout_off(service: Service) -> None:
    request = asyncio.ensure_future(
        service.client.post("/v1/batch", content=stalls_after(b"{"), headers=JSON)
    )
    done, _ = await asyncio.wait([request], timeout=0.5)
    assert done == set()  # still waiting for the body
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request


# -- settings --------------------------------------------------------------------------------


def test_the_body_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_inflation_ratio == 100
    assert Settings().body_read_timeout_s == 30
    monkeypatch.setenv("BATCHOPS_MAX_INFLATION_RATIO", "0")
    monkeypatch.setenv("BATCHOPS_BODY_READ_TIMEOUT_S", "2.5")
    settings = Settings.from_env()
    assert settings.max_inflation_ratio == 0
    assert settings.body_read_timeout_s == 2.5


def test_serve_takes_the_body_settings_as_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import batchops.server.serve
    from batchops import cli

    seen: list[Settings] = []
    monkeypatch.setattr(
        batchops.server.serve, "serve", lambda settings, **options: seen.append(settings)
    )
    result = CliRunner().invoke(
        cli.main, ["serve", "--max-inflation-ratio", "20", "--body-read-timeout-s", "7"]
    )
    assert result.exit_code == 0, result.output
    assert seen[0].max_inflation_ratio == 20
    assert seen[0].body_read_timeout_s == 7


# -- real server: memory under gzip bombs ------------------------------------------------------


@contextmanager
def real_server(tmp: Path, **env: str) -> Iterator[Server]:
    """``batchops serve`` on SQLite in ``tmp``, with ``BATCHOPS_*`` settings from ``env``."""
    srv = Server(f"sqlite:///{tmp / 'service.db'}", tmp)
    with pytest.MonkeyPatch.context() as mp:  # the child inherits the environment at start
        mp.setenv("BATCHOPS_DATA_DIR", str(tmp / "uploads"))
        mp.setenv("BATCHOPS_RATE_LIMIT_REQUESTS", "0")
        for name, value in env.items():
            mp.setenv(name, value)
        with srv.running():
            yield srv


class PeakRSS:
    """The largest resident set size of a process while the block runs (sampled every 2 ms)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def bombard(url: str, key: str, bomb: bytes, n: int) -> list[httpx.Response]:
    """``n`` gzip bombs posted to /v1/imports at once."""
    responses: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {key}"}) as client:
            responses.append(
                client.post(
                    f"{url}/v1/imports?collection=bomb&format=ndjson",
                    content=bomb,
                    headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
                )
            )

    threads = [threading.Thread(target=post) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.fixture(scope="module")
def bomb_2mb() -> bytes:
    bomb = gzip_bomb(1900)  # ~2 MB of gzip, ~1.9 GiB inflated
    assert 1.9e6 < len(bomb) < 2.1e6
    return bomb


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("env", "code"),
    [
        pytest.param({}, "INFLATION_RATIO_EXCEEDED", id="default-settings"),
        # Without the ratio guard the bytes go to disk up to the upload limit: memory
        # must stay bounded all the same.
        pytest.param(
            {"BATCHOPS_MAX_INFLATION_RATIO": "0", "BATCHOPS_MAX_UPLOAD_BYTES": str(256 * MiB)},
            "UPLOAD_TOO_LARGE",
            id="ratio-guard-off",
        ),
    ],
)
def test_four_concurrent_2mb_gzip_bombs_cost_at_most_50mb_of_server_memory_each(
    tmp_path: Path, bomb_2mb: bytes, env: dict[str, str], code: str
) -> None:
    with real_server(tmp_path, **env) as srv:
        assert srv.proc is not None
        key = new_key(srv)
        # Warm up the upload path (and zlib) with an honest gzip import first.
        warm = httpx.post(
            f"{srv.url}/v1/imports?collection=warm&format=ndjson",
            content=gzip.compress(b'{"i": 1}\n' * 1000),
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": "gzip",
            },
        )
        assert warm.status_code == 202, warm.text
        baseline = psutil.Process(srv.proc.pid).memory_info().rss
        started = time.monotonic()
        with PeakRSS(srv.proc.pid) as rss:
            responses = bombard(srv.url, key, bomb_2mb, 4)
        elapsed = time.monotonic() - started
        extra_mb = (rss.peak - baseline) / 1e6
        print(
            f"\nRSS baseline {baseline / 1e6:.0f} MB, peak {rss.peak / 1e6:.0f} MB "
            f"(+{extra_mb:.0f} MB for 4 bombs) in {elapsed:.1f}s"
        )
        assert extra_mb <= 4 * 50
        assert [r.status_code for r in responses] == [413] * 4, responses[0].text
        assert {r.json()["error"]["code"] for r in responses} == {code}
        left = os.listdir(tmp_path / "uploads")
        assert [name for name in left if name.endswith(".part")] == []
        # Only the warm-up's file may remain (its job may have consumed it already).
        assert len(left) <= 1


# -- real server: the body read timeout --------------------------------------------------------


@pytest.fixture(scope="module")
def timeout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("timeout")
    with real_server(tmp, BATCHOPS_BODY_READ_TIMEOUT_S="1") as srv:
        yield srv, new_key(srv)


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float, bool]:
    """Everything the server sends until it closes the connection (or ``limit_s``)."""
    started = time.monotonic()
    data = b""
    sock.settimeout(0.2)
    while time.monotonic() - started < limit_s:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            continue
        if not piece:
            return data, time.monotonic() - started, True
        data += piece
    return data, time.monotonic() - started, False


def request_head(path: str, key: str, length: int, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [
        "/v1/batch",  # answered ahead of FastAPI's layers
        "/v1/collections/people/records",
        "/v1/imports?collection=slow&format=ndjson",
        "/v1/bulk/update",
    ],
)
def test_a_stalled_body_is_answered_408_and_the_connection_closed(
    timeout_server: tuple[Server, str], path: str
) -> None:
    srv, key = timeout_server
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(request_head(path, key, 1000, "application/json") + b'{"operati')
        data, elapsed, closed = read_until_closed(sock, limit_s=10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data
    assert b"\r\nconnection: close" in head.lower()
    assert orjson.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"
    assert set(orjson.loads(body)["error"]) == {"code", "message", "details"}
    assert closed, "the server kept the connection open"
    assert 0.9 <= elapsed <= 3.0
    uploads = srv.cwd / "uploads"  # (made by the first upload that reaches it)
    assert not uploads.exists() or [n for n in os.listdir(uploads) if n.endswith(".part")] == []


@pytest.mark.slow
def test_a_slow_but_steady_upload_is_not_cut(timeout_server: tuple[Server, str]) -> None:
    srv, key = timeout_server
    body = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(8))
    path = "/v1/imports?collection=steady&format=ndjson"
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(request_head(path, key, len(body), "application/x-ndjson"))
        started = time.monotonic()
        for line in body.splitlines(keepends=True):  # 8 pieces, 0.5 s apart: 4 s in all
            time.sleep(0.5)
            sock.sendall(line)
        assert time.monotonic() - started > 3
        sock.settimeout(10)
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 202 "), data


@pytest.mark.slow
def test_a_stalled_request_does_not_hold_up_the_others(timeout_server: tuple[Server, str]) -> None:
    srv, key = timeout_server
    with socket.create_connection(("127.0.0.1", srv.port)) as stalled:
        stalled.sendall(request_head("/v1/batch", key, 1000, "application/json"))
        response = httpx.get(f"{srv.url}/healthz", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        data, _, closed = read_until_closed(stalled, limit_s=10)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert closed
