"""Batcher: the exact batches sent, dispatch timing, dedupe, groups, limits, lifecycle."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Hashable, Sequence

import pytest

from batchops import RetryPolicy
from batchops._exceptions import BatchContractError, BatcherClosedError
from batchops.coalesce import Batcher, Cache
from batchops.engine import TimerHandle, VirtualClock


class Spy:
    """A batch_fn that records every batch it receives and answers ``key * 10``."""

    def __init__(self) -> None:
        self.calls: list[list[object]] = []

    async def __call__(self, keys: list[int]) -> list[int]:
        self.calls.append(list(keys))
        return [k * 10 for k in keys]


class _Timer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A Clock whose time moves only when the test calls ``advance``."""

    def __init__(self) -> None:
        self.t = 0.0
        self.timers: list[_Timer] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the Batcher should not sleep here")

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        timer = _Timer(when, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.t += seconds
        due = [t for t in self.timers if t.when <= self.t and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due]
        for timer in due:
            timer.callback()


async def settle(ticks: int = 5) -> None:
    """Let every ready callback and task run, without letting any time pass."""
    for _ in range(ticks):
        await asyncio.sleep(0)


async def test_loads_gathered_in_one_tick_share_one_batch() -> None:
    spy = Spy()
    loader = Batcher(spy)
    values = await asyncio.gather(*(loader.load(k) for k in (1, 2, 3)))
    assert values == [10, 20, 30]
    assert spy.calls == [[1, 2, 3]]


async def test_loads_awaited_one_by_one_are_separate_batches_without_a_window() -> None:
    spy = Spy()
    loader = Batcher(spy)
    assert await loader.load(1) == 10
    assert await loader.load(2) == 20
    assert spy.calls == [[1], [2]]


async def test_max_batch_size_splits_the_keys_in_arrival_order() -> None:
    spy = Spy()
    loader = Batcher(spy, max_batch_size=2)
    values = await loader.load_many([1, 2, 3, 4, 5])
    assert values == [10, 20, 30, 40, 50]
    assert spy.calls == [[1, 2], [3, 4], [5]]


async def test_a_full_batch_is_dispatched_at_once_without_waiting_for_the_tick() -> None:
    spy = Spy()
    loader = Batcher(spy, max_batch_size=2)
    first, second = loader.load(1), loader.load(2)
    assert spy.calls == []  # dispatched as a Task: runs at the next tick
    await settle(1)
    assert spy.calls == [[1, 2]]
    assert (await first, await second) == (10, 20)


async def test_nothing_is_dispatched_before_the_time_window_ends() -> None:
    spy, clock = Spy(), ManualClock()
    loader = Batcher(spy, max_delay_ms=5, clock=clock)
    first = loader.load(1)
    await settle()
    clock.advance(0.003)
    second = loader.load(2)  # joins the batch opened by the first key
    await settle()
    assert spy.calls == []
    clock.advance(0.0019)
    await settle()
    assert spy.calls == []
    clock.advance(0.0001)  # 5 ms after the FIRST key
    await settle()
    assert spy.calls == [[1, 2]]
    assert (await first, await second) == (10, 20)


async def test_max_batch_size_dispatches_before_the_window_ends() -> None:
    spy, clock = Spy(), ManualClock()
    loader = Batcher(spy, max_batch_size=3, max_delay_ms=1000, clock=clock)
    futures = [loader.load(k) for k in (1, 2, 3, 4)]
    await settle()
    assert spy.calls == [[1, 2, 3]]
    clock.advance(1.0)
    await settle()
    assert spy.calls == [[1, 2, 3], [4]]
    assert [await f for f in futures] == [10, 20, 30, 40]


async def test_the_window_works_with_the_engines_virtual_clock() -> None:
    spy, clock = Spy(), VirtualClock()
    loader = Batcher(spy, max_delay_ms=50, clock=clock)
    assert await loader.load_many([1, 2]) == [10, 20]
    assert spy.calls == [[1, 2]]
    assert clock.now() == pytest.approx(0.05)


async def test_identical_keys_in_flight_share_one_slot() -> None:
    spy = Spy()
    loader = Batcher(spy)
    assert await loader.load_many([1, 1, 2, 1]) == [10, 10, 20, 10]
    assert spy.calls == [[1, 2]]


async def test_a_key_already_dispatched_is_shared_too() -> None:
    gate = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        await gate.wait()
        return keys

    calls: list[list[int]] = []
    loader = Batcher(slow)
    first = loader.load(7)
    await settle()
    second = loader.load(7)
    gate.set()
    assert (await first, await second) == (7, 7)
    assert calls == [[7]]


async def test_without_dedupe_every_load_gets_its_own_slot() -> None:
    spy = Spy()
    loader = Batcher(spy, dedupe=False)
    assert await loader.load_many([1, 1, 2]) == [10, 10, 20]
    assert spy.calls == [[1, 1, 2]]


async def test_key_function_decides_what_is_identical() -> None:
    calls: list[list[str]] = []

    async def upper(keys: list[str]) -> list[str]:
        calls.append(list(keys))
        return [k.upper() for k in keys]

    loader: Batcher[str, str] = Batcher(upper, key=str.lower)
    assert await loader.load_many(["a", "A", "b"]) == ["A", "A", "B"]
    assert calls == [["a", "b"]]


async def test_cancelling_one_waiter_does_not_cancel_a_shared_key() -> None:
    gate = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        await gate.wait()
        return keys

    loader = Batcher(slow)
    impatient = asyncio.ensure_future(loader.load(1))
    patient = asyncio.ensure_future(loader.load(1))
    await settle()
    impatient.cancel()
    await settle()
    gate.set()
    assert await patient == 1
    assert impatient.cancelled()


async def test_an_exception_at_a_keys_index_fails_only_that_key() -> None:
    async def some_missing(keys: list[int]) -> list[int | Exception]:
        return [KeyError(k) if k % 2 else k for k in keys]

    loader = Batcher(some_missing)
    results = await loader.load_many([1, 2, 3, 4])
    assert results[1::2] == [2, 4]
    assert [type(r) for r in results[0::2]] == [KeyError, KeyError]
    with pytest.raises(KeyError):
        await loader.load(5)


async def test_an_exception_from_batch_fn_rejects_every_waiter_of_that_batch() -> None:
    boom = RuntimeError("backend down")
    calls: list[list[int]] = []

    async def failing(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        raise boom

    loader = Batcher(failing, cache=Cache(max_size=10))
    assert await loader.load_many([1, 2]) == [boom, boom]
    with pytest.raises(RuntimeError, match="backend down"):
        await loader.load(1)  # nothing was cached: batch_fn is called again
    assert calls == [[1, 2], [1]]


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ([10], "got 2 keys and returned 1 values"),
        ([10, 20, 30], "got 2 keys and returned 3 values"),
        ({1: 10, 2: 20}, r"returned dict for 2 keys; .*\[found.get\(k\) for k in keys\]"),
        (None, "returned NoneType for 2 keys"),
        ("ab", "returned str for 2 keys"),
    ],
)
async def test_a_result_that_breaks_the_contract_fails_every_waiter_with_a_clear_error(
    returned: object, expected: str
) -> None:
    async def wrong(keys: list[int]) -> object:
        return returned

    loader: Batcher[int, int] = Batcher(wrong)  # type: ignore[arg-type]
    error, other = await loader.load_many([1, 2])
    assert isinstance(error, BatchContractError)
    assert other is error
    assert re.search(r"one value \(or Exception\) per key, in key order", str(error))
    assert re.search(expected, str(error))


