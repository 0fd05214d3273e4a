"""Adaptive operations per request (``target_ms=`` / ``chunk_size=AdaptiveChunkSize``).

The server is a fake transport that answers every ``/v1/batch`` after a duration on a
:class:`VirtualClock` (the same clock the sizing policy reads), so the sizes sent are
exact and nothing sleeps for real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from batchops import RetryPolicy
from batchops.client._batch import BatchRunner
from batchops.client._transport import Reply
from batchops.engine import AdaptiveChunkSize, VirtualClock
from tests.client.fake_batch_server import FakeServer


class TimedServer(FakeServer):
    """Answers each batch 207 (every operation 201) after ``seconds(n_ops)`` on ``clock``,
    or with the next status of ``statuses`` first (a whole-request error)."""

    def __init__(
        self,
        clock: VirtualClock,
        seconds: Callable[[int], float],
        statuses: list[int] | None = None,
    ) -> None:
        super().__init__(self._timed)
        self.clock = clock
        self.seconds = seconds
        self.statuses = list(statuses or [])

    async def _timed(self, ops: list[dict[str, Any]]) -> Reply:
        count = len(ops)
        await self.clock.sleep(self.seconds(count))
        if self.statuses:
            status = self.statuses.pop(0)
            error = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "busy"}}
            return Reply(status, orjson.dumps(error), 0.0, None, False)
        results = [{"index": i, "status": 201, "body": {}} for i in range(count)]
        return Reply(207, orjson.dumps({"results": results}), None, None, False)


def runner(
    server: TimedServer, *, max_ops: int = 1000, max_bytes: int = 1 << 20, concurrent: int = 1
) -> BatchRunner:
    return BatchRunner(
        server,
        max_batch_operations=max_ops,
        max_batch_bytes=max_bytes,
        max_concurrent=concurrent,
        retry=RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.001),
    )


def creates(count: int) -> list[dict[str, Any]]:
    return [{"type": "create", "collection": "c", "data": {"i": i}} for i in range(count)]


async def test_sizes_grow_by_the_increase_while_requests_finish_under_target() -> None:
    clock = VirtualClock()
    server = TimedServer(clock, lambda n: 0.01)
    sizing = AdaptiveChunkSize(100, 5, 50, start=10, increase=5, clock=clock)
    result = await runner(server).execute(creates(400), chunk_size=sizing)
    assert result.ok
    assert server.sizes == [10, 15, 20, 25, 30, 35, 40, 45, 50, 50, 50, 30]


async def test_a_request_over_target_halves_the_next_size() -> None:
    clock = VirtualClock()
    # 1/64 s an operation (exact in binary, as the clock's sums are): 16 take 250 ms.
    server = TimedServer(clock, lambda n: n / 64)
    sizing = AdaptiveChunkSize(250, 4, 100, start=32, increase=4, clock=clock)
    result = await runner(server).execute(creates(120), chunk_size=sizing)
    assert result.ok
    # 32 (over: halve) → 16 (on target: +4) → 20 (over) → 10 → 14 → 18 (over) → 9 → rest.
    assert server.sizes == [32, 16, 20, 10, 14, 18, 9, 1]


async def test_sizes_never_leave_min_and_max() -> None:
    clock = VirtualClock()
    slow = TimedServer(clock, lambda n: 5.0)
    sizing = AdaptiveChunkSize(100, 8, 30, start=30, increase=50, clock=clock)
    await runner(slow).execute(creates(100), chunk_size=sizing)
    assert slow.sizes == [30, 15, 8, 8, 8, 8, 8, 8, 7]
    fast = TimedServer(clock, lambda n: 0.0)
    await runner(fast).execute(creates(100), chunk_size=sizing)
    assert fast.sizes == [8, 30, 30, 30, 2]


async def test_the_servers_operation_limit_stays_a_hard_bound() -> None:
    clock = VirtualClock()
    server = TimedServer(clock, lambda n: 0.0)
    sizing = AdaptiveChunkSize(100, 1, 500, start=50, increase=100, clock=clock)
    await runner(server, max_ops=30).execute(creates(100), chunk_size=sizing)
    assert server.sizes == [30, 30, 30, 10]


async def test_the_servers_byte_limit_stays_a_hard_bound() -> None:
    clock = VirtualClock()
    server = TimedServer(clock, lambda n: 0.0)
    ops = creates(40)
    op_bytes = max(len(orjson.dumps(op)) for op in ops) + 1
    sizing = AdaptiveChunkSize(100, 1, 500, start=50, clock=clock)
    await runner(server, max_bytes=512 + 7 * op_bytes).execute(ops, chunk_size=sizing)
    assert server.sizes == [7, 7, 7, 7, 7, 5]


async def test_concurrent_slow_requests_cut_in_one_window_halve_the_size_once() -> None:
    clock = VirtualClock()
    server = TimedServer(clock, lambda n: 1.0)
    sizing = AdaptiveChunkSize(100, 1, 100, start=40, clock=clock)
    await runner(server, concurrent=4).execute(creates(300), chunk_size=sizing)
    assert server.sizes[:8] == [40, 40, 40, 40, 20, 20, 20, 20]


async def test_a_503_halves_the_size_and_the_request_is_retried_whole() -> None:
    clock = VirtualClock()
    server = TimedServer(clock, lambda n: 0.01, statuses=[503])
    sizing = AdaptiveChunkSize(100, 1, 100, start=40, increase=2, clock=clock)
    result = await runner(server).execute(creates(70), chunk_size=sizing)
    assert result.ok
    # 40 → 503: halved to 20; the same 40 again (same key) → 207: 22; then the rest.
    assert server.sizes == [40, 40, 22, 8]


async def test_target_ms_alone_adapts_between_one_and_the_chunk_size() -> None:
    clock = VirtualClock()
    server = TimedServer(clock, lambda n: 0.0)
    # Real clock, answers at once: every request is under a 10 s target.
    result = await runner(server).execute(creates(300), target_ms=10_000, chunk_size=200)
    assert result.ok
    assert server.sizes == [20, 30, 40, 50, 60, 70, 30]


async def test_target_ms_and_an_adaptive_chunk_size_together_are_refused() -> None:
    server = TimedServer(VirtualClock(), lambda n: 0.0)
    with pytest.raises(ValueError, match="not both"):
        await runner(server).execute(creates(3), target_ms=100, chunk_size=AdaptiveChunkSize(50))
    assert server.sizes == []


async def test_operations_answered_503_inside_a_207_halve_the_size_too() -> None:
    clock = VirtualClock()
    busy_once = [True]

    class PartlyBusy(TimedServer):
        async def request(
            self,
            method: str,
            path: str,
            *,
            body: bytes | None = None,
            headers: dict[str, str] | None = None,
        ) -> Reply:
            reply = await super().request(method, path, body=body, headers=headers)
            if not busy_once:
                return reply
            busy_once.clear()  # the first request only
            results = orjson.loads(reply.data)["results"]
            results[0] = {"index": 0, "status": 503, "error": {"code": "STORE_BUSY"}}
            return Reply(207, orjson.dumps({"results": results}), None, None, False)

    server = PartlyBusy(clock, lambda n: 0.01)
    sizing = AdaptiveChunkSize(100, 1, 100, start=40, increase=2, clock=clock)
    result = await runner(server).execute(creates(70), chunk_size=sizing)
    assert result.ok
    # 40 with one 503 inside: halved to 20; that operation alone again (+2); then 22, 8.
    assert server.sizes == [40, 1, 22, 8]


@pytest.mark.parametrize(
    "resumable", [{"checkpoint": "journal.jsonl"}, {"idempotency_prefix": "p"}]
)
async def test_an_adaptive_size_in_a_resumable_run_is_refused(resumable: dict[str, Any]) -> None:
    server = TimedServer(VirtualClock(), lambda n: 0.0)
    stream = runner(server).stream(creates(3), target_ms=100, **resumable)
    with pytest.raises(ValueError, match="needs a fixed chunk_size"):
        await anext(stream)
    assert server.sizes == []
