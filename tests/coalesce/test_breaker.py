"""CircuitBreaker: closed → open → half_open → closed (or open again), alone and in a Batcher."""

from __future__ import annotations

import asyncio

import pytest

from batchops._exceptions import CircuitOpenError
from batchops.coalesce import Batcher, BreakerState, CircuitBreaker


class Now:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Boom(Exception):
    pass


def state(breaker: CircuitBreaker) -> BreakerState:
    """``breaker.state``, read through a call so that mypy does not narrow it."""
    return breaker.state


def fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(Boom), breaker.guard():
        raise Boom


def succeed(breaker: CircuitBreaker) -> None:
    with breaker.guard():
        pass


def test_it_opens_after_failure_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=10, clock=Now())
    fail(breaker)
    fail(breaker)
    assert state(breaker) == "closed"
    assert breaker.consecutive_failures == 2
    fail(breaker)
    assert state(breaker) == "open"
    assert breaker.refuses()


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=Now())
    fail(breaker)
    succeed(breaker)
    fail(breaker)
    assert state(breaker) == "closed"


def test_an_open_breaker_refuses_calls_and_says_when_to_retry() -> None:
    now = Now()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=10, clock=now)
    fail(breaker)
    now.t = 4.0
    with pytest.raises(CircuitOpenError, match="open after 1 consecutive") as info:
        breaker.raise_if_open()
    assert info.value.retry_after == pytest.approx(6.0)
    ran = False
    with pytest.raises(CircuitOpenError), breaker.guard():
        ran = True
    assert not ran


def test_after_the_cool_down_one_probe_success_closes_it() -> None:
    now = Now()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=10, clock=now)
    fail(breaker)
    now.t = 10.0
    assert state(breaker) == "half_open"
    with breaker.guard():
        # While the probe runs, every other call is refused.
        assert breaker.refuses()
        with pytest.raises(CircuitOpenError, match="probe"), breaker.guard():
            pass
    assert state(breaker) == "closed"
    assert not breaker.refuses()


def test_a_failed_probe_opens_it_again_for_a_full_cool_down() -> None:
    now = Now()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=10, clock=now)
    fail(breaker)
    now.t = 15.0
    fail(breaker)
    assert state(breaker) == "open"
    now.t = 24.9
    assert state(breaker) == "open"
    now.t = 25.0
    assert state(breaker) == "half_open"


def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    now = Now()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=1, clock=now)
    fail(breaker)
    now.t = 1.0
    with pytest.raises(asyncio.CancelledError), breaker.guard():
        raise asyncio.CancelledError
    assert state(breaker) == "half_open"
    assert not breaker.refuses()


def test_outcomes_of_calls_started_before_it_opened_are_ignored() -> None:
    now = Now()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=10, clock=now)
    straggler = breaker.guard()
    straggler.__enter__()
    fail(breaker)
    straggler.__exit__(None, None, None)  # a success, but not the probe
    assert state(breaker) == "open"


def test_reset_closes_it() -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=Now())
    fail(breaker)
    breaker.reset()
    assert state(breaker) == "closed"
    assert "closed" in repr(breaker)


async def test_a_batcher_fails_loads_at_once_while_open_then_probes_once() -> None:
    now = Now()
    calls: list[list[int]] = []
    healthy = False
    gate = asyncio.Event()

    async def backend(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        if not healthy:
            raise ConnectionError("down")
        await gate.wait()
        return keys

    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=30, clock=now)
    loader = Batcher(backend, breaker=breaker)

    # closed → open: two failed batches.
    for k in (1, 2):
        with pytest.raises(ConnectionError):
            await loader.load(k)
    assert state(breaker) == "open"

    # open: loads fail at once, batch_fn is not called.
    with pytest.raises(CircuitOpenError):
        await loader.load(3)
    assert calls == [[1], [2]]

    # half_open: one probe batch; other loads during the probe fail fast.
    now.t = 30.0
    healthy = True
    probe = loader.load_many([4, 5])
    probe_task = asyncio.ensure_future(probe)
    for _ in range(3):
        await asyncio.sleep(0)
    assert calls[-1] == [4, 5]
    with pytest.raises(CircuitOpenError, match="probe"):
        await loader.load(6)
    gate.set()
    assert await probe_task == [4, 5]

    # → closed.
    assert state(breaker) == "closed"
    assert await loader.load(7) == 7
    assert calls == [[1], [2], [4, 5], [7]]


async def test_a_batcher_probe_that_fails_opens_the_breaker_again() -> None:
    now = Now()
    calls: list[list[int]] = []

    async def down(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        raise ConnectionError("still down")

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=5, clock=now)
    loader = Batcher(down, breaker=breaker)
    with pytest.raises(ConnectionError):
        await loader.load(1)
    now.t = 5.0
    with pytest.raises(ConnectionError):
        await loader.load(2)  # the probe
    assert state(breaker) == "open"
    results = await loader.load_many([3, 4])
    assert all(isinstance(r, CircuitOpenError) for r in results)
    assert calls == [[1], [2]]


async def test_keys_queued_when_the_breaker_opens_are_refused_at_dispatch() -> None:
    calls: list[list[int]] = []

    async def down(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        raise ConnectionError("down")

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=60)
    # Two batches of one key, both dispatched in the same tick: the first fails and opens
    # the breaker before the second reaches batch_fn.
    loader = Batcher(down, max_batch_size=1, breaker=breaker)
    results = await loader.load_many([1, 2])
    assert isinstance(results[0], ConnectionError)
    assert isinstance(results[1], CircuitOpenError)
    assert calls == [[1]]
    assert state(breaker) == "open"
