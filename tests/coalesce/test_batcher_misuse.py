"""Misuse of Batcher, Cache and CircuitBreaker: errors that say how to fix the call."""

from __future__ import annotations

import math
from typing import Any

import pytest

from batchops import RetryPolicy
from batchops._exceptions import BatchContractError
from batchops.coalesce import Batcher, Cache, CircuitBreaker


async def echo(keys: list[int]) -> list[int]:
    return keys


def make(**options: Any) -> Batcher[int, int]:
    return Batcher(echo, **options)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, None])
def test_max_batch_size_must_be_a_positive_int(size: object) -> None:
    with pytest.raises(ValueError, match=r"max_batch_size=.*int >= 1.*1 disables batching"):
        make(max_batch_size=size)


@pytest.mark.parametrize("delay", [-1, math.nan, math.inf, "5"])
def test_max_delay_ms_must_be_non_negative_milliseconds(delay: object) -> None:
    with pytest.raises(ValueError, match=r"max_delay_ms=.*milliseconds >= 0"):
        make(max_delay_ms=delay)


def test_a_sync_batch_fn_is_refused_with_the_fix() -> None:
    def sync_fn(keys: list[int]) -> list[int]:
        return keys

    with pytest.raises(TypeError, match=r"must be an async function; define it with 'async def'"):
        Batcher(sync_fn)  # type: ignore[arg-type]


def test_a_batch_fn_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="pass an async function"):
        Batcher([1, 2])  # type: ignore[arg-type]


async def test_a_callable_returning_no_awaitable_fails_the_batch_with_the_contract() -> None:
    class SyncCallable:
        def __call__(self, keys: list[int]) -> list[int]:
            return keys

    loader: Batcher[int, int] = Batcher(SyncCallable())  # type: ignore[arg-type]
    with pytest.raises(BatchContractError, match="returned list, not an awaitable"):
        await loader.load(1)


@pytest.mark.parametrize("name", ["max_concurrent_batches", "max_pending"])
@pytest.mark.parametrize("value", [0, -3, 2.5])
def test_limits_must_be_positive_ints_or_none(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{name}=.*int >= 1, or None"):
        make(**{name: value})


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        ("cache", {}, r"cache=Cache\(max_size=\.\.\., ttl_s=\.\.\.\)"),
        ("retry", 3, r"RetryPolicy\(attempts=3\)"),
        ("breaker", True, r"CircuitBreaker\(failure_threshold="),
        ("key", "id", "a function of the load key"),
        ("group", 1, "a function of the load key"),
        ("clock", 0.0, "now\\(\\), sleep\\(\\) and call_at\\(\\)"),
    ],
)
def test_options_of_the_wrong_type_say_what_to_pass(option: str, value: object, hint: str) -> None:
    with pytest.raises(TypeError, match=hint):
        make(**{option: value})


async def test_prime_without_a_cache_says_how_to_get_one() -> None:
    with pytest.raises(TypeError, match=r"prime\(\) needs a cache: .*cache=Cache"):
        make().prime(1, 1)


async def test_a_failure_cannot_be_primed() -> None:
    loader = make(cache=Cache())
    with pytest.raises(TypeError, match="failures are never cached"):
        loader.prime(1, ValueError("x"))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -1, 2.0, True])
def test_cache_max_size_must_be_a_positive_int(size: object) -> None:
    with pytest.raises(ValueError, match=r"max_size=.*int >= 1.*cache=None"):
        Cache(max_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0, -1, math.nan])
def test_cache_ttl_must_be_positive_seconds(ttl: float) -> None:
    with pytest.raises(ValueError, match=r"ttl_s=.*seconds > 0, or None"):
        Cache(ttl_s=ttl)


def test_cache_clock_must_be_callable() -> None:
    with pytest.raises(TypeError, match="function returning seconds"):
        Cache(clock=1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0, -1, 1.5, False])
def test_breaker_threshold_must_be_a_positive_int(threshold: object) -> None:
    with pytest.raises(ValueError, match=r"failure_threshold=.*consecutive failed calls"):
        CircuitBreaker(failure_threshold=threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [-0.5, math.nan, "30"])
def test_breaker_reset_timeout_must_be_non_negative_seconds(timeout: object) -> None:
    with pytest.raises(ValueError, match=r"reset_timeout_s=.*seconds >= 0"):
        CircuitBreaker(reset_timeout_s=timeout)  # type: ignore[arg-type]


def test_breaker_clock_must_be_callable() -> None:
    with pytest.raises(TypeError, match="function returning seconds"):
        CircuitBreaker(clock="now")  # type: ignore[arg-type]


def test_retry_policy_is_accepted() -> None:
    assert make(retry=RetryPolicy(attempts=2)) is not None