async def test_a_tuple_or_other_sequence_is_a_valid_result() -> None:
    async def as_tuple(keys: list[int]) -> Sequence[int]:
        return tuple(keys)

    loader = Batcher(as_tuple)
    assert await loader.load_many([1, 2]) == [1, 2]


async def test_keys_of_different_groups_never_share_a_batch() -> None:
    calls: list[list[tuple[str, str]]] = []

    async def send(keys: list[tuple[str, str]]) -> list[str]:
        calls.append(list(keys))
        return [f"{m} {p}" for m, p in keys]

    by_method: Callable[[tuple[str, str]], Hashable] = lambda req: req[0]  # noqa: E731
    loader = Batcher(send, group=by_method)
    requests = [("GET", "/a"), ("POST", "/b"), ("GET", "/c")]
    assert await loader.load_many(requests) == ["GET /a", "POST /b", "GET /c"]
    assert sorted(calls) == [[("GET", "/a"), ("GET", "/c")], [("POST", "/b")]]


async def test_max_concurrent_batches_caps_batch_fn_calls_in_flight() -> None:
    in_flight = peak = 0
    calls: list[list[int]] = []

    async def tracked(keys: list[int]) -> list[int]:
        nonlocal in_flight, peak
        calls.append(list(keys))
        in_flight += 1
        peak = max(peak, in_flight)
        await settle(3)
        in_flight -= 1
        return keys

    loader = Batcher(tracked, max_batch_size=2, max_concurrent_batches=2)
    assert await loader.load_many(list(range(12))) == list(range(12))
    assert len(calls) == 6
    assert peak == 2


