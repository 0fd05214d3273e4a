"""Batcher options of issue 15: per-load timeouts, the overflow policy, batch events."""

from __future__ import annotations

import asyncio
import logging

import pytest

from batchops import BatcherFullError, BatcherTimeoutError
from batchops.coalesce import Batcher, BatchEvent
from batchops.engine import VirtualClock


async def settle() -> None:
    """Let every runnable callback and task run (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Gated:
    """A batch_fn that records its batches and answers ``key * 10`` once ``gate`` is set."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()

    async def __call__(self, keys: list[int]) -> list[int]:
        self.calls.append(list(keys))
        await self.gate.wait()
        return [k * 10 for k in keys]


# -- load(key, timeout=...) -------------------------------------------------------------


async def test_a_load_past_its_timeout_raises_and_the_other_load_of_its_batch_gets_its_value() -> (
    None
):
    fn, clock = Gated(), VirtualClock()
    loader = Batcher(fn, clock=clock)
    slow = asyncio.ensure_future(loader.load(1, timeout=2.0))
    other = loader.load(2)
    with pytest.raises(BatcherTimeoutError, match=r"load\(1\) got no answer within 2.0 s"):
        await slow
    assert clock.now() == 2.0
    fn.gate.set()
    assert await other == 20
    assert fn.calls == [[1, 2]]


def test_batcher_timeout_is_a_timeout_error() -> None:
    assert issubclass(BatcherTimeoutError, TimeoutError)


async def test_a_load_that_times_out_before_its_batch_is_sent_leaves_the_batch() -> None:
    fn, clock = Gated(), VirtualClock()
    fn.gate.set()
    loader = Batcher(fn, max_delay_ms=5_000, clock=clock)
    gone = asyncio.ensure_future(loader.load(1, timeout=1.0))
    kept = asyncio.ensure_future(loader.load(2))
    results = await asyncio.gather(gone, kept, return_exceptions=True)
    assert isinstance(results[0], BatcherTimeoutError)
    assert results[1] == 20
    assert fn.calls == [[2]]


async def test_a_timed_out_load_gives_its_max_pending_room_back() -> None:
    fn, clock = Gated(), VirtualClock()
    fn.gate.set()
    loader = Batcher(fn, max_delay_ms=5_000, max_pending=1, overflow="raise", clock=clock)
    with pytest.raises(BatcherTimeoutError):
        await loader.load(1, timeout=1.0)
    assert await loader.load(2) == 20  # not BatcherFullError: the slot was freed
    assert fn.calls == [[2]]


async def test_a_deduplicated_load_timing_out_leaves_the_first_load_its_answer() -> None:
    fn, clock = Gated(), VirtualClock()
    loader = Batcher(fn, clock=clock)
    first = loader.load(7)
    second = asyncio.ensure_future(loader.load(7, timeout=1.0))
    with pytest.raises(BatcherTimeoutError):
        await second
    fn.gate.set()
    assert await first == 70
    assert fn.calls == [[7]]


async def test_a_late_answer_for_a_timed_out_load_is_dropped_and_the_key_loads_again() -> None:
    fn, clock = Gated(), VirtualClock()
    loader = Batcher(fn, clock=clock)
    with pytest.raises(BatcherTimeoutError):
        await loader.load(3, timeout=1.0)
    fn.gate.set()
    await loader.flush()  # the late answer arrives; nobody is there to take it
    assert await loader.load(3) == 30
    assert fn.calls == [[3], [3]]
    await settle()
    assert "queued=0 in_flight_batches=0" in repr(loader)


async def test_a_timeout_covers_waiting_for_room() -> None:
    fn, clock = Gated(), VirtualClock()
    loader = Batcher(fn, max_pending=1, clock=clock)
    held = loader.load(1)
    await settle()
    with pytest.raises(BatcherTimeoutError):
        await loader.load(2, timeout=3.0)
    fn.gate.set()
    assert await held == 10
    assert fn.calls == [[1]]


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), True, "1"])
async def test_a_timeout_that_is_not_positive_seconds_is_refused(seconds: object) -> None:
    loader = Batcher(Gated())
    with pytest.raises(ValueError, match="must be seconds > 0"):
        loader.load(1, timeout=seconds)  # type: ignore[arg-type]


# -- overflow ---------------------------------------------------------------------------


async def test_overflow_raise_refuses_a_load_at_once_when_max_pending_keys_are_out() -> None:
    fn = Gated()
    loader = Batcher(fn, max_pending=2, overflow="raise")
    first, second = loader.load(1), loader.load(2)
    with pytest.raises(BatcherFullError, match="max_pending=2"):
        loader.load(3)
    fn.gate.set()
    assert [await first, await second] == [10, 20]
    assert fn.calls == [[1, 2]]


