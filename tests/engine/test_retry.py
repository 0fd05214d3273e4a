"""Retry: the backoff schedule, what is transient, and the Retry-After pool pause."""

from __future__ import annotations

import pytest

from batchops import (
    APIError,
    Failure,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ServiceUnavailableError,
    Success,
    TransientStoreError,
)
from batchops.engine import RetryPolicy, VirtualClock, batch_execute, is_overload, is_transient
from tests.engine.conftest import Spy


def test_backoff_schedule_is_exponential_and_capped_without_jitter() -> None:
    policy = RetryPolicy(attempts=6, initial_backoff=0.5, max_backoff=3.0, jitter=False)

    assert policy.schedule() == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jittered_backoff_stays_between_zero_and_the_exponential_value() -> None:
    policy = RetryPolicy(attempts=5, initial_backoff=1.0, max_backoff=100.0)

    for _ in range(50):
        waits = policy.schedule()
        assert all(0.0 <= w <= 2.0**n for n, w in enumerate(waits))


async def test_retries_sleep_exactly_the_schedule_under_the_virtual_clock(
    clock: VirtualClock,
) -> None:
    calls = 0

    async def op(item: str) -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionResetError("reset by peer")
        return item

    policy = RetryPolicy(attempts=5, initial_backoff=0.2, multiplier=3.0, jitter=False)
    result = await batch_execute(["x"], op, retry=policy, clock=clock)

    assert result[0] == Success(0, "x", attempts=4)
    assert clock.sleeps == pytest.approx([0.2, 0.6, 1.8])
    assert clock.now() == pytest.approx(2.6)


async def test_an_item_that_keeps_failing_reports_every_attempt(clock: VirtualClock) -> None:
    async def op(item: int) -> int:
        raise TimeoutError("upstream timed out")

    result = await batch_execute([1], op, retry=RetryPolicy(attempts=3, jitter=False), clock=clock)

    failure = result[0]
    assert isinstance(failure, Failure)
    assert failure.attempts == 3
    assert failure.status == "failed"
    assert isinstance(failure.error, TimeoutError)


async def test_non_transient_errors_are_not_retried_by_default(clock: VirtualClock) -> None:
    calls: list[int] = []

    async def op(item: int) -> int:
        calls.append(item)
        if item == 0:
            raise ValueError("bad input")
        raise NotFoundError("no such record")

    result = await batch_execute([0, 1], op, retry=RetryPolicy(attempts=5), clock=clock)

    assert calls == [0, 1]
    assert [f.attempts for f in result.failures()] == [1, 1]
    assert clock.sleeps == []


async def test_retry_on_can_name_the_exceptions_to_retry(clock: VirtualClock) -> None:
    calls = 0

    async def op(item: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("flaky")
        return item

    policy = RetryPolicy(attempts=2, jitter=False, retry_on=KeyError)
    result = await batch_execute([7], op, retry=policy, clock=clock)

    assert result.values() == [7]


class _HttpxLikeTransportError(Exception):
    """Stands in for httpx.TransportError without importing httpx."""


_HttpxLikeTransportError.__name__ = "TransportError"
_HttpxLikeTransportError.__module__ = "httpx._exceptions"


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class _HttpStatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.response = _Response(status_code)


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),
        ConnectionRefusedError(),
        TransientStoreError("database is locked"),
        RateLimitedError("slow down"),
        ServiceUnavailableError("busy"),
        APIError("bad gateway", status=502),
        APIError("gateway timeout", status=504),
        RequestTimeoutError("the body stalled"),
        _HttpStatusError(503),
        _HttpStatusError(408),
        _HttpxLikeTransportError("connect failed"),
    ],
    ids=repr,
)
def test_transient_errors_are_recognised(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [ValueError(), KeyError("k"), NotFoundError("gone"), APIError("oops", status=500)],
    ids=repr,
)
def test_permanent_errors_are_not_transient(error: Exception) -> None:
    assert not is_transient(error)


def test_overload_means_429_503_or_a_retry_after() -> None:
    assert is_overload(RateLimitedError("x"))
    assert is_overload(ServiceUnavailableError("x"))
    assert is_overload(APIError("x", status=500, retry_after=1.0))
    assert not is_overload(APIError("x", status=502))


async def test_retry_after_pauses_the_whole_pool(clock: VirtualClock, spy: Spy) -> None:
    failed_once = False

    async def op(item: int) -> int:
        nonlocal failed_once
        spy.enter(item)
        await clock.sleep(1.0 if item == 0 else 2.0)
        spy.leave()
        if item == 0 and not failed_once:
            failed_once = True
            raise RateLimitedError("slow down", retry_after=5.0)
        return item

    policy = RetryPolicy(attempts=3, initial_backoff=0.01, jitter=False)
    result = await batch_execute(range(5), op, max_concurrent=2, retry=policy, clock=clock)

    assert result.ok
    assert result[0].attempts == 2
    # Item 0 fails at t=1 asking for 5 s: nothing starts in (1, 6), not even item 2
    # whose worker became free at t=2, and item 0's retry waits the full 5 s.
    assert spy.starts == [(0, 0.0), (1, 0.0), (0, 6.0), (2, 6.0), (3, 7.0), (4, 8.0)]


async def test_retry_after_longer_than_the_backoff_sets_the_item_wait(
    clock: VirtualClock,
) -> None:
    calls = 0

    async def op(item: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ServiceUnavailableError("busy", retry_after=3.0)
        return item

    result = await batch_execute(
        [1], op, retry=RetryPolicy(initial_backoff=0.5, jitter=False), clock=clock
    )

    assert result.values() == [1]
    assert clock.now() == pytest.approx(3.0)
