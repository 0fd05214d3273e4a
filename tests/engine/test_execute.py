"""batch_execute: ordering, caps, stopping, progress, adaptive, dry run, sync facade."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator

import batchops
import batchops.engine
from batchops import (
    BatchResult,
    Failure,
    ItemCancelledError,
    ItemSkippedError,
    ItemTimeoutError,
    RateLimitedError,
    Success,
)
from batchops.engine import Progress, RetryPolicy, VirtualClock, batch_execute, run_batch
from tests.engine.conftest import Spy


def test_the_top_level_batch_execute_is_the_engines() -> None:
    # batchops.engine.__all__ itself is pinned by tests/test_public_api.py, derived from
    # the package (the hand-copied list that was here drifted with every new name).
    assert batchops.batch_execute is batch_execute
    assert set(batchops.engine.__all__) >= {"batch_execute", "batch_stream", "run_batch"}


async def test_results_keep_input_order_under_random_latencies(clock: VirtualClock) -> None:
    rng = random.Random(7)
    delays = [rng.uniform(0.0, 3.0) for _ in range(200)]

    async def op(i: int) -> int:
        await clock.sleep(delays[i])
        return i * 10

    result = await batch_execute(range(200), op, max_concurrent=17, clock=clock)

    assert isinstance(result, BatchResult)
    assert [r.index for r in result] == list(range(200))
    assert result.values() == [i * 10 for i in range(200)]
    assert result.ok


async def test_failures_are_data_and_do_not_stop_other_items() -> None:
    async def op(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(f"bad {i}")
        return i

    result = await batch_execute(range(9), op, max_concurrent=4)

    assert result.values() == [1, 2, 4, 5, 7, 8]
    assert [f.index for f in result.failures()] == [0, 3, 6]
    assert all(isinstance(f.error, ValueError) and f.status == "failed" for f in result.failures())
    assert result.summary.failed == 3


async def test_async_iterables_are_accepted_and_ordered(clock: VirtualClock) -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(50):
            yield i

    async def op(i: int) -> int:
        await clock.sleep((50 - i) * 0.01)
        return i

    result = await batch_execute(numbers(), op, max_concurrent=8, clock=clock)

    assert result.values() == list(range(50))


async def test_peak_in_flight_never_exceeds_max_concurrent(clock: VirtualClock, spy: Spy) -> None:
    rng = random.Random(3)

    async def op(i: int) -> int:
        spy.enter(i)
        await clock.sleep(rng.uniform(0.1, 1.0))
        spy.leave()
        return i

    await batch_execute(range(100), op, max_concurrent=5, clock=clock)

    assert spy.peak == 5


async def test_rate_cap_spaces_every_start_by_at_least_one_over_rate(
    clock: VirtualClock, spy: Spy
) -> None:
    async def op(i: int) -> int:
        spy.enter(i)
        await clock.sleep(0.01)
        spy.leave()
        return i

    await batch_execute(range(20), op, max_concurrent=10, max_per_second=4, clock=clock)

    times = spy.start_times()
    assert times[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.25 - 1e-9
    # No slack either: 20 starts take 19 intervals.
    assert times[-1] == 19 * 0.25


async def test_fail_fast_cancels_running_items_and_skips_unstarted_ones(
    clock: VirtualClock, spy: Spy
) -> None:
    async def op(i: int) -> int:
        spy.enter(i)
        await clock.sleep(1.0 if i == 1 else 10.0)
        if i == 1:
            raise ValueError("boom")
        return i

    result = await batch_execute(range(10), op, max_concurrent=3, fail_fast=True, clock=clock)

    assert len(result) == 10
    statuses = [r.status if isinstance(r, Failure) else "ok" for r in result]
    assert statuses == ["cancelled", "failed"] + ["cancelled"] + ["skipped"] * 7
    assert isinstance(result[0], Failure)
    assert isinstance(result[0].error, ItemCancelledError)
    assert isinstance(result[5], Failure)
    assert isinstance(result[5].error, ItemSkippedError)
    assert spy.calls == [0, 1, 2]
    assert clock.now() == 1.0
    assert result.summary.skipped == 7


async def test_fail_fast_stops_pulling_an_endless_async_iterable(clock: VirtualClock) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled - 1

    async def op(i: int) -> int:
        await clock.sleep(1.0)
        if i == 4:
            raise ValueError("stop here")
        return i

    result = await batch_execute(endless(), op, max_concurrent=2, fail_fast=True, clock=clock)

    assert result.values() == [0, 1, 2, 3]
    assert [r.status for r in result.failures()] == ["failed", "cancelled"]
    assert pulled == 6


async def test_batch_timeout_keeps_finished_results_and_marks_the_rest(
    clock: VirtualClock,
) -> None:
    async def op(i: int) -> int:
        await clock.sleep(10.0 if i == 1 else 1.0)
        return i

    result = await batch_execute(range(6), op, max_concurrent=2, timeout=2.5, clock=clock)

    assert [r.index for r in result] == list(range(6))
    assert result.values() == [0, 2]
    statuses = {r.index: r.status for r in result.failures()}
    assert statuses == {1: "timeout", 3: "timeout", 4: "timeout", 5: "timeout"}
    assert all(isinstance(f.error, ItemTimeoutError) for f in result.failures())
    assert clock.now() == 2.5


async def test_item_timeout_fails_a_slow_attempt_as_timeout(clock: VirtualClock) -> None:
    async def op(i: int) -> int:
        await clock.sleep(5.0 if i == 0 else 0.5)
        return i

    result = await batch_execute(range(3), op, item_timeout=1.0, clock=clock)

    failure = result[0]
    assert isinstance(failure, Failure)
    assert failure.status == "timeout"
    assert isinstance(failure.error, ItemTimeoutError)
    assert result.values() == [1, 2]
    assert clock.now() == 1.0


async def test_item_timeout_is_retried_like_any_timeout(clock: VirtualClock) -> None:
    attempts: list[float] = []

    async def op(i: int) -> str:
        attempts.append(clock.now())
        await clock.sleep(5.0 if len(attempts) == 1 else 0.5)
        return "done"

    result = await batch_execute(
        [0],
        op,
        item_timeout=1.0,
        retry=RetryPolicy(attempts=3, initial_backoff=0.25, jitter=False),
        clock=clock,
    )

    assert result[0] == Success(0, "done", attempts=2)
    assert attempts == [0.0, 1.25]


async def test_progress_counts_add_up_to_the_total() -> None:
    seen: list[Progress] = []

    async def op(i: int) -> int:
        if i % 4 == 0:
            raise ValueError("bad")
        return i

    await batch_execute(range(10), op, on_progress=seen.append, max_concurrent=3)

    assert [p.completed for p in seen] == list(range(1, 11))
    assert all(p.succeeded + p.failed == p.completed for p in seen)
    assert all(p.total == 10 for p in seen)
    final = seen[-1]
    assert (final.completed, final.succeeded, final.failed) == (10, 7, 3)
    assert final.eta_s in (0.0, None)


async def test_progress_total_is_none_for_an_async_iterable() -> None:
    seen: list[Progress] = []

    async def gen() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def op(i: int) -> int:
        return i

    await batch_execute(gen(), op, on_progress=seen.append)

    assert [p.total for p in seen] == [None, None, None]
    assert seen[-1].eta_s is None


async def test_progress_reports_rate_and_eta_from_the_clock(clock: VirtualClock) -> None:
    seen: list[Progress] = []

    async def op(i: int) -> int:
        await clock.sleep(1.0)
        return i

    await batch_execute(range(4), op, max_concurrent=1, on_progress=seen.append, clock=clock)

    assert seen[1].rate_per_s == 1.0
    assert seen[1].eta_s == 2.0


async def test_progress_bar_is_silent_when_stderr_is_not_a_terminal(capsys: object) -> None:
    async def op(i: int) -> int:
        return i

    result = await batch_execute(range(5), op, progress=True)

    assert result.ok
    assert capsys.readouterr().err == ""  # type: ignore[attr-defined]


async def test_adaptive_halves_on_429_and_grows_back_after_successes(
    clock: VirtualClock, spy: Spy
) -> None:
    limits: list[int] = []
    in_flight_at_start: list[int] = []
    failed_once = False

    async def op(i: int) -> int:
        nonlocal failed_once
        spy.enter(i)
        in_flight_at_start.append(spy.in_flight)
        await clock.sleep(1.0)
        spy.leave()
        if i == 0 and not failed_once:
            failed_once = True
            raise RateLimitedError("slow down")
        return i

    result = await batch_execute(
        range(60),
        op,
        max_concurrent=8,
        adaptive=True,
        retry=RetryPolicy(attempts=2, initial_backoff=0.01, jitter=False),
        on_progress=lambda p: limits.append(p.concurrency),
        clock=clock,
    )

    assert result.ok
    assert max(in_flight_at_start[:8]) == 8
    # One overload halves 8 -> 4; the next successes grow it back one step at a time.
    assert limits[0] == 4
    assert limits == sorted(limits)
    assert set(limits) >= {4, 5, 6, 7, 8}
    assert max(in_flight_at_start[8:16]) <= 5


async def test_dry_run_validates_instead_of_calling_the_operation() -> None:
    async def op(i: int) -> int:
        raise AssertionError("dry run must not call the operation")

    result = await batch_execute(range(6), op, dry_run=True, validate=lambda i: i % 2 == 0)

    assert result.values() == [0, 2, 4]
    assert [f.index for f in result.failures()] == [1, 3, 5]
    assert all(isinstance(f.error, ValueError) for f in result.failures())


async def test_dry_run_without_validate_reports_every_item_as_would_run() -> None:
    async def op(i: str) -> str:
        raise AssertionError("dry run must not call the operation")

    async def validate(item: str) -> str:
        return item.upper()

    plain = await batch_execute(["a", "b"], op, dry_run=True)
    mapped = await batch_execute(["a", "b"], op, dry_run=True, validate=validate)

    assert plain.values() == ["a", "b"]
    assert mapped.values() == ["A", "B"]


async def test_run_batch_works_inside_a_running_event_loop() -> None:
    async def op(i: int) -> int:
        await asyncio.sleep(0)
        return i + 1

    result = run_batch(range(5), op, max_concurrent=2)

    assert result.values() == [1, 2, 3, 4, 5]


def test_run_batch_works_without_an_event_loop() -> None:
    async def op(i: int) -> int:
        return -i

    assert run_batch([1, 2], op).values() == [-1, -2]


async def test_a_lambda_returning_a_coroutine_is_accepted() -> None:
    async def double(i: int) -> int:
        return 2 * i

    result = await batch_execute([1, 2], lambda i: double(i))

    assert result.values() == [2, 4]


async def test_cancelling_the_caller_cancels_running_items(clock: VirtualClock) -> None:
    cancelled: list[int] = []
    started: list[int] = []
    all_started = asyncio.Event()

    async def op(i: int) -> int:
        started.append(i)
        if len(started) == 3:
            all_started.set()
        try:
            await clock.sleep(100.0)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    task = asyncio.create_task(batch_execute(range(10), op, max_concurrent=3, clock=clock))
    await all_started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert task.cancelled()
    assert sorted(cancelled) == [0, 1, 2]


async def test_an_empty_input_gives_an_empty_result() -> None:
    async def op(i: int) -> int:
        return i

    result = await batch_execute([], op)

    assert len(result) == 0
    assert result.ok
