"""Fuzzing the job routes: hostile job ids on every route, hostile query parameters on
real jobs (``/v1/jobs?limit=…&state=…``, ``/failures?format=``, ``/deliveries?limit=``) and
a hostile ``Last-Event-ID`` on the events of a finished job.

Every answer is a success or a 4xx envelope; an unknown id is a 404, never a 5xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import examples
from tests.fuzz.harness import Fuzzer
from tests.fuzz.strategies import hostile_query_values, hostile_segments, pick

pytestmark = pytest.mark.limits(bulk_inline_max=0)

JOB_ROUTES = (
    ("GET", ""),
    ("POST", "/cancel"),
    ("GET", "/failures"),
    ("GET", "/failures?format=csv"),
    ("GET", "/events"),
    ("GET", "/results"),
    ("GET", "/deliveries"),
    ("DELETE", ""),
    ("PUT", "/cancel"),
)


async def finished_jobs(fuzzer: Fuzzer) -> list[str]:
    """The ids of an import with failures, a batch job and a bulk job, all ended."""
    client = fuzzer.client
    ids = [
        await start(
            client.post(
                "/v1/imports?collection=people&validation=lenient",
                content=b"name,age\nAda,36\nBob\n",
                headers={"Content-Type": "text/csv"},
            )
        ),
        await start(
            client.post(
                "/v1/batch",
                json={"operations": [{"type": "create", "collection": "c", "data": {"a": 1}}]},
                headers={"Prefer": "respond-async"},
            )
        ),
    ]
    for job_id in ids:
        await ended(fuzzer, job_id)
    # A job, not an inline answer: the batch made one record and the inline maximum is 0.
    bulk = {"collection": "c", "filter": {}, "dry_run": True}
    ids.append(await start(client.post("/v1/bulk/delete", json=bulk)))
    await ended(fuzzer, ids[-1])
    return ids


async def start(request: Awaitable[httpx.Response]) -> str:
    response = await request
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def ended(fuzzer: Fuzzer, job_id: str) -> None:
    for _ in range(500):
        job: dict[str, Any] = (await fuzzer.client.get(f"/v1/jobs/{job_id}")).json()
        if job["state"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.02)
    assert job["state"] == "succeeded", job


async def test_hostile_job_ids_on_every_job_route_are_answered_without_a_5xx(
    fuzzer: Fuzzer,
) -> None:
    real = await finished_jobs(fuzzer)
    ids = st.sampled_from(real) | hostile_segments()

    @examples(300)
    @given(route=st.sampled_from(JOB_ROUTES), job_id=ids)
    def example(route: tuple[str, str], job_id: str) -> None:
        method, tail = route
        fuzzer.request(method, f"/v1/jobs/{job_id}{tail}")

    await fuzzer.run(example)


async def test_hostile_job_list_queries_are_answered_without_a_5xx(fuzzer: Fuzzer) -> None:
    await finished_jobs(fuzzer)
    params = st.lists(
        st.tuples(
            st.sampled_from(["limit", "state", "type", "cursor", "x"]),
            pick(["1", "1000", "succeeded", "import", "batch", "bulk_delete"]),
        ),
        max_size=4,
    )

    @examples(200)
    @given(params=params)
    def example(params: list[tuple[str, str]]) -> None:
        query = "&".join(f"{k}={v}" for k, v in params)
        fuzzer.request("GET", f"/v1/jobs?{query}")

    await fuzzer.run(example)


async def test_hostile_query_parameters_on_a_real_job_are_answered_without_a_5xx(
    fuzzer: Fuzzer,
) -> None:
    real = await finished_jobs(fuzzer)
    routes = st.sampled_from(
        [("/failures", "format"), ("/deliveries", "limit"), ("/results", "x"), ("", "x")]
    )

    @examples(200)
    @given(job_id=st.sampled_from(real), route=routes, value=hostile_query_values())
    def example(job_id: str, route: tuple[str, str], value: str) -> None:
        tail, name = route
        fuzzer.request("GET", f"/v1/jobs/{job_id}{tail}?{name}={value}")

    await fuzzer.run(example)


async def test_a_hostile_last_event_id_on_a_finished_job_ends_its_event_stream(
    fuzzer: Fuzzer,
) -> None:
    real = await finished_jobs(fuzzer)
    last = st.sampled_from(
        ["0", "-1", "", "9" * 40, "²", "١٢", "1e3", "nan", " 3 ", "\x7f", "é", "x" * 5000]
    ) | st.integers().map(str)

    @examples(60)
    @given(job_id=st.sampled_from(real), last_event_id=last)
    def example(job_id: str, last_event_id: str) -> None:
        answer = fuzzer.send(
            "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": last_event_id}
        )
        fuzzer.check(answer)
        assert answer.status == 200, str(answer)

    await fuzzer.run(example)


NUL_ID_ROUTES = [
    ("GET", "/v1/jobs/{}"),
    ("POST", "/v1/jobs/{}/cancel"),
    ("GET", "/v1/jobs/{}/failures"),
    ("GET", "/v1/jobs/{}/events"),
    ("GET", "/v1/jobs/{}/results"),
    ("GET", "/v1/jobs/{}/deliveries"),
    ("GET", "/v1/webhooks/{}"),
    ("DELETE", "/v1/webhooks/{}"),
    ("GET", "/v1/webhooks/{}/deliveries"),
]


@pytest.mark.parametrize(("method", "route"), NUL_ID_ROUTES)
async def test_an_unknown_job_or_webhook_id_holding_a_nul_is_a_404_on_both_backends(
    fuzzer: Fuzzer, method: str, route: str
) -> None:
    """Minimized from the id fuzzing above: ``/v1/jobs/a%00b`` was 404 ``JOB_NOT_FOUND`` on
    SQLite but 422 ``INVALID_VALUE`` on PostgreSQL (the id reached the driver, which
    refuses a NUL). An id no job or webhook can have never reaches the store now."""
    answer = await fuzzer.asend(method, route.format("a%00b"))
    fuzzer.check(answer)
    assert answer.status == 404, str(answer)
    assert answer.json()["error"]["code"] in ("JOB_NOT_FOUND", "WEBHOOK_NOT_FOUND"), str(answer)
