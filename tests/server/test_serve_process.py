"""The real ``batchops serve`` in a subprocess, driven over HTTP — including kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A ``batchops serve`` process. It stops at once on SIGTERM (``--drain-delay-s 0``)
    unless ``args`` give a drain delay."""

    def __init__(
        self,
        db_url: str,
        cwd: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.db_url, self.cwd, self.args = db_url, cwd, tuple(args)
        if "--drain-delay-s" not in self.args:
            self.args = ("--drain-delay-s", "0", *self.args)
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.stdout: list[str] = []

    def start(self) -> None:
        self.stdout = []
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
                *self.args,
            ],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # A process group of its own, as under a service manager: a test may signal
            # the whole group (the server and its import workers), never pytest's.
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "server died on start:\n" + "".join(self.stdout)
            try:  # (every role answers /healthz, once its app has started)
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("server did not start:\n" + "".join(self.stdout))

    def _drain(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.stdout.append(line)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    @contextmanager
    def running(self) -> Iterator[Server]:
        """Started, and killed at the end (its workers too) if a test left it running."""
        self.start()
        try:
            yield self
        finally:
            if self.proc is not None and self.proc.poll() is None:
                workers = psutil.Process(self.proc.pid).children(recursive=True)
                self.proc.kill()
                self.proc.wait()
                for worker in workers:
                    with suppress(psutil.NoSuchProcess):
                        worker.kill()


def cli(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "batchops", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    with Server(db_url, tmp_path).running() as srv:
        yield srv


def new_key(server: Server) -> str:
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    key = cli("keys", "create", "--tenant", tenant, "--db", server.db_url, cwd=server.cwd)
    assert key.count("\n") == 1
    assert key.startswith("bo_")
    return key.strip()


def test_first_start_prints_a_working_key_once(tmp_path: Path) -> None:
    srv = Server(f"sqlite:///{tmp_path / 'first.db'}", tmp_path)
    srv.start()
    try:
        time.sleep(0.2)
        lines = [line for line in srv.stdout if line.startswith("BATCHOPS_API_KEY=")]
        assert len(lines) == 1
        key = lines[0].strip().split("=", 1)[1]
        response = httpx.get(
            f"{srv.url}/v1/collections/c/records", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200
    finally:
        assert srv.stop() == 0
    srv.start()
    try:
        time.sleep(0.2)
        assert not [line for line in srv.stdout if line.startswith("BATCHOPS_API_KEY=")]
    finally:
        srv.stop()


def test_serve_runs_batches_over_http_and_stops_cleanly_on_sigterm(server: Server) -> None:
    key = new_key(server)
    headers = {"Authorization": f"Bearer {key}"}
    ops = [{"type": "create", "collection": "c", "data": {"i": i}} for i in range(10)]
    response = httpx.post(f"{server.url}/v1/batch", json={"operations": ops}, headers=headers)
    assert response.status_code == 200
    assert response.json()["meta"]["succeeded"] == 10
    assert server.stop() == 0


def test_keys_list_and_revoke_from_the_cli(server: Server) -> None:
    key = new_key(server)
    key_id = key.split("_")[1]
    listed = cli("keys", "list", "--db", server.db_url, cwd=server.cwd)
    assert key_id in listed
    assert key not in listed
    cli("keys", "revoke", key_id, "--db", server.db_url, cwd=server.cwd)
    assert "revoked" in cli("keys", "list", "--db", server.db_url, cwd=server.cwd)


def test_kill_9_during_atomic_batches_leaves_each_batch_whole_or_absent(server: Server) -> None:
    key = new_key(server)
    headers = {"Authorization": f"Bearer {key}"}
    per_batch = 50
    sent: list[int] = []
    stop = threading.Event()

    def fire(worker: int) -> None:
        with httpx.Client(headers=headers, timeout=10) as client:
            n = 0
            while not stop.is_set():
                k = worker * 100_000 + n
                n += 1
                ops = [
                    {
                        "type": "create",
                        "collection": "atomic",
                        "id": f"b{k}-{i}",
                        "data": {"batch": k, "i": i, "pad": "x" * 200},
                    }
                    for i in range(per_batch)
                ]
                sent.append(k)
                try:
                    client.post(
                        f"{server.url}/v1/batch",
                        json={"operations": ops, "options": {"atomic": True}},
                    )
                except httpx.TransportError:
                    return

    workers = [threading.Thread(target=fire, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.5)
    server.kill9()
    stop.set()
    for w in workers:
        w.join(timeout=15)
    server.start()
    counts: dict[int, int] = {}
    with httpx.Client(headers=headers, timeout=30) as client:
        cursor = None
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = client.get(f"{server.url}/v1/collections/atomic/records", params=params).json()
            for record in page["records"]:
                counts[record["data"]["batch"]] = counts.get(record["data"]["batch"], 0) + 1
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert counts, "no batch committed before the kill; the test proved nothing"
    torn = {k: c for k, c in counts.items() if c != per_batch}
    assert torn == {}
    assert set(counts) <= set(sent)


def test_an_unreachable_database_url_fails_serve_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchops",
            "serve",
            "--db",
            "postgresql://postgres@127.0.0.1:1/none",
            "--port",
            str(free_port()),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode != 0


def test_sigterm_lets_an_in_flight_batch_finish_before_exiting(server: Server) -> None:
    key = new_key(server)
    ops: list[dict[str, object]] = []
    for i in range(500):  # alternating kinds: 1,000 units, streamed in committed slices
        ops.append({"type": "create", "collection": "drain", "id": f"d{i}", "data": {"i": i}})
        ops.append({"type": "read", "collection": "drain", "id": f"d{i}"})
    lines: list[str] = []
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{server.url}/v1/batch",
            json={"operations": ops},
            headers={"Authorization": f"Bearer {key}", "Accept": "application/x-ndjson"},
        ) as response,
    ):
        stream = response.iter_lines()
        lines.append(next(stream))  # the request is in flight now
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        lines.extend(stream)
    assert server.proc.wait(timeout=30) == 0
    final = json.loads(lines[-1])
    assert final["meta"]["succeeded"] == 1000
    assert len(lines) == 1001
