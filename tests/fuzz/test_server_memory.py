"""A real ``batchops serve`` under the fuzz suite's hostile input: its memory stays
bounded, it keeps answering ``/healthz`` within 1 s, and it never logs a traceback.

Memory is measured on a server process rather than on the test process: in-process, the
test's own allocations (Hypothesis's example data and shrinking, httpx buffers) would blur
the figure. The server's peak RSS is sampled every 2 ms while the examples run, against its
RSS after a warm-up round of the same kind of input (first-use allocations — compiled
regexes, the msgspec and orjson decoders, the database connections, SQLite's page cache —
are not growth).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import examples
from tests.fuzz.harness import HANG_S, HEALTHZ_S, JSON, Answer, check_answer, check_job_end
from tests.fuzz.strategies import extreme_shapes, hostile_body, hostile_values
from tests.fuzz.test_batch_fuzz import REST, TYPED, check_batch, check_stream
from tests.fuzz.test_imports_fuzz import csv_files, ndjson_files
from tests.fuzz.test_records_fuzz import CREATE, SEARCH, WRITE
from tests.server.test_request_bodies import PeakRSS
from tests.server.test_serve_process import Server, new_key

pytestmark = pytest.mark.slow

MB = 1_000_000

GROWTH_LIMIT_MB = 100
"""How much the server's peak RSS may exceed its warmed-up RSS over the whole run.

Measured: +23 to +34 MB over several runs on both backends (peak over warm RSS, 200
examples).

What one request may hold at a time: a batch body up to its 10 MiB limit plus its decoded
form (the 5.2 MB batch of 1,000 creates below: 6 MB once planned, measured with
tracemalloc, and its records' JSON text again while they are written) and its response;
records and bulk bodies 1 MiB; an upload ~1 MiB blocks. The examples run one at a time,
so a server that frees what each request took stays within about one big batch of its
warm RSS, plus allocator fragmentation. About one example in ten is that big batch:
keeping its body alone, or the decoded form of the other examples' bodies, or a body
copied per nesting level, passes 100 MB within the run.
"""


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """``batchops serve`` on the test's backend, without rate limits."""
    monkeypatch.setenv("BATCHOPS_DATA_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("BATCHOPS_RATE_LIMIT_REQUESTS", "0")
    monkeypatch.setenv("BATCHOPS_RATE_LIMIT_OPERATIONS", "0")
    with Server(db_url, tmp_path).running() as srv:
        yield srv


BIG_DATA = {"text": "x" * 5000, "n": list(range(50))}
BIG_BATCH = orjson.dumps(
    {"operations": [{"type": "create", "collection": "big", "data": BIG_DATA}] * 1000}
)
"""A valid batch at the operation limit, ~5 MB: the largest thing a client may send."""

PEOPLE = "/v1/collections/people/records"


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """One request of the fuzz suite's kinds, weighted toward the large ones."""
    kind = draw(
        st.sampled_from(
            (
                "create",
                "write",
                "search",
                "batch",
                "batch",
                "stream",
                "big_batch",
                "bulk",
                "import",
                "list",
            )
        )
    )
    values = st.one_of(hostile_values(), extreme_shapes())
    if kind == "create":
        return "POST", PEOPLE, JSON, draw(hostile_body(CREATE, values))
    if kind == "write":
        method = draw(st.sampled_from(("PATCH", "PUT")))
        return method, f"{PEOPLE}/p1", JSON, draw(hostile_body(WRITE, values))
    if kind == "search":
        return "POST", "/v1/collections/people/search", JSON, draw(hostile_body(SEARCH, values))
    if kind in ("batch", "stream"):
        body = draw(st.sampled_from([TYPED, REST]).flatmap(hostile_body))
        accept = {"Accept": "application/x-ndjson"} if kind == "stream" else {}
        return "POST", "/v1/batch", {**JSON, **accept}, body
    if kind == "big_batch":
        return "POST", "/v1/batch", JSON, BIG_BATCH
    if kind == "bulk":
        template = {"collection": "people", "filter": {"age": 36}, "update": {"seen": True}}
        return "POST", "/v1/bulk/update", JSON, draw(hostile_body(template, values))
    if kind == "import":
        csv = draw(st.booleans())
        body = draw(csv_files() if csv else ndjson_files())
        kind_type = "text/csv" if csv else "application/x-ndjson"
        return (
            "POST",
            "/v1/imports?collection=people&validation=lenient",
            {"Content-Type": kind_type},
            body,
        )
    filters = draw(st.sampled_from((1, 64, 65, 1000)))
    query = "&".join(f"f{i}={quote('é')}" for i in range(filters))
    return "GET", f"{PEOPLE}?{query}", {}, b""


class Driver:
    """Sends the examples to the real server and holds each answer to the suite's rule."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=HANG_S
        )
        self.sent = 0

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Answer:
        self.sent += 1
        if self.sent % 25 == 0:
            self.healthz()
        started = time.monotonic()
        response = self.client.request(method, url, content=body, headers=headers)
        return Answer(
            method,
            url,
            response.status_code,
            response.headers,
            response.content,
            time.monotonic() - started,
            body,
            headers,
        )

    def run(self, request: tuple[str, str, dict[str, str], bytes]) -> None:
        method, url, headers, body = request
        answer = self.send(method, url, headers, body)
        if url == "/v1/batch":
            check_stream(answer) if "Accept" in headers else check_batch(answer)
            return
        job = check_answer(answer)
        if answer.status == 202 and isinstance(job, dict):
            self.wait(job["id"])

    def wait(self, job_id: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            job: dict[str, Any] = self.client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] not in ("queued", "running"):
                check_job_end(job)
                return
            assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
            time.sleep(0.02)

    def healthz(self) -> None:
        started = time.monotonic()
        response = self.client.get("/healthz")
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert elapsed < HEALTHZ_S, f"/healthz took {elapsed:.2f} s"


@pytest.mark.timeout(300)
def test_a_real_server_under_hostile_input_keeps_its_memory_bounded(server: Server) -> None:
    assert server.proc is not None
    driver = Driver(server.url, new_key(server))
    created = driver.client.post(PEOPLE, json={"id": "p1", "data": {"age": 36}})
    assert created.status_code == 201, created.text

    @examples(20)
    @given(request=hostile_requests())
    def warm_up(request: tuple[str, str, dict[str, str], bytes]) -> None:
        driver.run(request)

    @examples(200)
    @given(request=hostile_requests())
    def hostile(request: tuple[str, str, dict[str, str], bytes]) -> None:
        driver.run(request)

    warm_up()
    driver.run(("POST", "/v1/batch", JSON, BIG_BATCH))
    baseline = psutil.Process(server.proc.pid).memory_info().rss
    with PeakRSS(server.proc.pid) as rss:
        hostile()
    driver.healthz()
    growth_mb = (rss.peak - baseline) / MB
    print(
        f"\nserver RSS warm {baseline / MB:.0f} MB, peak {rss.peak / MB:.0f} MB "
        f"(+{growth_mb:.0f} MB) over {driver.sent} requests"
    )
    assert growth_mb < GROWTH_LIMIT_MB
    logged = "".join(server.stdout)
    assert "Traceback" not in logged, logged[-5000:]
