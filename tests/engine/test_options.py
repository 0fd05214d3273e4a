"""``EngineOptions``: the engine's options as one checked value, or as keywords."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, get_type_hints

import pytest

from batchops import EngineOptions as TopLevelEngineOptions
from batchops import Success
from batchops.engine import (
    EngineKwargs,
    EngineOptions,
    RetryPolicy,
    VirtualClock,
    batch_execute,
    batch_stream,
    run_batch,
)
from batchops.engine._core import Engine


async def _double(item: int) -> int:
    return 2 * item


def test_the_keywords_and_the_options_value_declare_the_same_names_and_types() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(EngineOptions)}
    keywords = get_type_hints(EngineKwargs)

    assert set(keywords) == set(fields)
    assert get_type_hints(EngineOptions) == keywords


def test_every_engine_function_takes_the_options_value_and_the_keywords_alike() -> None:
    for function in (batch_execute, batch_stream, run_batch):
        parameters = inspect.signature(function).parameters
        assert list(parameters) == ["items", "operation", "options", "kwargs"], function
        assert parameters["options"].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters["kwargs"].kind is inspect.Parameter.VAR_KEYWORD
    assert list(inspect.signature(Engine).parameters) == ["items", "operation", "options"]


def test_the_top_level_exports_the_same_options_class() -> None:
    assert TopLevelEngineOptions is EngineOptions


def test_the_defaults_are_those_of_the_keyword_calls() -> None:
    options: EngineOptions[int] = EngineOptions()

    assert options.max_concurrent == 10
    assert options.retry is None
    assert options.fail_fast is False
    assert options.checkpoint is None


def test_an_options_value_is_checked_when_it_is_built() -> None:
    with pytest.raises(ValueError, match=re.escape("max_concurrent=0: must be >= 1")):
        EngineOptions(max_concurrent=0)
    with pytest.raises(ValueError, match=re.escape("checkpoint= needs key=")):
        EngineOptions(checkpoint="journal.jsonl")


def test_an_options_value_is_frozen() -> None:
    options: EngineOptions[int] = EngineOptions(max_concurrent=3)

    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_concurrent = 4  # type: ignore[misc]


async def test_an_options_value_runs_the_batch_as_the_same_keywords_do() -> None:
    calls = 0

    async def flaky(item: int) -> int:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise ConnectionResetError("reset")
        return item

    policy = RetryPolicy(attempts=3, initial_backoff=0.5, jitter=False)
    by_keywords = VirtualClock()
    by_value = VirtualClock()

    first = await batch_execute([1, 2], flaky, max_concurrent=1, retry=policy, clock=by_keywords)
    second = await batch_execute(
        [1, 2],
        flaky,
        options=EngineOptions(max_concurrent=1, retry=policy, clock=by_value),
    )

    assert list(first) == list(second)
    assert by_keywords.sleeps == by_value.sleeps == [0.5, 0.5]


async def test_keywords_given_beside_an_options_value_override_its_fields() -> None:
    in_flight = peak = 0

    async def op(item: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await clock.sleep(1)
        in_flight -= 1
        return item

    clock = VirtualClock()
    shared: EngineOptions[int] = EngineOptions(max_concurrent=5, clock=clock)

    result = await batch_execute(range(6), op, options=shared, max_concurrent=2)

    assert result.values() == list(range(6))
    assert peak == 2
    assert shared.max_concurrent == 5


async def test_an_override_is_checked_like_any_option() -> None:
    with pytest.raises(ValueError, match=re.escape("max_concurrent=0: must be >= 1")):
        await batch_execute([1], _double, options=EngineOptions(), max_concurrent=0)


@pytest.mark.parametrize("options", [{"max_concurrent": 2}, 2, "fast"])
async def test_options_must_be_an_engine_options_value(options: Any) -> None:
    with pytest.raises(TypeError, match=re.escape("pass an EngineOptions")):
        await batch_execute([1], _double, options=options)


async def test_batch_stream_takes_an_options_value() -> None:
    stream = batch_stream([1, 2, 3], _double, options=EngineOptions(max_concurrent=1))

    assert sorted([r.value async for r in stream if isinstance(r, Success)]) == [2, 4, 6]


def test_run_batch_takes_an_options_value_and_checks_it_before_running() -> None:
    assert run_batch([1, 2], _double, options=EngineOptions(max_concurrent=1)).values() == [2, 4]
    with pytest.raises(TypeError, match=re.escape("pass an EngineOptions")):
        run_batch([1], _double, options={"max_concurrent": 2})  # type: ignore[arg-type]


def test_an_unknown_keyword_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="max_concurrency"):
        run_batch([1], _double, max_concurrency=3)  # type: ignore[call-arg]
