"""Cache: LRU + TTL on its own, and as the Batcher's memory of successful keys."""

from __future__ import annotations

import pytest

from batchops.coalesce import Batcher, Cache


class Now:
    """An injectable clock: ``now()`` returns what the test set."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_an_entry_expires_after_ttl_s() -> None:
    now = Now()
    cache: Cache[str, int] = Cache(max_size=10, ttl_s=5, clock=now)
    cache.set("a", 1)
    now.t += 4.999
    assert cache.get("a") == 1
    now.t += 0.001
    assert cache.get("a") is None
    assert "a" not in cache
    assert len(cache) == 0


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    cache: Cache[str, int] = Cache(max_size=2)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # "a" is now more recent than "b"
    cache.set("c", 3)
    assert "b" not in cache
    assert (cache.get("a"), cache.get("c")) == (1, 3)


def test_none_is_a_value_distinct_from_a_miss() -> None:
    cache: Cache[str, None] = Cache()
    cache.set("a", None)
    assert "a" in cache
    assert cache.get("b", default=None) is None
    assert "b" not in cache


def test_delete_and_clear_forget_entries() -> None:
    cache: Cache[str, int] = Cache()
    cache.set("a", 1)
    cache.set("b", 2)
    cache.delete("a")
    cache.delete("missing")
    assert "a" not in cache
    cache.clear()
    assert len(cache) == 0
    assert repr(cache) == "Cache(max_size=10000, ttl_s=None, size=0)"


class Spy:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    async def __call__(self, keys: list[int]) -> list[int | Exception]:
        self.calls.append(list(keys))
        return [ValueError(k) if k < 0 else k * 10 for k in keys]


async def test_cache_hits_skip_batch_fn() -> None:
    spy = Spy()
    loader = Batcher(spy, cache=Cache(max_size=100))
    assert await loader.load_many([1, 2]) == [10, 20]
    assert await loader.load_many([2, 1, 3]) == [20, 10, 30]
    assert spy.calls == [[1, 2], [3]]


async def test_a_cached_key_is_loaded_again_after_its_ttl() -> None:
    spy, now = Spy(), Now()
    loader = Batcher(spy, cache=Cache(max_size=100, ttl_s=60, clock=now))
    assert await loader.load(1) == 10
    now.t += 59
    assert await loader.load(1) == 10
    now.t += 1
    assert await loader.load(1) == 10
    assert spy.calls == [[1], [1]]


async def test_an_evicted_key_is_loaded_again() -> None:
    spy = Spy()
    loader = Batcher(spy, cache=Cache(max_size=2))
    await loader.load_many([1, 2, 3])  # 1 is evicted by 3
    await loader.load_many([3, 2, 1])
    assert spy.calls == [[1, 2, 3], [1]]


async def test_a_failed_key_is_never_cached() -> None:
    spy = Spy()
    cache: Cache[int, int] = Cache(max_size=100)
    loader = Batcher(spy, cache=cache)
    first = await loader.load_many([-1, 1])
    assert isinstance(first[0], ValueError)
    assert -1 not in cache
    assert 1 in cache
    second = await loader.load_many([-1, 1])
    assert isinstance(second[0], ValueError)
    assert spy.calls == [[-1, 1], [-1]]


async def test_prime_fills_the_cache_without_overwriting() -> None:
    spy = Spy()
    loader = Batcher(spy, cache=Cache(max_size=100))
    loader.prime(1, 111)
    loader.prime(1, 222)
    assert await loader.load(1) == 111
    assert spy.calls == []


async def test_cache_and_dedupe_use_the_key_function() -> None:
    calls: list[list[str]] = []

    async def fetch(keys: list[str]) -> list[str]:
        calls.append(list(keys))
        return [k.strip() for k in keys]

    loader: Batcher[str, str] = Batcher(fetch, key=str.strip, cache=Cache(max_size=10))
    assert await loader.load(" a") == "a"
    assert await loader.load("a ") == "a"
    loader.prime("b ", "B")
    assert await loader.load(" b") == "B"
    assert calls == [[" a"]]


@pytest.mark.parametrize("ttl_s", [None, 1.5])
def test_the_cache_stays_within_max_size(ttl_s: float | None) -> None:
    cache: Cache[int, int] = Cache(max_size=3, ttl_s=ttl_s)
    for k in range(10):
        cache.set(k, k)
    assert len(cache) == 3
    assert [k for k in range(10) if k in cache] == [7, 8, 9]
