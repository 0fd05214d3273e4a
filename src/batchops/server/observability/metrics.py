"""The service's Prometheus metrics (docs/operations.md, "Metrics"), and ``GET /metrics``.

Every metric is defined here once, with prometheus-client; the rooms that count call the
small functions below. Labels are bounded sets only: a route is its path *template*
(``/v1/jobs/{job_id}``, every unmatched path the one value :data:`UNMATCHED`), a type or
outcome one of a fixed few, never an id, a tenant or a key.

Several processes (``serve --workers N``): the supervisor gives its workers a
``PROMETHEUS_MULTIPROC_DIR`` (:mod:`batchops.server.serve`), prometheus-client's
multiprocess mode keeps each process's values in files there, and a scrape of any worker
sums them all (:func:`render`). The variable must be set before prometheus-client is
imported, which is why the supervisor sets it before it starts its workers.

Cost: a labelled child is looked up once and kept (``.labels()`` takes a lock and builds
a key: ~1-2 µs each time); an update is then one lock and one add (one mmap write in
multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "UNMATCHED",
    "observe_batch",
    "observe_job_end",
    "observe_job_rows",
    "observe_rate_limited",
    "observe_request",
    "observe_store_run",
    "observe_webhook",
    "render",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

UNMATCHED = "<unmatched>"
"""The ``route`` label of every request no route matched (one value, whatever the path)."""

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LONG_SECONDS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
_OPERATIONS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

HTTP_REQUESTS = Counter(
    "batchops_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "batchops_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method.",
    ["route", "method"],
    buckets=_SECONDS,
)
BATCH_SIZE = Histogram(
    "batchops_batch_size_operations",
    "Operations per batch run (POST /v1/batch, GraphQL's batches, async batch jobs).",
    ["mode"],
    buckets=_OPERATIONS,
)
BATCH_DURATION = Histogram(
    "batchops_batch_duration_seconds",
    "Time from a batch's arrival to its answer (whole: one transaction; stream: NDJSON).",
    ["mode"],
    buckets=_SECONDS,
)
BATCH_OPERATIONS = Counter(
    "batchops_batch_operations",
    "Batch operations by type (create, read, ...) and outcome (succeeded, failed, skipped).",
    ["type", "outcome"],
)
JOB_ROWS = Counter(
    "batchops_job_rows",
    "Rows (input rows, records) jobs committed, by job type and outcome.",
    ["type", "outcome"],
)
JOB_DURATION = Histogram(
    "batchops_job_duration_seconds",
    "A job's run in the process that ended it, from its claim to its end, by type and state.",
    ["type", "state"],
    buckets=_LONG_SECONDS,
)
WEBHOOK_DELIVERIES = Counter(
    "batchops_webhook_deliveries",
    "Webhook delivery attempts by outcome: succeeded, retrying (another attempt is due), "
    "failed (no attempt left).",
    ["outcome"],
)
RATE_LIMITED = Counter(
    "batchops_rate_limited_requests",
    "Requests answered 429 by the per-key rate limits, by the limit that refused them.",
    ["limit"],
)
STORE_RUN = Histogram(
    "batchops_store_run_seconds",
    "Time of one store unit of work (Store.run: one transaction) as its caller waits for "
    "it: the wait for the database thread or a connection, the transaction and its retries.",
    ["backend", "outcome"],
    buckets=_SECONDS,
)

# Children looked up once (see the module docstring); keys are bounded by the label sets.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP request answered."""
    _child(HTTP_REQUESTS, route, method, str(status)).inc()
    _child(HTTP_DURATION, route, method).observe(seconds)


def observe_batch(mode: str, operations: int, seconds: float, by_type: dict[str, Any]) -> None:
    """One batch answered: its size, time and ``meta.by_type`` (type → counts)."""
    _child(BATCH_SIZE, mode).observe(operations)
    _child(BATCH_DURATION, mode).observe(seconds)
    for op_type, counts in by_type.items():
        for outcome in ("succeeded", "failed", "skipped"):
            n = counts.get(outcome, 0)
            if n:
                _child(BATCH_OPERATIONS, op_type, outcome).inc(n)


def observe_job_rows(job_type: str, succeeded: int, failed: int) -> None:
    """Rows a job's chunk committed."""
    if succeeded:
        _child(JOB_ROWS, job_type, "succeeded").inc(succeeded)
    if failed:
        _child(JOB_ROWS, job_type, "failed").inc(failed)


def observe_job_end(job_type: str, state: str, seconds: float) -> None:
    """A job ended in this process after running ``seconds`` here."""
    _child(JOB_DURATION, job_type, state).observe(seconds)


def observe_webhook(outcome: str) -> None:
    """A webhook delivery attempt ended (succeeded, retrying or failed)."""
    _child(WEBHOOK_DELIVERIES, outcome).inc()


def observe_rate_limited(limit: str) -> None:
    """A request was refused by the ``limit`` (requests, operations) rate limit."""
    _child(RATE_LIMITED, limit).inc()


def observe_store_run(dialect: str, seconds: float, ok: bool) -> None:
    """One unit of work (the store's observer, see :mod:`batchops.store.observe`)."""
    _child(STORE_RUN, dialect, "ok" if ok else "error").observe(seconds)


class _JobsGauge(Collector):
    """``batchops_jobs``: jobs by type and state, as counted in the store at this scrape."""

    def __init__(self, counts: Iterable[tuple[str, str, int]]) -> None:
        self.counts = list(counts)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "batchops_jobs",
            "Jobs in the database by type and state (all tenants), counted at the scrape.",
            labels=["type", "state"],
        )
        for job_type, state, n in self.counts:
            family.add_metric([job_type, state], n)
        yield family


def render(job_counts: Iterable[tuple[str, str, int]] | None) -> bytes:
    """The exposition text of this process (every process's values summed when several
    run, see the module docstring), then the jobs gauge from ``job_counts``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if job_counts is not None:
        jobs = CollectorRegistry(auto_describe=False)
        jobs.register(_JobsGauge(job_counts))
        text += generate_latest(jobs)
    return text