async def test_overflow_block_makes_the_load_wait_until_a_batch_completes() -> None:
    fn = Gated()
    loader = Batcher(fn, max_pending=2, overflow="block")
    first, second = loader.load(1), loader.load(2)
    third = asyncio.ensure_future(loader.load(3))
    await settle()
    assert not third.done()
    fn.gate.set()
    assert list(await asyncio.gather(first, second, third)) == [10, 20, 30]
    assert fn.calls == [[1, 2], [3]]


def test_overflow_raise_without_max_pending_is_refused() -> None:
    with pytest.raises(ValueError, match="needs max_pending"):
        Batcher(Gated(), overflow="raise")


def test_an_unknown_overflow_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="must be 'block'"):
        Batcher(Gated(), max_pending=1, overflow="drop")  # type: ignore[arg-type]


# -- on_batch and the debug log ---------------------------------------------------------


async def test_on_batch_gets_one_event_per_dispatched_batch_with_its_size() -> None:
    events: list[BatchEvent] = []
    fn = Gated()
    fn.gate.set()
    loader = Batcher(fn, max_batch_size=2, on_batch=events.append)
    assert await loader.load_many([1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]
    assert [e.size for e in events] == [2, 2, 1]
    assert [e.outcome for e in events] == ["ok", "ok", "ok"]
    assert fn.calls == [[1, 2], [3, 4], [5]]


async def test_a_batch_that_raises_is_an_error_event_carrying_the_error() -> None:
    events: list[BatchEvent] = []

    async def picky(keys: list[int]) -> list[int | Exception]:
        if 13 in keys:
            raise RuntimeError("unlucky batch")
        return [KeyError(k) if k == 4 else k for k in keys]

    loader = Batcher(picky, max_batch_size=2, on_batch=events.append)
    await loader.load_many([4, 5, 13, 14])
    assert [(e.size, e.outcome, e.key_errors) for e in events] == [(2, "ok", 1), (2, "error", 0)]
    assert isinstance(events[1].error, RuntimeError)


async def test_an_event_names_the_group_of_its_batch() -> None:
    events: list[BatchEvent] = []
    fn = Gated()
    fn.gate.set()
    loader = Batcher(fn, group=lambda k: "even" if k % 2 == 0 else "odd", on_batch=events.append)
    await loader.load_many([1, 2, 3, 4, 6])
    assert sorted((e.group, e.size) for e in events) == [("even", 3), ("odd", 2)]


async def test_an_event_measures_the_call_on_the_batchers_clock() -> None:
    events: list[BatchEvent] = []
    clock = VirtualClock()

    async def slow(keys: list[int]) -> list[int]:
        await clock.sleep(1.5)
        return keys

    loader = Batcher(slow, clock=clock, on_batch=events.append)
    assert await loader.load(1) == 1
    assert [e.duration_s for e in events] == [1.5]


async def test_a_hook_that_raises_does_not_fail_the_loads(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: BatchEvent) -> None:
        raise RuntimeError("hook bug")

    fn = Gated()
    fn.gate.set()
    loader = Batcher(fn, on_batch=broken)
    assert await loader.load(1) == 10
    assert "on_batch hook raised" in caplog.text


async def test_each_batch_is_a_debug_line_on_the_coalesce_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fn = Gated()
    fn.gate.set()
    loader = Batcher(fn, max_batch_size=2)
    with caplog.at_level(logging.DEBUG, logger="batchops.coalesce"):
        await loader.load_many([1, 2, 3])
    lines = [r.getMessage() for r in caplog.records if r.name == "batchops.coalesce"]
    assert len(lines) == 2
    assert lines[0].startswith("batch of 2 keys (group None): ok in ")
    assert lines[1].startswith("batch of 1 keys (group None): ok in ")


def test_on_batch_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_batch"):
        Batcher(Gated(), on_batch="print")  # type: ignore[arg-type]


async def test_a_load_that_found_room_then_timed_out_leaves_its_unsent_batch() -> None:
    fn, clock = Gated(), VirtualClock()
    loader = Batcher(fn, max_pending=1, max_delay_ms=10_000, clock=clock)
    held = asyncio.ensure_future(loader.load(1))
    late = asyncio.ensure_future(loader.load(2, timeout=15.0))
    await settle()
    fn.gate.set()
    assert await held == 10  # t=10: batch [1] sent; key 2 finds room, opens a batch
    with pytest.raises(BatcherTimeoutError):
        await late  # t=15: its batch (due at t=20) was not sent: key 2 leaves it
    await loader.aclose()
    assert fn.calls == [[1]]
