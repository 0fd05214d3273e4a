"""Fuzzing ``POST /v1/batch``: both dialects, as one JSON answer, as an NDJSON stream and
as an async job, with hostile headers.

Beyond the plain rule (tests/fuzz/harness.py), a batch answer is held to its contract:
every result's status under 500 (a ``504 TIMEOUT`` only when the batch set its own
``timeout_ms``), every failed result carrying ``{"code", "message", "details"}``, a stream
ending with its meta line, an async batch's job ending ``succeeded`` with its results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import examples
from tests.fuzz.harness import JSON, Answer, Fuzzer, check_envelope
from tests.fuzz.strategies import dumps, hostile_body

PEOPLE = "/v1/collections/people/records"
DATA = {"name": "Ada", "age": 36, "profile": {"team": "core"}, "tags": ["x"]}
OPTIONS = {
    "atomic": False,
    "continue_on_error": True,
    "parallel": 1,
    "timeout_ms": 30000,
    "suppress_success": False,
    "validate_only": False,
    "max_retries": 0,
}
TYPED = {
    "operations": [
        {"ref": "a", "type": "create", "collection": "people", "data": DATA},
        {"type": "read", "collection": "people", "id": "p1", "options": {"include_deleted": True}},
        {
            "ref": "b",
            "type": "update",
            "collection": "people",
            "id": "${a.body.id}",
            "data": {"team": "${a.body.data.name}"},
            "if_match": 1,
            "depends_on": ["a"],
        },
        {"type": "replace", "collection": "people", "id": "p1", "data": DATA},
        {
            "type": "search",
            "collection": "people",
            "query": "ada",
            "options": {"limit": 5, "filters": {"profile.team": "core"}},
        },
        {"type": "list", "collection": "people", "options": {"filters": {"age": 36}, "limit": 2}},
        {"type": "delete", "collection": "people", "id": "p3", "options": {"hard": True}},
        {"type": "restore", "collection": "people", "id": "p2", "atomicity_group": "g"},
    ],
    "options": OPTIONS,
}
REST = {
    "operations": [
        {"id": "a", "method": "POST", "path": PEOPLE, "body": {"data": DATA}},
        {"method": "GET", "path": f"{PEOPLE}/p1?include_deleted=true"},
        {
            "id": "b",
            "method": "PATCH",
            "path": f"{PEOPLE}/${{a.body.id}}",
            "headers": {"If-Match": "1"},
            "body": {"data": {"team": "core"}},
            "depends_on": ["a"],
        },
        {"method": "PUT", "path": f"{PEOPLE}/p1", "body": {"data": DATA}},
        {
            "method": "POST",
            "path": "/v1/collections/people/search",
            "body": {"query": "ada", "filters": {"age": 36}, "limit": 3},
        },
        {"method": "GET", "path": f"{PEOPLE}?profile.team=core&limit=2"},
        {"method": "DELETE", "path": f"{PEOPLE}/p3?hard=true", "atomicity_group": "g"},
        {"method": "POST", "path": f"{PEOPLE}/p2/restore"},
    ],
    "options": OPTIONS,
}
ALL_CREATES = {
    "operations": [
        {"type": "create", "collection": "people", "data": DATA},
        {"type": "create", "collection": "people", "id": "c1", "data": DATA},
        {"method": "POST", "path": PEOPLE, "body": {"data": DATA}},
    ]
}
"""A batch of plain creates is planned and written as runs (BatchPlan.runs): fuzz it too."""

TEMPLATES = st.sampled_from([TYPED, REST, ALL_CREATES])


async def seed(fuzzer: Fuzzer) -> None:
    """``p1`` live, ``p2`` soft-deleted, ``p3`` live."""
    client = fuzzer.client
    for record_id in ("p1", "p2", "p3"):
        response = await client.post(PEOPLE, json={"id": record_id, "data": DATA})
        assert response.status_code == 201, response.text
    assert (await client.delete(f"{PEOPLE}/p2")).status_code == 200


def batch_bodies() -> st.SearchStrategy[bytes]:
    """A valid batch of either dialect (or of creates only), mutated."""
    return TEMPLATES.flatmap(hostile_body)


def _may_time_out(request_body: bytes) -> bool:
    """A batch that sets its own deadline may see operations answer 504 ``TIMEOUT``."""
    return b"timeout_ms" in request_body


def check_result(result: Any, request_body: bytes, where: str) -> None:
    """One operation's result: an index and a status under 500; an error envelope's
    members when it failed."""
    assert isinstance(result, dict), f"{where}: result not an object: {result!r}"
    status = result.get("status")
    assert isinstance(status, int), f"{where}: no status: {result!r}"
    assert isinstance(result.get("index"), int), f"{where}: no index: {result!r}"
    if status >= 400:
        error = result.get("error")
        assert isinstance(error, dict), f"{where}: a failed result without error: {result!r}"
        assert set(error) == {"code", "message", "details"}, f"{where}: {result!r}"
        assert isinstance(error["code"], str), f"{where}: {result!r}"
        assert error["code"], f"{where}: empty code: {result!r}"
        assert isinstance(error["details"], dict), f"{where}: {result!r}"
    if status >= 500:
        code = result["error"]["code"]
        allowed = {"STORE_BUSY"} | ({"TIMEOUT"} if _may_time_out(request_body) else set())
        assert code in allowed, f"{where}: an operation answered {status} {code}: {result!r}"


def check_payload(payload: Any, request_body: bytes, where: str) -> None:
    """A batch answer: ``batch_id``, ``committed``, ``results``, ``meta``, every result
    checked."""
    assert isinstance(payload, dict), f"{where}: not an object"
    assert {"batch_id", "committed", "results", "meta"} <= set(payload), f"{where}: {payload}"
    for result in payload["results"]:
        check_result(result, request_body, where)


def check_batch(answer: Answer) -> None:
    """The rule for ``POST /v1/batch`` answered as one JSON document."""
    where = str(answer)
    if answer.status in (200, 207):
        check_payload(answer.json(), answer.request_body, where)
        return
    assert answer.status >= 400, f"unexpected {answer.status}: {where}"
    body = answer.json()
    if isinstance(body, dict) and "results" in body:
        # An atomic batch that failed answers the failing operation's status, with the
        # batch payload (committed: false), not the envelope.
        assert body["committed"] is False, where
        check_payload(body, answer.request_body, where)
        failing = [r for r in body["results"] if r["status"] == answer.status]
        assert failing, f"no operation has the batch's status: {where}"
        return
    error = check_envelope(answer)
    assert answer.status < 500 or (
        answer.status == 503 and error["code"] == "STORE_BUSY" and "retry-after" in answer.headers
    ), f"a {answer.status}: {where}"


def check_stream(answer: Answer) -> None:
    """The rule for a batch asked for as NDJSON: a rejection is the envelope (as for
    JSON); a stream is JSON lines of results ending with the meta line."""
    where = str(answer)
    if answer.status != 200 or not answer.headers.get("content-type", "").startswith(
        "application/x-ndjson"
    ):
        check_batch(answer)  # validate_only and rejections answer one JSON document
        return
    lines = answer.content.splitlines()
    assert lines, f"an empty stream: {where}"
    decoded = [orjson.loads(line) for line in lines]
    *results, last = decoded
    assert "error" not in last, f"the stream ended with an error line: {where}"
    assert {"batch_id", "committed", "status", "meta"} <= set(last), f"no meta line: {where}"
    status = last["status"]
    assert status < 500 or (status == 504 and _may_time_out(answer.request_body)), where
    for result in results:
        check_result(result, answer.request_body, where)


_ODD_HEADERS = st.fixed_dictionaries(
    {"Content-Type": st.just("application/json")},
    optional={
        "X-Batch-Id": st.sampled_from(("b1", "", "x" * 129, "x" * 128, "a\tb", "é", "\x7f")),
        "Idempotency-Key": st.sampled_from(("k1", "", "k" * 300, "k" * 3000, "k" * 10_000)),
    },
)
HEADERS = st.integers(0, 9).flatmap(lambda n: _ODD_HEADERS if n == 0 else st.just(dict(JSON)))
"""Mostly plain; one example in ten with an odd ``X-Batch-Id`` or ``Idempotency-Key``."""


async def test_hostile_batches_answered_as_json_are_never_a_5xx(fuzzer: Fuzzer) -> None:
    await seed(fuzzer)

    @examples(400)
    @given(body=batch_bodies(), headers=HEADERS)
    def example(body: bytes, headers: dict[str, str]) -> None:
        check_batch(fuzzer.send("POST", "/v1/batch", content=body, headers=headers))

    await fuzzer.run(example)


async def test_hostile_batches_streamed_as_ndjson_end_with_their_meta_line(
    fuzzer: Fuzzer,
) -> None:
    await seed(fuzzer)

    @examples(250)
    @given(body=batch_bodies(), headers=HEADERS)
    def example(body: bytes, headers: dict[str, str]) -> None:
        headers = {**headers, "Accept": "application/x-ndjson"}
        check_stream(fuzzer.send("POST", "/v1/batch", content=body, headers=headers))

    await fuzzer.run(example)


WEBHOOK = {
    "url": "https://hooks.example.com/batchops",
    "events": ["job.succeeded"],
    "secret": "0123456789abcdef0123",
}


def check_async(fuzzer: Fuzzer, answer: Answer) -> None:
    """An async batch: a rejection at once, or a 202 job that ends ``succeeded`` and
    whose results are the batch answer."""
    if answer.status != 202:
        check_batch(answer)  # rejections, and validate_only answered at once
        return
    job = answer.json()
    assert job["type"] == "batch", str(answer)
    ended = fuzzer.wait_job(job["id"])
    fuzzer.check_job_end(ended)
    assert ended["state"] == "succeeded", f"a batch job that ran ends succeeded: {ended}"
    results = fuzzer.send("GET", f"/v1/jobs/{job['id']}/results")
    assert results.status == 200, str(results)
    check_payload(results.json(), answer.request_body, str(answer))
    assert int(results.headers["batch-status"]) < 500 or _may_time_out(answer.request_body)


async def test_hostile_async_batches_make_jobs_that_end_succeeded(fuzzer: Fuzzer) -> None:
    await seed(fuzzer)
    with_hook: Mapping[str, Any] = {**TYPED, "notification_webhook": WEBHOOK}
    bodies = st.sampled_from([TYPED, REST, with_hook]).flatmap(hostile_body)

    @examples(80)
    @given(body=bodies)
    def example(body: bytes) -> None:
        headers = {**JSON, "Prefer": "respond-async"}
        check_async(fuzzer, fuzzer.send("POST", "/v1/batch", content=body, headers=headers))

    await fuzzer.run(example)


async def test_hostile_batch_headers_are_never_a_5xx(fuzzer: Fuzzer) -> None:
    """``Prefer``, ``Accept``, ``Content-Type``, ``Content-Encoding`` and the batch's own
    headers with odd values, on a valid batch."""
    await seed(fuzzer)
    headers = st.fixed_dictionaries(
        {},
        optional={
            "Content-Type": st.sampled_from(
                ("application/json", "text/plain", "", "application/batch+json", "json")
            ),
            "Content-Encoding": st.sampled_from(("gzip", "deflate", "identity", "GZIP", "")),
            "Accept": st.sampled_from(
                ("application/x-ndjson", "*/*", "application/x-ndjson;q=0", "text/html", "")
            ),
            "Prefer": st.sampled_from(
                ("respond-async", "respond-async, wait=0", "RESPOND-ASYNC;x=1", "", ",,,")
            ),
            "X-Batch-Id": st.sampled_from(("b1", "", "x" * 129, "\x00", "é")),
            "Idempotency-Key": st.sampled_from(("k2", "", "k" * 10_000, "é")),
        },
    )

    @examples(100)
    @given(headers=headers, template=st.sampled_from([TYPED, REST]))
    def example(headers: dict[str, str], template: dict[str, Any]) -> None:
        answer = fuzzer.send("POST", "/v1/batch", content=dumps(template), headers=headers)
        if answer.status == 202:
            check_async(fuzzer, answer)
        else:
            check_stream(answer)

    await fuzzer.run(example)
