"""An ``Idempotency-Key`` makes a streamed (NDJSON) batch apply each operation once, however
the stream ends (both backends).

A non-atomic stream commits slice by slice. Before, a client that went away mid-stream left
the committed slices applied and the key "in flight" for 5 minutes, and the retry after
that ran the whole batch again (1,050 records for 1,000 creates). These tests cut a stream
off after a few slices, the way a client that disconnects does (an ``http.disconnect``
while the response streams), then retry with the same key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from batchops.server.batch import service as batch_service
from batchops.server.batch.idempotency import Claim
from batchops.server.settings import Settings
from tests.server.conftest import Service, settings_for

N = 1000
SLICE = batch_service.STREAM_SLICE
NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture
def settings(db_url: str) -> Settings:
    return settings_for(
        db_url, rate_limit_requests_per_minute=0, rate_limit_operations_per_minute=0
    )


def creates(n: int = N) -> list[dict[str, Any]]:
    return [
        {"type": "create", "collection": "people", "data": {"n": i}, "ref": f"c{i}"}
        for i in range(n)
    ]


async def cut_off_stream(
    app: FastAPI, key: str, api_key: str, body: dict[str, Any], *, after_chunks: int
) -> list[dict[str, Any]]:
    """POST /v1/batch as NDJSON straight to the ASGI app and disconnect once
    ``after_chunks`` body chunks (one per committed slice) have arrived; the lines got."""
    raw = orjson.dumps(body)
    chunks: list[bytes] = []
    enough = asyncio.Event()
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await enough.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            if len(chunks) >= after_chunks:
                enough.set()

    headers = [
        (b"authorization", f"Bearer {api_key}".encode()),
        (b"content-type", b"application/json"),
        (b"accept", b"application/x-ndjson"),
        (b"idempotency-key", key.encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/batch",
        "raw_path": b"/v1/batch",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return [orjson.loads(line) for line in b"".join(chunks).splitlines()]


async def retry(service: Service, key: str, body: dict[str, Any], **headers: str) -> Any:
    """Send the batch again with the same key until it is no longer in flight (the cut-off
    stream gives its claim up as it ends); asserts that takes seconds, not minutes."""
    deadline = time.monotonic() + 10
    while True:
        response = await service.client.post(
            "/v1/batch", json=body, headers={"Idempotency-Key": key, **headers}
        )
        if response.status_code != 409:
            return response
        assert response.json()["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT"
        assert time.monotonic() < deadline, "the key stayed in flight"
        await asyncio.sleep(0.05)


async def count_people(service: Service) -> int:
    page = await service.client.get("/v1/collections/people/records", params={"limit": "1000"})
    records = page.json()["records"]
    assert page.json()["next_cursor"] is None
    return len(records)


def ndjson(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


async def test_a_stream_cut_off_by_its_client_is_applied_once_after_a_retry(
    service: Service,
) -> None:
    body = {"operations": creates()}
    got = await cut_off_stream(service.app, "k1", service.key, body, after_chunks=3)
    assert 0 < len(got) < N  # cut off mid-stream
    assert await count_people(service) < N

    response = await retry(service, "k1", body, **NDJSON)
    assert response.status_code == 200
    lines = ndjson(response.text)
    assert [line["index"] for line in lines[:-1]] == list(range(N))
    assert lines[-1]["meta"]["succeeded"] == N
    assert await count_people(service) == N


async def test_the_retry_sends_the_committed_lines_as_they_were_then_the_rest(
    service: Service,
) -> None:
    body = {"operations": creates()}
    got = await cut_off_stream(service.app, "k1", service.key, body, after_chunks=2)
    response = await retry(service, "k1", body, **NDJSON)
    lines = ndjson(response.text)
    assert lines[: len(got)] == got
    ids = [line["body"]["id"] for line in lines[:-1]]
    assert len(set(ids)) == N


async def test_a_finished_stream_replays_as_ndjson_to_an_ndjson_retry(service: Service) -> None:
    body = {"operations": creates(120)}
    first = await service.client.post(
        "/v1/batch", json=body, headers={"Idempotency-Key": "k1", **NDJSON}
    )
    again = await service.client.post(
        "/v1/batch", json=body, headers={"Idempotency-Key": "k1", **NDJSON}
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["content-type"].startswith("application/x-ndjson")
    assert ndjson(again.text) == ndjson(first.text)
    assert await count_people(service) == 120


async def test_a_finished_stream_replays_as_json_to_a_json_retry(service: Service) -> None:
    body = {"operations": creates(120)}
    first = await service.client.post(
        "/v1/batch", json=body, headers={"Idempotency-Key": "k1", **NDJSON}
    )
    again = await service.client.post("/v1/batch", json=body, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    payload = again.json()
    assert payload["results"] == ndjson(first.text)[:-1]
    assert await count_people(service) == 120


async def test_a_json_batch_replays_as_ndjson_to_an_ndjson_retry(service: Service) -> None:
    body = {"operations": creates(10)}
    first = await service.client.post("/v1/batch", json=body, headers={"Idempotency-Key": "k1"})
    again = await service.client.post(
        "/v1/batch", json=body, headers={"Idempotency-Key": "k1", **NDJSON}
    )
    lines = ndjson(again.text)
    assert lines[:-1] == first.json()["results"]
    assert lines[-1]["status"] == 200
    assert lines[-1]["meta"]["total"] == 10


async def test_a_stream_whose_claim_was_taken_over_stops_writing(service: Service) -> None:
    # Another request took the key over while this stream ran (it looked dead): the
    # stream's next slice must write nothing, and the new owner finishes the batch.
    body = {"operations": creates()}
    tenant = service.tenant
    taken = asyncio.Event()
    real_save = Claim.save_progress

    def save_then_lose(claim: Any, tx: Any, seq: int, part: bytes) -> None:
        real_save(claim, tx, seq, part)
        if seq == SLICE and not taken.is_set():
            taken.set()
            # As a retry does with a stale claim: a new owner, same body.
            tx._run(  # the test reaches into the store for the one row
                "UPDATE idempotency_keys SET owner = 'someone else' WHERE tenant = ? AND key = ?",
                (tenant, "k1"),
            )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Claim, "save_progress", save_then_lose)
        response = await service.client.post(
            "/v1/batch", json=body, headers={"Idempotency-Key": "k1", **NDJSON}
        )
    lines = ndjson(response.text)
    assert lines[-1]["error"]["code"] == "IDEMPOTENCY_KEY_TAKEN_OVER"
    # Two slices committed (the second changed owner in its own transaction), no more.
    assert await count_people(service) == 2 * SLICE
