"""``batchops serve`` as deployed, in real processes: roles, several workers on one port,
and the drain on SIGTERM (docs/deploy.md).

PostgreSQL runs in a database of this module's own (a worker claims every queued job of its
database, and other tests leave jobs queued on the session's)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from batchops.store import open_store
from batchops.store.base import JobRow
from tests.conftest import fresh_database, make_sqlite_url
from tests.jobs.test_job_process import _keys_in, _upload, _write_csv
from tests.server.test_serve_process import Server, cli, free_port, new_key

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return make_sqlite_url(tmp_path / "deploy.db")
    url: str = request.getfixturevalue("own_pg_url")
    return url


def _job(server: Server, key: str, job_id: str) -> dict[str, object]:
    response = httpx.get(
        f"{server.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    job: dict[str, object] = response.json()
    return job


def _wait_ended(server: Server, key: str, job_id: str, timeout_s: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = _job(server, key, job_id)
        if job["state"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


async def _stored_job(db_url: str, job_id: str) -> JobRow:
    store = await open_store(db_url, pool_size=1)
    try:
        job = await store.run(lambda tx: tx.get_job(job_id))
    finally:
        await store.close()
    assert job is not None
    return job


# -- roles -------------------------------------------------------------------------------------


def test_an_api_process_leaves_jobs_queued_and_a_worker_runs_them(
    db_url: str, tmp_path: Path
) -> None:
    rows = 3000
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "in.csv"
    _write_csv(path, rows)
    api = Server(db_url, tmp_path, ["--role", "api"])
    worker = Server(db_url, tmp_path, ["--role", "worker"])
    with api.running():
        key = cli("keys", "create", "--tenant", tenant, "--db", db_url, cwd=tmp_path).strip()
        job = _upload(api, key, path, collection="roles", chunk_size="500")
        time.sleep(2)  # a runner would have claimed it (it polls every second)
        assert _job(api, key, str(job["id"]))["state"] == "queued"

        with worker.running():
            headers = {"Authorization": f"Bearer {key}"}
            for path_ in ("/v1/jobs", f"/v1/jobs/{job['id']}", "/openapi.json", "/docs"):
                answer = httpx.get(f"{worker.url}{path_}", headers=headers)
                assert answer.status_code == 404, path_
                assert answer.json()["error"]["code"] == "NOT_FOUND"
            refused = httpx.post(f"{worker.url}/v1/batch", json={"operations": []}, headers=headers)
            assert refused.status_code == 404
            assert httpx.get(f"{worker.url}/readyz").json()["checks"]["draining"] == "no"

            done = _wait_ended(api, key, str(job["id"]))
            assert worker.stop() == 0
    assert (done["state"], done["processed"], done["succeeded"]) == ("succeeded", rows, rows)
    assert sorted(asyncio.run(_keys_in(db_url, tenant, "roles"))) == sorted(
        f"key{i}" for i in range(rows)
    )


# -- several workers on one port ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no server has started on (no key yet)."""
    if request.param == "sqlite":
        yield make_sqlite_url(tmp_path / "empty.db")
    else:
        with fresh_database() as url:
            yield url


def _workers(supervisor: psutil.Process) -> list[psutil.Process]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    return [
        child
        for child in supervisor.children()
        if any("spawn_main" in part for part in child.cmdline())
    ]


def _serving_pids(server: Server, workers: list[psutil.Process]) -> set[int]:
    """The worker pids that accept connections on the server's port: connections are
    opened (and kept) until every worker holds one, or 200 were opened."""
    held: list[socket.socket] = []
    serving: set[int] = set()
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            held.append(sock)
            serving = {
                worker.pid
                for worker in workers
                for conn in worker.net_connections(kind="tcp")
                if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == server.port
            }
            if len(serving) == len(workers):
                break
    finally:
        for sock in held:
            sock.close()
    return serving


