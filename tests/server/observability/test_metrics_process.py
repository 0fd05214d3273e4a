"""The real ``batchops serve`` in a subprocess: with ``--workers 2`` a scrape of either
worker sums both workers' counts (prometheus-client's multiprocess mode in a directory the
supervisor makes and removes) and ``--log-format json`` writes the access lines as JSON;
``--metrics-port`` and ``--metrics-token`` keep /metrics on a port of its own, behind a
token, with one process and with two."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import make_sqlite_url
from tests.server.observability.conftest import Samples
from tests.server.test_serve_process import Server, free_port

pytestmark = pytest.mark.slow

HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}


def healthz_count(samples: Samples) -> float:
    return samples.value("batchops_http_requests_total", **HEALTHZ)


def per_process_counts(metrics_dir: Path) -> dict[str, float]:
    """Each worker's own /healthz count, from its file in the multiprocess directory."""
    counts: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)], accumulate=True)  # type: ignore[no-untyped-call]
        for metric in merged:
            for sample in metric.samples:
                if sample.name == "batchops_http_requests_total" and sample.labels == HEALTHZ:
                    counts[path.name] = counts.get(path.name, 0.0) + sample.value
    return counts


def test_two_workers_counts_are_summed_and_the_directory_is_removed(tmp_path: Path) -> None:
    server = Server(
        make_sqlite_url(tmp_path / "w.db"),
        tmp_path,
        args=("--workers", "2", "--log-level", "info", "--log-format", "json"),
        # The supervisor makes its metrics directory under TMPDIR: here, to be looked at.
        env={"TMPDIR": str(tmp_path)},
    )
    with server.running():
        (metrics_dir,) = tmp_path.glob("batchops-metrics-*")
        before = Samples(httpx.get(f"{server.url}/metrics").text)

        def hit(_: int) -> int:
            # A connection each: the two workers share the listening socket and take turns.
            return httpx.get(f"{server.url}/healthz", headers={"Connection": "close"}).status_code

        sent = 0
        # Until both workers have answered some (each accepts as it is free; almost always
        # the first round).
        for _ in range(20):
            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(hit, range(100))) == {200}
            sent += 100
            if len([n for n in per_process_counts(metrics_dir).values() if n > 0]) >= 2:
                break
        each = per_process_counts(metrics_dir)
        scrapes = [Samples(httpx.get(f"{server.url}/metrics").text) for _ in range(4)]
        assert server.stop() == 0

    assert len([n for n in each.values() if n > 0]) >= 2
    for samples in scrapes:  # whichever worker answered the scrape
        assert healthz_count(samples) - healthz_count(before) == sent
        assert healthz_count(samples) == sum(each.values())
    assert not metrics_dir.exists()
    access = [
        json.loads(line)
        for line in server.stdout
        if line.startswith("{") and '"batchops.access"' in line
    ]
    assert access
    assert {"method", "path", "status", "duration_ms", "bytes", "request_id"} <= set(access[-1])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_on_its_own_port_behind_a_token(tmp_path: Path, workers: str) -> None:
    port = free_port()
    server = Server(
        make_sqlite_url(tmp_path / "p.db"),
        tmp_path,
        args=("--workers", workers, "--metrics-port", str(port), "--metrics-token", "tok"),
    )
    metrics_url = f"http://127.0.0.1:{port}"
    with server.running():
        assert httpx.get(f"{server.url}/metrics").status_code == 404
        assert httpx.get(f"{metrics_url}/metrics").status_code == 401
        scraped = httpx.get(f"{metrics_url}/metrics", headers={"Authorization": "Bearer tok"})
        assert httpx.get(f"{metrics_url}/healthz").status_code == 404
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert server.stop() == 0
    assert scraped.status_code == 200
    assert healthz_count(Samples(scraped.text)) >= 1  # the start-up probes
