"""AdaptiveChunkSize on its own (its use by the SDK: tests/client/test_batch_sizing.py)."""

from __future__ import annotations

from typing import Any

import pytest

from batchops.engine import AdaptiveChunkSize


def test_defaults_start_at_a_tenth_of_max_and_step_by_a_twentieth() -> None:
    sizing = AdaptiveChunkSize(200, 1, 1000)
    assert (sizing.size, sizing.increase, sizing.decrease_factor) == (100, 50, 0.5)


def test_answers_within_target_add_the_increase_up_to_max() -> None:
    sizing = AdaptiveChunkSize(100, 1, 25, start=10, increase=5)
    for _ in range(5):
        sizing.observe(0.1, sizing.generation)  # exactly on target counts as within
    assert sizing.size == 25


def test_a_slow_answer_multiplies_by_the_factor_down_to_min() -> None:
    sizing = AdaptiveChunkSize(100, 3, 100, start=40, decrease_factor=0.25)
    sizes = []
    for _ in range(3):
        sizing.observe(0.5, sizing.generation)
        sizes.append(sizing.size)
    assert sizes == [10, 3, 3]


def test_only_the_first_decrease_of_a_generation_counts() -> None:
    sizing = AdaptiveChunkSize(100, 1, 100, start=40)
    cut_in = sizing.generation
    sizing.overloaded(cut_in)
    sizing.overloaded(cut_in)
    sizing.observe(9.0, cut_in)
    assert sizing.size == 20
    sizing.overloaded(sizing.generation)
    assert sizing.size == 10


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0,), {}, "target_ms=0"),
        ((float("inf"),), {}, "target_ms=inf"),
        ((100, 0), {}, "min_size=0"),
        ((100, 10, 5), {}, "must not exceed max_size"),
        ((100, 10, 50), {"start": 60}, "start=60"),
        ((100,), {"increase": 0}, "increase=0"),
        ((100,), {"decrease_factor": 1.0}, "strictly between 0 and 1"),
    ],
)
def test_bad_arguments_are_refused_saying_why(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveChunkSize(*args, **kwargs)


def test_a_clock_without_now_is_refused() -> None:
    with pytest.raises(TypeError, match="clock"):
        AdaptiveChunkSize(100, clock=object())  # type: ignore[arg-type]