def test_two_workers_serve_one_port_print_one_first_key_and_drain_on_sigterm(
    empty_db_url: str, tmp_path: Path
) -> None:
    srv = Server(empty_db_url, tmp_path, ["--workers", "2", "--drain-delay-s", "1"])
    with srv.running():
        assert srv.proc is not None
        supervisor = psutil.Process(srv.proc.pid)
        deadline = time.monotonic() + 30
        while len(workers := _workers(supervisor)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        assert _serving_pids(srv, workers) == {w.pid for w in workers}
        # Both workers have started (they serve), each tried the first key: one printed it.
        lines = [line for line in srv.stdout if line.startswith("BATCHOPS_API_KEY=")]
        assert len(lines) == 1, srv.stdout
        key = lines[0].strip().split("=", 1)[1]
        answer = httpx.get(
            f"{srv.url}/v1/collections/c/records", headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200

        srv.proc.send_signal(signal.SIGTERM)  # to the supervisor alone
        states = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                states.append(httpx.get(f"{srv.url}/readyz", timeout=5).status_code)
            except httpx.TransportError:
                break
            time.sleep(0.05)
        assert srv.proc.wait(timeout=40) == 0
        assert 503 in states  # the workers drained: still listening, not ready
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
        drained = [line for line in srv.stdout if "batchops.server: shutting down: " in line]
        assert len(drained) == 2, srv.stdout  # each worker said so


# -- the drain ---------------------------------------------------------------------------------


def test_sigterm_under_load_turns_unready_serves_the_drain_delay_then_exits_0(
    tmp_path: Path,
) -> None:
    """A steady stream of requests through a load balancer that probes ``/readyz`` every
    0.2 s and stops sending after 2 failed probes, as load balancers do. Every request is
    answered in full; /readyz turns 503 at once and the listener stays open for the whole
    drain delay, long after the balancer has stopped sending."""
    delay_s, grace_s = 2.0, 10.0
    srv = Server(
        make_sqlite_url(tmp_path / "drain.db"),
        tmp_path,
        ["--drain-delay-s", str(delay_s), "--shutdown-grace-s", str(grace_s)],
    )
    with srv.running():
        assert srv.proc is not None
        key = new_key(srv)
        routed = threading.Event()
        routed.set()
        probes: list[tuple[float, int]] = []
        closed_at: list[float] = []
        answers: list[tuple[float, int, str | None]] = []
        failures: list[str] = []

        def balancer() -> None:
            down = 0
            while True:
                try:
                    status = httpx.get(f"{srv.url}/readyz", timeout=5).status_code
                except httpx.TransportError:  # refused: the listener has closed
                    closed_at.append(time.monotonic())
                    return
                probes.append((time.monotonic(), status))
                down = down + 1 if status != 200 else 0
                if down >= 2:
                    routed.clear()
                time.sleep(0.2)

        def client() -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
                while routed.is_set():
                    try:
                        response = http.get(f"{srv.url}/v1/collections/drain/records")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        return
                    answers.append(
                        (time.monotonic(), response.status_code, response.headers.get("connection"))
                    )

        threads = [threading.Thread(target=balancer)] + [
            threading.Thread(target=client) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        sigterm_at = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        status = srv.proc.wait(timeout=delay_s + grace_s + 10)
        exited_at = time.monotonic()
        for thread in threads:
            thread.join(timeout=10)

    assert failures == []
    assert status == 0
    assert exited_at - sigterm_at < delay_s + grace_s
    unready = [at for at, code in probes if code == 503]
    assert unready, probes
    assert closed_at, "the listener never closed"
    assert sigterm_at < unready[0] < sigterm_at + 0.5
    assert all(code == 503 for at, code in probes if at >= unready[0])
    # Open for the whole delay (the balancer's probes were answered until then).
    assert closed_at[0] - sigterm_at >= delay_s - 0.1
    during = [answer for answer in answers if answer[0] > sigterm_at]
    assert during, "no request was sent while the process drained"
    assert all(code == 200 for _, code, _ in answers)
    # Told to take the next request elsewhere (answers started before the signal may not).
    assert all(conn == "close" for at, _, conn in during if at > unready[0])


@pytest.mark.parametrize("to_the_group", [False, True], ids=["to-the-server", "to-its-group"])
def test_sigterm_mid_import_hands_the_job_back_after_its_chunk_and_a_later_process_ends_it(
    own_pg_url: str, tmp_path: Path, to_the_group: bool
) -> None:
    """Sent to the server alone (an orchestrator) or to its whole process group (Ctrl-C,
    systemd's default): the import's worker process outlives the signal either way."""
    rows = 200_000
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "big.csv"
    _write_csv(path, rows)
    grace_s = 20.0
    first = Server(own_pg_url, tmp_path, ["--drain-delay-s", "0.5", "--shutdown-grace-s", "20"])
    with first.running():
        assert first.proc is not None
        key = cli("keys", "create", "--tenant", tenant, "--db", own_pg_url, cwd=tmp_path).strip()
        job_id = str(_upload(first, key, path, collection="handback", chunk_size="1000")["id"])
        deadline = time.monotonic() + 120
        while True:  # stopped well into the import, with chunks committed and more to come
            seen = _job(first, key, job_id)
            assert seen["state"] in ("queued", "running"), seen
            if rows // 10 <= int(str(seen["processed"])) < rows // 2:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sigterm_at = time.monotonic()
        if to_the_group:
            os.killpg(first.proc.pid, signal.SIGTERM)
        else:
            first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(timeout=grace_s + 10) == 0
        assert time.monotonic() - sigterm_at < 0.5 + grace_s
    assert not [line for line in first.stdout if "did not reach the end of a chunk" in line]

    handed_back = asyncio.run(_stored_job(own_pg_url, job_id))
    assert (handed_back.state, handed_back.worker) == ("queued", None)
    assert handed_back.attempts == 0  # a clean hand-back is no attempt
    assert 0 < handed_back.processed < rows
    assert handed_back.checkpoint > 0
    written = asyncio.run(_keys_in(own_pg_url, tenant, "handback"))
    assert len(written) == handed_back.processed  # the chunk in flight committed whole

    later = Server(own_pg_url, tmp_path)
    with later.running():
        final = _wait_ended(later, key, job_id, timeout_s=300)
        assert later.stop() == 0
    assert final["state"] == "succeeded", final
    assert (final["total"], final["processed"], final["succeeded"]) == (rows, rows, rows)
    keys = asyncio.run(_keys_in(own_pg_url, tenant, "handback"))
    assert len(keys) == rows
    assert set(keys) == {f"key{i}" for i in range(rows)}


def test_workers_that_cannot_start_fail_serve(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "batchops", "serve",
            "--db", "postgresql://postgres@127.0.0.1:1/none",
            "--port", str(free_port()),
            "--workers", "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
