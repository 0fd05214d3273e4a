"""A local cluster (issue 13): two API processes and two workers, started from
``deploy/Procfile``, each in its own working directory, sharing only a real PostgreSQL
database and a real Redis (db 13, flushed by these tests only).

What is proved here is what breaks when a deployment spreads over machines: the input of a
job on another machine's disk, per-process limits, per-process key caches, a crashing job
hopping forever, a dead migration lock, a shutdown that drops requests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from batchops.store import applied_migrations
from batchops.store.migrate import shipped_migrations
from tests.cluster.launcher import Cluster, Process
from tests.conftest import fresh_database
from tests.store.test_migration_lock import _HANGING_STARTER

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("BATCHOPS_TEST_CLUSTER_REDIS_URL", "redis://127.0.0.1:6379/13")
LEASE_S = "2"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """One fresh PostgreSQL database for the module (each test has its own tenant),
    migrated by the Procfile's release step, as a deploy would."""
    with fresh_database() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()  # only db 13: the cluster tests' own
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is unreachable at {REDIS_URL}: {exc}")
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def cluster(database: str, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path,
        database,
        redis_url,
        BATCHOPS_JOB_LEASE_S=LEASE_S,
        BATCHOPS_DRAIN_DELAY_S="1",
        BATCHOPS_SHUTDOWN_GRACE_S="20",
    )
    released = c.run("release")
    assert released.returncode == 0, released.stderr
    try:
        yield c
    finally:
        c.close()


def _key(db_url: str) -> str:
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-m", "batchops", "keys", "create", "--tenant", tenant, "--db", db_url],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _csv(path: Path, rows: int) -> Path:
    with path.open("w") as f:
        f.write("k,name,n\n")
        for i in range(rows):
            f.write(f"key{i},name {i},{i}\n")
    return path


