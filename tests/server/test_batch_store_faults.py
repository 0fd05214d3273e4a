"""A store error inside a batch is answered, never a broken or misplaced answer.

Two defects, found by the contract gate (about 1 run in 8, as a top-level 504 for a
search batch with ``timeout_ms: 1``) and by hammering ``/v1/batch`` with tiny deadlines:

- On SQLite an interrupt at the batch's deadline could land while an operation's rows were
  being *read* (SQLite steps a statement as its rows are fetched). That raw sqlite3 error
  escaped the operation and failed the whole batch: a top-level 504 envelope instead of the
  operation's own 504 TIMEOUT result, and a streamed batch broke off mid-response.
- A store error that fails a streamed batch after its 200 and first lines were sent broke
  the chunked response (the client read "incomplete chunked read") instead of ending the
  stream with the error's envelope line.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchops._exceptions import TransientStoreError
from batchops.server.batch import executor
from batchops.server.batch import service as batch_service
from batchops.store.sqlite import SQLiteTx
from tests.server.conftest import Service
from tests.server.test_batch_api import create, stored_ids

NDJSON = {"Accept": "application/x-ndjson"}


SEARCH = {"type": "search", "collection": "people", "query": "anything"}


def interrupt_while_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite search starts with a read that the statement watch interrupts after
    ``execute`` returned, while its rows are fetched (the timing the deadline can hit)."""

    def interrupted(self: SQLiteTx) -> int:
        cur = self._execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) "
            "SELECT x FROM c"
        )
        self._conn.interrupt()
        return len(cur.fetchall())

    monkeypatch.setattr(SQLiteTx, "fts_watermark", interrupted)


async def stored(service: Service) -> list[str]:
    return sorted(await stored_ids(service))


def results_of(text: str, ndjson: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if ndjson:
        lines = [orjson.loads(line) for line in text.splitlines()]
        return lines[:-1], lines[-1]
    body = orjson.loads(text)
    return body["results"], body


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", ["json", "ndjson"])
async def test_a_read_interrupted_at_the_deadline_is_its_operations_504_in_a_non_atomic_batch(
    service: Service, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    interrupt_while_reading(monkeypatch)
    response = await service.client.post(
        "/v1/batch",
        json={"operations": [create(1), SEARCH, create(2)]},
        headers=NDJSON if mode == "ndjson" else {},
    )
    assert response.status_code == (200 if mode == "ndjson" else 207), response.text
    results, _ = results_of(response.text, mode == "ndjson")
    assert [(r["index"], r["status"]) for r in results] == [(0, 201), (1, 504), (2, 201)]
    assert results[1]["error"]["code"] == "TIMEOUT"
    assert await stored(service) == ["p1", "p2"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", ["json", "ndjson"])
async def test_a_read_interrupted_at_the_deadline_fails_an_atomic_batch_as_that_operation(
    service: Service, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    interrupt_while_reading(monkeypatch)
    response = await service.client.post(
        "/v1/batch",
        json={"operations": [create(1), SEARCH], "options": {"atomic": True}},
        headers=NDJSON if mode == "ndjson" else {},
    )
    # The batch's own answer (the failing operation's status), not an error envelope.
    assert response.status_code == (200 if mode == "ndjson" else 504), response.text
    results, meta = results_of(response.text, mode == "ndjson")
    assert [(r["index"], r["status"]) for r in results] == [(0, 424), (1, 504)]
    assert meta["committed"] is False
    assert await stored(service) == []


@pytest.mark.parametrize("atomic", [False, True])
async def test_a_store_failure_after_a_stream_started_ends_it_with_the_error_line(
    service: Service, monkeypatch: pytest.MonkeyPatch, atomic: bool
) -> None:
    # The 200 and its headers are sent before the first transaction runs: the failure can
    # only be said in the stream. It must be said (the envelope as the last line), and the
    # response must end properly, not break off. The key is given up for a retry.
    calls = 0
    real = executor.RunState.run_range

    def fails_second_time(self: executor.RunState, tx: Any, start: int, stop: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2 or atomic:
            raise TransientStoreError("the database is busy (injected)")
        real(self, tx, start, stop)

    monkeypatch.setattr(executor.RunState, "run_range", fails_second_time)
    ops = [create(i) for i in range(120)]  # more than one slice
    body = {"operations": ops, "options": {"atomic": atomic, "max_retries": 0}}
    headers = {**NDJSON, "Idempotency-Key": f"faulty-{atomic}"}
    response = await service.client.post("/v1/batch", json=body, headers=headers)
    assert response.status_code == 200
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    assert lines[-1]["error"]["code"] == "STORE_BUSY", lines[-1]
    written = [line for line in lines[:-1] if line.get("status") == 201]
    assert len(written) == (0 if atomic else batch_service.STREAM_SLICE)
    assert sorted(line["body"]["id"] for line in written) == await stored(service)

    monkeypatch.setattr(executor.RunState, "run_range", real)
    retry = await service.client.post("/v1/batch", json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert await stored(service) == sorted(f"p{i}" for i in range(120))
