"""kill -9 in the middle of an idempotent NDJSON stream: the retry with the same key, on the
restarted server, applies every operation exactly once (both backends, real processes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.server.test_serve_process import Server, new_key

pytestmark = pytest.mark.slow

N = 1000


def _count(server: Server, key: str) -> int:
    total, cursor = 0, None
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(
            f"{server.url}/v1/collections/people/records",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ).json()
        total += len(page["records"])
        cursor = page["next_cursor"]
        if not cursor:
            return total


def test_a_stream_killed_mid_way_is_applied_once_by_the_retry_after_a_restart(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim whose process died is taken over after this long without a sign of life.
    monkeypatch.setenv("BATCHOPS_IDEMPOTENCY_STALE_AFTER_S", "1")
    # ~8 KB of text per record: slices take long enough for the kill to land mid-stream.
    filler = "lorem ipsum " * 650
    body = orjson.dumps(
        {
            "operations": [
                {"type": "create", "collection": "people", "data": {"n": i, "text": filler}}
                for i in range(N)
            ]
        }
    )
    headers_base = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
    server = Server(db_url, tmp_path)
    with server.running():
        key = new_key(server)
        headers = {**headers_base, "Authorization": f"Bearer {key}", "Idempotency-Key": "k1"}
        with httpx.stream(
            "POST", f"{server.url}/v1/batch", content=body, headers=headers, timeout=60
        ) as response:
            assert response.status_code == 200
            for _ in response.iter_lines():
                server.kill9()  # at the first committed slice
                break
    with server.running():
        committed = _count(server, key)
        assert 0 < committed < N, "the kill should land mid-stream"
        started = time.monotonic()
        while True:
            retry = httpx.post(f"{server.url}/v1/batch", content=body, headers=headers, timeout=60)
            if retry.status_code != 409:
                break
            assert time.monotonic() - started < 15, "the dead request's claim never went stale"
            time.sleep(0.2)
        assert retry.status_code == 200, retry.text
        lines: list[dict[str, Any]] = [orjson.loads(x) for x in retry.text.splitlines()]
        assert [line["index"] for line in lines[:-1]] == list(range(N))
        assert lines[-1]["meta"]["succeeded"] == N
        assert _count(server, key) == N


def test_a_stream_whose_client_goes_away_is_resumed_at_once_by_the_retry(
    db_url: str, tmp_path: Path
) -> None:
    # The server stays up: the stream that lost its client gives the key up at once, so
    # the retry is answered in seconds (the stale threshold is the default 30 s here).
    filler = "lorem ipsum " * 650
    body = orjson.dumps(
        {
            "operations": [
                {"type": "create", "collection": "people", "data": {"n": i, "text": filler}}
                for i in range(N)
            ]
        }
    )
    server = Server(db_url, tmp_path)
    with server.running():
        key = new_key(server)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/x-ndjson",
            "Authorization": f"Bearer {key}",
            "Idempotency-Key": "k1",
        }
        with (
            httpx.Client(timeout=60) as client,
            client.stream(
                "POST", f"{server.url}/v1/batch", content=body, headers=headers
            ) as response,
        ):
            assert response.status_code == 200
            for _ in response.iter_lines():
                break  # and the connection closes with the client
        started = time.monotonic()
        while True:
            retry = httpx.post(f"{server.url}/v1/batch", content=body, headers=headers, timeout=60)
            if retry.status_code != 409:
                break
            assert time.monotonic() - started < 10, "the key stayed in flight"
            time.sleep(0.1)
        assert retry.status_code == 200, retry.text
        lines = [orjson.loads(x) for x in retry.text.splitlines()]
        assert [line["index"] for line in lines[:-1]] == list(range(N))
        assert _count(server, key) == N