def _upload(api: Process, key: str, path: Path) -> dict[str, Any]:
    response = httpx.post(
        f"{api.url}/v1/imports",
        params={"collection": "people", "chunk_size": "500"},
        content=path.read_bytes(),
        headers={**_auth(key), "Content-Type": "text/csv"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _job_row(db_url: str, job_id: str) -> tuple[str, str | None, int]:
    """(state, worker, processed) straight from the database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT state, worker, processed FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1], int(row[2])


def _worker_pid(worker: str) -> int:
    """A runner's id is ``host:pid:random``."""
    return int(worker.split(":")[1])


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _finished(api: Process, key: str, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(
            f"{api.url}/v1/jobs/{job_id}", headers=_auth(key), timeout=10
        ).json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    result: dict[str, Any] = _wait_for(done, timeout_s, f"job {job_id} to end")
    return result


def _count(db_url: str, key: str) -> int:
    tenant_of = "SELECT tenant FROM api_keys WHERE key_id = %s"
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM records WHERE tenant = ({tenant_of}) AND deleted_at IS NULL",
            (key.split("_")[1],),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_import_sent_to_an_api_process_is_finished_exactly_by_a_worker_after_a_kill_9(
    cluster: Cluster, database: str, tmp_path: Path
) -> None:
    api1, api2 = cluster.start("api").ready(), cluster.start("api").ready()
    workers = [cluster.start("worker").ready(), cluster.start("worker").ready()]
    key = _key(database)
    rows = 60_000
    job = _upload(api1, key, _csv(tmp_path / "people.csv", rows))

    def running_somewhere() -> tuple[str, int] | None:
        state, worker, processed = _job_row(database, job["id"])
        return (worker, processed) if state == "running" and worker and processed else None

    worker, processed = _wait_for(running_somewhere, 60, "a worker to write a chunk")
    assert processed < rows, "the import ended before the kill: make the file bigger"
    by_pid = {w.pid: w for w in workers}
    assert _worker_pid(worker) in by_pid, f"{worker} is not a worker process"
    by_pid[_worker_pid(worker)].kill9()

    done = _finished(api2, key, job["id"])
    assert done["state"] == "succeeded", done
    assert (done["processed"], done["succeeded"], done["failed"]) == (rows, rows, 0)
    assert _count(database, key) == rows


def test_a_per_key_limit_of_n_a_minute_lets_at_most_n_through_across_both_api_processes(
    cluster: Cluster, database: str
) -> None:
    limit = 10
    apis = [cluster.start("api", BATCHOPS_RATE_LIMIT_REQUESTS=str(limit)).ready() for _ in range(2)]
    key = _key(database)
    statuses = [
        httpx.get(f"{api.url}/v1/collections/people/records", headers=_auth(key)).status_code
        for api in apis * (3 * limit // 2)
    ]
    assert statuses.count(200) == limit
    assert statuses.count(429) == 2 * limit


def test_a_revoked_key_is_refused_by_both_api_processes_at_once(
    cluster: Cluster, database: str
) -> None:
    apis = [cluster.start("api").ready() for _ in range(2)]
    key = _key(database)
    path = "/v1/collections/people/records"
    assert [httpx.get(f"{a.url}{path}", headers=_auth(key)).status_code for a in apis] == [200] * 2
    subprocess.run(
        [sys.executable, "-m", "batchops", "keys", "revoke", key.split("_")[1], "--db", database],
        check=True,
        capture_output=True,
    )
    answers = [httpx.get(f"{a.url}{path}", headers=_auth(key)) for a in apis]
    assert [a.status_code for a in answers] == [401, 401]
    assert {a.json()["error"]["code"] for a in answers} == {"INVALID_API_KEY"}


def test_a_job_that_crashes_its_worker_every_time_ends_attempts_exhausted(
    cluster: Cluster, database: str, tmp_path: Path
) -> None:
    api = cluster.start("api").ready()
    worker = cluster.start("worker", BATCHOPS_JOB_MAX_ATTEMPTS="3").ready()
    key = _key(database)
    job = _upload(api, key, _csv(tmp_path / "poison.csv", 200_000))

    # The job "crashes" whichever worker claims it: the test kills the worker as soon as
    # it holds the job (as an OOM killer would, mid-chunk), then starts it again.
    killed: list[str] = []

    def claimed_anew_or_ended() -> tuple[str, str | None, int] | None:
        row = _job_row(database, job["id"])
        if row[0] == "queued":
            return None
        if row[0] != "running":
            return row
        return row if row[1] is not None and row[1] not in killed else None

    while True:
        state, holder, _ = _wait_for(claimed_anew_or_ended, 60, "a new claim or the end")
        if state != "running":
            break
        assert holder is not None
        assert _worker_pid(holder) == worker.pid
        assert len(killed) < 3, "the job was handed to a worker a fourth time"
        worker.kill9()
        killed.append(holder)
        cluster.restart(worker).ready()

    done = _finished(api, key, job["id"])
    assert done["state"] == "failed"
    assert done["error"]["code"] == "ATTEMPTS_EXHAUSTED"
    assert len(killed) == 3


def test_a_starter_killed_mid_migration_does_not_block_the_next_start(
    redis_url: str, tmp_path: Path
) -> None:
    with fresh_database() as empty:
        starter = subprocess.Popen(
            [sys.executable, "-c", _HANGING_STARTER, empty, "postgresql", str(tmp_path)],
            cwd=tmp_path,
        )
        try:
            _wait_for(lambda: (tmp_path / "hanging").exists(), 30, "the starter's migration")
            os.kill(starter.pid, signal.SIGKILL)
            starter.wait(timeout=10)
        finally:
            if starter.poll() is None:
                starter.kill()
        cluster = Cluster(tmp_path / "next", empty, redis_url)
        (tmp_path / "next").mkdir()
        try:
            began = time.monotonic()
            released = cluster.run("release", timeout_s=60)
            assert released.returncode == 0, released.stderr
            cluster.start("api").ready(timeout_s=30)
            took = time.monotonic() - began
        finally:
            cluster.close()
        assert applied_migrations(empty) == shipped_migrations("postgresql")
    assert took < 20, f"the next start took {took:.1f} s"


def test_sigterm_drains_an_api_process_with_no_failed_request(
    cluster: Cluster, database: str
) -> None:
    apis = [cluster.start("api").ready() for _ in range(2)]
    key = _key(database)
    ready = {a.url: True for a in apis}
    stop = threading.Event()
    results: list[tuple[str, int | str]] = []
    body = {"operations": [{"type": "create", "collection": "d", "data": {"n": 1}}] * 50}

    def balancer() -> None:
        # What a load balancer does: ask /readyz often, route only to ready backends.
        with httpx.Client(timeout=2) as client:
            while not stop.is_set():
                for a in apis:
                    try:
                        ready[a.url] = client.get(f"{a.url}/readyz").status_code == 200
                    except httpx.TransportError:
                        ready[a.url] = False
                time.sleep(0.1)

    def clients(n: int) -> None:
        with httpx.Client(timeout=30, headers=_auth(key)) as client:
            turn = n
            while not stop.is_set():
                targets = [url for url, ok in list(ready.items()) if ok]
                if not targets:
                    time.sleep(0.01)
                    continue
                turn += 1
                url = targets[turn % len(targets)]
                try:
                    status: int | str = client.post(f"{url}/v1/batch", json=body).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                results.append((url, status))

    threads = [threading.Thread(target=balancer)]
    threads += [threading.Thread(target=clients, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: sum(1 for u, _ in results if u == apis[0].url) >= 20, 30, "traffic")
        apis[0].terminate()
        assert apis[0].proc is not None
        exit_status = apis[0].proc.wait(timeout=30)
        served_after = len(results)
        _wait_for(lambda: len(results) > served_after + 20, 30, "traffic on the other")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert exit_status == 0
    failed = [r for r in results if r[1] != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    assert _count(database, key) == 50 * len(results)