async def test_max_pending_makes_a_third_load_wait_until_a_batch_completes() -> None:
    gate = asyncio.Event()
    calls: list[list[int]] = []

    async def gated(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        await gate.wait()
        return keys

    loader = Batcher(gated, max_pending=2)
    first, second = loader.load(1), loader.load(2)
    third = asyncio.ensure_future(loader.load(3))
    await settle()
    assert calls == [[1, 2]]  # key 3 is held back, not queued
    assert not third.done()
    gate.set()
    assert list(await asyncio.gather(first, second, third)) == [1, 2, 3]
    assert calls == [[1, 2], [3]]


async def test_flush_dispatches_now_and_waits_for_the_batch() -> None:
    spy, clock = Spy(), ManualClock()
    loader = Batcher(spy, max_delay_ms=60_000, clock=clock)
    future = asyncio.ensure_future(loader.load(1))  # the load's own Future: no new Task
    await loader.flush()
    assert spy.calls == [[1]]
    assert future.done()
    assert await future == 10


async def test_aclose_completes_pending_work_then_refuses_loads() -> None:
    spy, clock = Spy(), ManualClock()
    loader = Batcher(spy, max_delay_ms=60_000, clock=clock)
    future = loader.load(1)
    await loader.aclose()
    assert await future == 10
    with pytest.raises(BatcherClosedError, match="closed Batcher"):
        await loader.load(2)
    assert spy.calls == [[1]]


async def test_async_with_closes_the_batcher_on_exit() -> None:
    spy = Spy()
    async with Batcher(spy, max_delay_ms=10) as loader:
        future = loader.load(1)
    assert await future == 10
    with pytest.raises(BatcherClosedError):
        loader.load(1)


async def test_aclose_lets_a_load_waiting_for_room_finish() -> None:
    spy = Spy()
    loader = Batcher(spy, max_pending=1)
    first = loader.load(1)
    second = asyncio.ensure_future(loader.load(2))
    await settle(1)
    await loader.aclose()
    assert (await first, await second) == (10, 20)
    assert spy.calls == [[1], [2]]


async def test_whole_batch_errors_are_retried_with_the_retry_policy() -> None:
    clock = VirtualClock()
    calls: list[list[int]] = []

    async def flaky(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        if len(calls) < 3:
            raise ConnectionError("reset")
        return keys

    retry = RetryPolicy(attempts=3, initial_backoff=0.1, jitter=False)
    loader = Batcher(flaky, retry=retry, clock=clock)
    assert await loader.load_many([1, 2]) == [1, 2]
    assert calls == [[1, 2], [1, 2], [1, 2]]
    assert clock.sleeps == [0.1, 0.2]


async def test_errors_the_policy_does_not_retry_fail_at_once() -> None:
    calls: list[list[int]] = []

    async def buggy(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        raise KeyError("bug")

    loader = Batcher(buggy, retry=RetryPolicy(attempts=5), clock=VirtualClock())
    with pytest.raises(KeyError):
        await loader.load(1)
    assert calls == [[1]]


async def test_per_key_errors_are_not_retried() -> None:
    calls: list[list[int]] = []

    async def one_bad(keys: list[int]) -> list[int | Exception]:
        calls.append(list(keys))
        return [ConnectionError("x") if k == 2 else k for k in keys]

    loader = Batcher(one_bad, retry=RetryPolicy(attempts=3), clock=VirtualClock())
    results = await loader.load_many([1, 2])
    assert results[0] == 1
    assert isinstance(results[1], ConnectionError)
    assert calls == [[1, 2]]


async def test_clear_makes_the_next_load_call_batch_fn_again() -> None:
    spy = Spy()
    loader = Batcher(spy, cache=Cache(max_size=10))
    assert await loader.load(1) == 10
    assert await loader.load(1) == 10
    loader.clear(1)
    assert await loader.load(1) == 10
    loader.clear_all()
    assert await loader.load(1) == 10
    assert spy.calls == [[1], [1], [1]]


async def test_clear_detaches_a_key_in_flight() -> None:
    gate = asyncio.Event()
    calls: list[list[int]] = []

    async def slow(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        await gate.wait()
        return keys

    loader = Batcher(slow)
    stale = loader.load(1)
    await settle()
    loader.clear(1)
    fresh = loader.load(1)
    await settle()
    gate.set()
    assert (await stale, await fresh) == (1, 1)
    assert calls == [[1], [1]]


def test_repr_shows_the_queue() -> None:
    assert repr(Batcher(Spy())) == "<Batcher queued=0 in_flight_batches=0 closed=False>"


async def test_a_load_cancelled_while_waiting_for_room_leaves_no_trace() -> None:
    spy = Spy()
    loader = Batcher(spy, max_pending=1)
    first = loader.load(1)
    waiting = asyncio.ensure_future(loader.load(2))
    await settle(1)
    waiting.cancel()
    assert await first == 10
    assert await loader.load(3) == 30
    assert spy.calls == [[1], [3]]


async def test_flush_and_aclose_dispatch_every_group() -> None:
    calls: list[list[int]] = []

    async def record(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        return keys

    clock = ManualClock()
    loader = Batcher(record, group=lambda k: k % 2, max_delay_ms=1000, clock=clock)
    futures = [loader.load(k) for k in (1, 2, 3)]
    await loader.flush()
    assert sorted(calls) == [[1, 3], [2]]
    late = loader.load(4)
    await loader.aclose()
    assert [await f for f in [*futures, late]] == [1, 2, 3, 4]
    assert calls[-1] == [4]
