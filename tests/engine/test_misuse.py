"""Misuse gets a ValueError / TypeError that says how to fix it, before any work runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batchops.engine import RetryPolicy, batch_execute, batch_stream, chunked, run_batch


async def _op(item: Any) -> Any:
    return item


@pytest.mark.parametrize(
    ("options", "error", "hint"),
    [
        ({"max_concurrent": 0}, ValueError, "max_concurrent=0: must be >= 1"),
        ({"max_concurrent": 2.5}, TypeError, "must be an int"),
        ({"max_concurrent": True}, TypeError, "must be an int"),
        ({"max_per_second": -1}, ValueError, "positive number of items per second"),
        ({"max_per_second": 0}, ValueError, "positive number"),
        ({"max_per_second": float("inf")}, ValueError, "pass None for no rate cap"),
        ({"max_per_second": "10"}, TypeError, "must be a number"),
        ({"timeout": 0}, ValueError, "seconds for the whole batch"),
        ({"item_timeout": -2}, ValueError, "seconds per attempt"),
        ({"retry": 3}, TypeError, "RetryPolicy(attempts=3)"),
        ({"checkpoint": "x.jsonl"}, ValueError, "checkpoint= needs key="),
        ({"key": str}, ValueError, "only used with checkpoint="),
        ({"validate": bool}, ValueError, "dry_run=True"),
        ({"on_progress": 5}, TypeError, "on_progress must be a callable"),
        ({"clock": object()}, TypeError, "now(), async sleep() and call_at()"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
async def test_bad_options_raise_an_error_that_teaches_the_fix(
    options: dict[str, Any], error: type[Exception], hint: str
) -> None:
    with pytest.raises(error, match=re.escape(hint)):
        await batch_execute([1], _op, **options)


async def test_an_operation_that_is_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="async callable"):
        await batch_execute([1], 42)  # type: ignore[arg-type]


async def test_a_sync_operation_aborts_the_batch_with_a_type_error() -> None:
    def not_async(item: int) -> int:
        return item

    with pytest.raises(TypeError, match=r"returned int, not an awaitable.*async def"):
        await batch_execute([1, 2], not_async)  # type: ignore[arg-type]


async def test_a_string_is_not_taken_for_a_list_of_characters() -> None:
    with pytest.raises(TypeError, match="pass a list of items"):
        await batch_execute("abc", _op)


async def test_a_non_iterable_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="iterable or an async iterable"):
        await batch_execute(5, _op)  # type: ignore[arg-type]


async def test_a_key_that_returns_a_non_string_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"key\(item\) must return a str"):
        await batch_execute([1], _op, checkpoint=tmp_path / "j", key=lambda i: i)  # type: ignore[arg-type,return-value]


def test_batch_stream_checks_options_when_called_not_when_iterated() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        batch_stream([1], _op, max_concurrent=0)


def test_run_batch_checks_options_too() -> None:
    with pytest.raises(ValueError, match="max_per_second"):
        run_batch([1], _op, max_per_second=-5)


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"attempts": 0}, "attempts=1 means no retry"),
        ({"initial_backoff": -1}, "seconds >= 0"),
        ({"multiplier": 0.5}, "must be >= 1"),
    ],
)
def test_bad_retry_policies_are_rejected(options: dict[str, Any], hint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)):
        RetryPolicy(**options)


def test_retry_on_must_be_a_predicate_or_exception_classes() -> None:
    with pytest.raises(TypeError, match="exception classes"):
        RetryPolicy(retry_on=(ValueError, "oops"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "hint"),
    [
        ((), {}, "needs size="),
        ((0,), {}, "size=0"),
        ((), {"max_bytes": -1}, "max_bytes=-1"),
        ((), {"encode": bytes, "size": 2}, "only matters with max_bytes="),
    ],
)
def test_chunked_misuse_is_reported_at_call_time(
    args: tuple[Any, ...], kwargs: dict[str, Any], hint: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)):
        chunked([1, 2], *args, **kwargs)
