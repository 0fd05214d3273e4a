"""What the server benchmarks share (run them as scripts; this directory is then on
``sys.path``): a ``batchops serve`` subprocess and its API key (bench/server.py,
bench/updates.py, bench/imports.py), the client that posts batches, and the raw tables
the peers write to."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

__all__ = [
    "PgCpu",
    "ServerProcess",
    "asgi_request",
    "bench_database",
    "free_port",
    "in_process_app",
    "make_key",
    "open_raw_sqlite",
    "pg_raw_table",
    "post_batches",
    "search_caught_up",
    "server_env",
    "server_options",
]

# A records-shaped table without search index or GIN: what the raw peers write to.
_RAW_COLUMNS = (
    "tenant TEXT, collection TEXT, id TEXT, data {json}, version INT, created_at TEXT, "
    "updated_at TEXT, PRIMARY KEY (tenant, collection, id)"
)


def record_data(i: int) -> dict[str, Any]:
    """The data of the ``i``-th record the server benches create (~130 bytes of JSON)."""
    return {
        "name": f"person {i}",
        "email": f"p{i}@example.com",
        "team": ["core", "web"][i % 2],
        "age": 20 + i % 50,
        "bio": "likes bulk APIs and fast batches",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``with ServerProcess(url, dir) as s:`` — started (rate limits off), then SIGTERMed."""

    def __init__(self, db_url: str, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.db_url, self.workdir, self.extra_env = db_url, workdir, extra_env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        env = {
            **os.environ,
            "BATCHOPS_RATE_LIMIT_REQUESTS": "0",
            "BATCHOPS_RATE_LIMIT_OPERATIONS": "0",
            "BATCHOPS_DRAIN_DELAY_S": "0",  # stop at once: no load balancer to tell
            "BATCHOPS_DATA_DIR": str(self.workdir / "uploads"),
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchops",
                "serve",
                "--db",
                self.db_url,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class PgCpu:
    """CPU seconds PostgreSQL's processes on this machine spent inside the block (psutil):
    ``with PgCpu() as cpu: …`` then ``cpu.seconds``. The server's pooled backends live
    for the whole run; a process that exits inside the block (an autovacuum worker) is
    counted only up to its last sample, so this is a lower bound."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: dict[int, float] = {}

    @staticmethod
    def _sample() -> dict[int, float]:
        import psutil

        out = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            if proc.info["name"] == "postgres" and proc.info["cpu_times"] is not None:
                times = proc.info["cpu_times"]
                out[proc.pid] = times.user + times.system
        return out

    def __enter__(self) -> PgCpu:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        self.seconds = sum(cpu - self._start.get(pid, 0.0) for pid, cpu in end.items())


def search_caught_up(url: str, tenant: str | None = None) -> float:
    """PostgreSQL: seconds until no row (of ``tenant``) is above the search index's
    watermark (store/pg_search.py)."""
    import psycopg

    where = "tenant = %s AND " if tenant is not None else ""
    params = (tenant,) if tenant is not None else ()
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('search_watermark')").fetchone() == (None,):
            return 0.0  # a build from before migration 0007 (served for an A/B)
        while conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM records, search_watermark w "
            f"WHERE {where}txid >= w.done)",
            params,
        ).fetchone() != (False,):
            time.sleep(0.05)
    return time.perf_counter() - t0


def server_options(parser: argparse.ArgumentParser) -> None:
    """``--db`` (the database; default a fresh SQLite file per run) and ``--env`` (for the
    server process: ``PYTHONPATH=<tree>/src`` serves another build to the same client).
    ``server_env(args)`` reads the latter back."""
    parser.add_argument("--db", default=None, help="postgresql://… (default: a fresh SQLite file)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="NAME=VALUE for the server, e.g. PYTHONPATH=<git archive of a commit>/src to "
        "measure another build with the same client",
    )


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The ``--env`` items of :func:`server_options` as a dict."""
    return dict(item.split("=", 1) for item in args.env)


@contextmanager
def bench_database(db: str | None, extra_env: dict[str, str]) -> Iterator[tuple[Path, str, str]]:
    """A fresh working directory, the database URL (``db``, else a SQLite file in that
    directory) and an API key of a new tenant on it: ``(workdir, db_url, key)``."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db_url = db or f"sqlite:///{workdir / 'bench.db'}"
        yield workdir, db_url, make_key(db_url, workdir, f"bench-{uuid.uuid4().hex[:6]}", extra_env)


def make_key(
    db_url: str, workdir: Path, tenant: str, extra_env: dict[str, str] | None = None
) -> str:
    """A new API key for ``tenant`` (via ``batchops keys create``), with the server's
    ``extra_env``: the build served (``PYTHONPATH=<tree>/src``) is the one that migrates
    the database."""
    out = subprocess.run(
        [sys.executable, "-m", "batchops", "keys", "create", "--tenant", tenant, "--db", db_url],
        cwd=workdir,
        env={**os.environ, **(extra_env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def post_batches(
    url: str, key: str, bodies: list[bytes], clients: int
) -> tuple[float, list[float]]:
    """POST every body to ``/v1/batch`` from ``clients`` concurrent clients (each must
    answer 200): the elapsed seconds and each request's latency."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            async with session.post(f"{url}/v1/batch", data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - t0, latencies


def open_raw_sqlite(path: Path) -> sqlite3.Connection:
    """A new SQLite file in WAL mode (synchronous=NORMAL, as the store) with the table
    ``raw``; autocommit, so the caller writes its own BEGIN/COMMIT."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"CREATE TABLE raw ({_RAW_COLUMNS.format(json='TEXT')})")
    return conn


@contextmanager
def pg_raw_table(conn: Any) -> Iterator[str]:
    """The name of a new raw table on the psycopg connection ``conn``, dropped after."""
    table = f"raw_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE TABLE {table} ({_RAW_COLUMNS.format(json='JSONB')})")
    try:
        yield table
    finally:
        conn.execute(f"DROP TABLE {table}")


@contextlib.asynccontextmanager
async def in_process_app() -> AsyncIterator[tuple[Any, list[tuple[bytes, bytes]]]]:
    """The app on a fresh SQLite database in THIS process (role ``api``: no job runner),
    and the ASGI headers of a key of its own (JSON bodies): to profile the server's code
    without a socket or another process (bench/server_cpu.py, graphql_batching.py)."""
    from batchops.server.app import create_app  # the in-process benches alone need it
    from batchops.server.auth import create_api_key
    from batchops.server.settings import Settings

    workdir = tempfile.mkdtemp()
    app = create_app(
        Settings(db_url=f"sqlite:///{workdir}/bench.db", print_first_key=False, role="api")
    )
    async with app.router.lifespan_context(app):
        store = app.state.services.store
        key, _ = await store.run(lambda tx: create_api_key(tx, "bench"))
        yield (
            app,
            [
                (b"authorization", f"Bearer {key}".encode()),
                (b"content-type", b"application/json"),
            ],
        )


async def asgi_request(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[list[int], bytes]:
    """One request straight into ``app`` (ASGI, no socket): the statuses it started and
    the body it sent. The client never goes away while the app answers."""
    statuses: list[int] = []
    chunks: list[bytes] = []
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return statuses, b"".join(chunks)
