"""One retry implementation: the pure ``backoff_s`` and ``RetryPolicy.call``, and the
layers that use them (the Batcher, the SDK's single calls, the stores)."""

from __future__ import annotations

import asyncio
import re

import pytest

from batchops import RateLimitedError, ServiceUnavailableError, TransientStoreError
from batchops.engine import RetryPolicy, VirtualClock, backoff_s
from batchops.store._retry import retry_transient, unit_retry_policy

# -- backoff_s --------------------------------------------------------------------------------


def test_backoff_doubles_from_the_initial_wait_up_to_the_cap() -> None:
    waits = [backoff_s(n, initial_s=5.0, max_s=60.0) for n in (1, 2, 3, 4, 5)]

    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0]


def test_backoff_takes_the_multiplier() -> None:
    waits = [backoff_s(n, initial_s=0.2, max_s=10.0, multiplier=3.0) for n in (1, 2, 3)]

    assert waits == pytest.approx([0.2, 0.6, 1.8])


def test_backoff_after_very_many_failures_is_the_cap_not_an_overflow() -> None:
    assert backoff_s(10_000, initial_s=1.0, max_s=60.0) == 60.0
    assert backoff_s(10_000, initial_s=0.0, max_s=60.0) == 0.0


def test_full_jitter_draws_the_wait_between_zero_and_the_exponential_value() -> None:
    waits = [backoff_s(3, initial_s=1.0, max_s=100.0, jitter=1.0) for _ in range(200)]

    assert all(0.0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 100


def test_half_jitter_keeps_at_least_half_of_the_wait() -> None:
    waits = [backoff_s(2, initial_s=1.0, max_s=100.0, jitter=0.5) for _ in range(200)]

    assert all(1.0 <= w <= 2.0 for w in waits)


def test_failed_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="counts failures, from 1"):
        backoff_s(0, initial_s=1.0, max_s=2.0)


def test_a_policy_schedule_is_the_pure_backoff() -> None:
    policy = RetryPolicy(attempts=5, initial_backoff=0.5, max_backoff=3.0, jitter=False)

    assert policy.schedule() == [backoff_s(n, initial_s=0.5, max_s=3.0) for n in (1, 2, 3, 4)]


@pytest.mark.parametrize("jitter", [-0.1, 1.5, "yes"])
def test_jitter_is_a_bool_or_a_fraction(jitter: object) -> None:
    with pytest.raises(ValueError, match=re.escape("between 0 and 1")):
        RetryPolicy(jitter=jitter)  # type: ignore[arg-type]


def test_the_wait_is_the_retry_after_when_it_is_longer_than_the_backoff() -> None:
    policy = RetryPolicy(initial_backoff=0.5, jitter=False)

    assert policy.wait_s(1, RateLimitedError("slow down", retry_after=3.0)) == 3.0
    assert policy.wait_s(1, RateLimitedError("slow down", retry_after=0.1)) == 0.5
    assert policy.wait_s(2, ConnectionResetError()) == 1.0


# -- RetryPolicy.call ----------------------------------------------------------------------


class Flaky:
    """Fails ``failures`` times with ``error``, then answers ``"ok"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


async def test_call_retries_a_transient_error_sleeping_the_schedule_on_the_clock() -> None:
    clock = VirtualClock()
    flaky = Flaky(3, ConnectionResetError("reset"))
    policy = RetryPolicy(attempts=5, initial_backoff=0.2, multiplier=3.0, jitter=False)

    assert await policy.call(flaky, clock=clock) == "ok"
    assert flaky.calls == 4
    assert clock.sleeps == pytest.approx([0.2, 0.6, 1.8])


async def test_call_takes_a_plain_function_that_returns_a_coroutine() -> None:
    clock = VirtualClock()
    flaky = Flaky(2, ConnectionResetError("reset"))

    assert await RetryPolicy(jitter=False).call(lambda: flaky(), clock=clock) == "ok"
    assert flaky.calls == 3
    assert clock.sleeps == pytest.approx([0.1, 0.2])


async def test_call_raises_the_last_error_when_the_attempts_run_out() -> None:
    clock = VirtualClock()
    flaky = Flaky(10, TimeoutError("upstream"))

    with pytest.raises(TimeoutError, match="upstream"):
        await RetryPolicy(attempts=3, jitter=False).call(flaky, clock=clock)
    assert flaky.calls == 3
    assert clock.sleeps == pytest.approx([0.1, 0.2])


async def test_call_does_not_retry_an_error_the_policy_does_not_name() -> None:
    clock = VirtualClock()
    flaky = Flaky(1, KeyError("bug"))

    with pytest.raises(KeyError):
        await RetryPolicy(attempts=5).call(flaky, clock=clock)
    assert flaky.calls == 1
    assert clock.sleeps == []


async def test_a_success_at_once_sleeps_nothing() -> None:
    clock = VirtualClock()

    assert await RetryPolicy().call(Flaky(0, TimeoutError()), clock=clock) == "ok"
    assert clock.sleeps == []


async def test_call_waits_the_retry_after_of_each_error_when_it_is_longer() -> None:
    clock = VirtualClock()
    flaky = Flaky(2, ServiceUnavailableError("busy", retry_after=2.0))

    assert await RetryPolicy(attempts=3, jitter=False).call(flaky, clock=clock) == "ok"
    assert clock.sleeps == [2.0, 2.0]


async def test_call_never_retries_a_cancellation_whatever_the_predicate_says() -> None:
    clock = VirtualClock()
    calls = 0

    async def reset_then_cancelled() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("reset")
        raise asyncio.CancelledError

    policy = RetryPolicy(attempts=5, retry_on=lambda exc: True)

    with pytest.raises(asyncio.CancelledError):
        await policy.call(reset_then_cancelled, clock=clock)
    assert calls == 2


# -- the stores' unit of work ---------------------------------------------------------------


def test_the_stores_retry_is_an_engine_policy_for_transient_store_errors_only() -> None:
    policy = unit_retry_policy(3)

    assert isinstance(policy, RetryPolicy)
    assert policy.attempts == 4
    assert policy.should_retry(TransientStoreError("busy"))
    assert not policy.should_retry(TimeoutError())
    assert all(0.0025 <= w <= 0.005 for w in [policy.backoff(1) for _ in range(50)])
    assert policy.backoff(10) <= 0.2


async def test_a_unit_of_work_is_run_again_after_a_transient_store_error() -> None:
    flaky = Flaky(2, TransientStoreError("database is locked"))

    assert await retry_transient(flaky, retries=2) == "ok"
    assert flaky.calls == 3


async def test_a_unit_of_work_without_retries_runs_once() -> None:
    flaky = Flaky(1, TransientStoreError("database is locked"))

    with pytest.raises(TransientStoreError):
        await retry_transient(flaky, retries=0)
    assert flaky.calls == 1
