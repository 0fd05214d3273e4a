"""``EngineOptions``: the engine's keyword options, declared and checked in one place.

Why one value: ``batch_execute``, ``batch_stream``, ``run_batch`` and :class:`Engine` take
the same fifteen options. Each of them now says ``options: EngineOptions | None`` plus
``**kwargs: Unpack[EngineKwargs]``, and :meth:`EngineOptions.of` turns the two into one
checked value; the names, types and defaults are written here and nowhere else.

Why two declarations of the same names (a ``TypedDict`` and a dataclass): ``Unpack`` over a
``TypedDict`` is how a type checker sees ``**kwargs`` as named, typed keywords (PEP 692),
and a frozen dataclass is what holds defaults and validation. A test pins that both list
exactly the same names.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from batchops.engine._clock import Clock
from batchops.engine._progress import Progress
from batchops.engine._retry import RetryPolicy

__all__ = ["EngineKwargs", "EngineOptions"]

T = TypeVar("T")


class EngineKwargs(TypedDict, Generic[T], total=False):
    """The engine's options as keywords (``**kwargs: Unpack[EngineKwargs[T]]``).

    Same names and types as :class:`EngineOptions`, which documents each one; use it to
    type a function of yours that passes the engine's options on.
    """

    max_concurrent: int
    max_per_second: float | None
    retry: RetryPolicy | None
    fail_fast: bool
    timeout: float | None
    item_timeout: float | None
    on_progress: Callable[[Progress], object] | None
    progress: bool
    checkpoint: str | os.PathLike[str] | None
    key: Callable[[T], str] | None
    adaptive: bool
    dry_run: bool
    validate: Callable[[T], object] | None
    clock: Clock | None
    checkpoint_fsync: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions(Generic[T]):
    """How one batch runs; every option of ``batch_execute`` / ``batch_stream`` / ``run_batch``.

    Checked when built (a ``ValueError`` / ``TypeError`` that says how to fix it), so a
    value can be made once and reused: ``batch_execute(items, op, options=opts)``.
    Keywords given next to ``options=`` override its fields for that call.

    - ``max_concurrent``: items running at once (the pool size).
    - ``max_per_second``: batch-wide cap on starts (attempts), evenly spaced, no bursts.
    - ``retry``: a :class:`RetryPolicy`; ``None`` makes one attempt per item. An error
      with ``retry_after`` delays that item at least that long and pauses the whole pool.
    - ``fail_fast``: the first failure cancels running items (``"cancelled"``) and skips
      the rest (``"skipped"``).
    - ``timeout``: seconds for the whole batch; items unfinished then, started or not,
      are ``"timeout"`` failures. ``item_timeout``: seconds per attempt (retryable).
    - ``on_progress``: called with a :class:`Progress` as each item finishes;
      ``progress=True`` draws a rich bar when stderr is a terminal.
    - ``checkpoint`` + ``key``: journal each success to a JSON-lines file; a rerun returns
      journaled items as ``Success(attempts=0)`` without calling the operation.
      ``checkpoint_fsync``: fsync each journal line (survives power loss, not only crashes).
    - ``adaptive``: AIMD concurrency between 1 and ``max_concurrent``.
    - ``dry_run`` (+ ``validate``): call ``validate(item)`` instead of the operation.
    - ``clock``: a :class:`Clock`; tests pass a :class:`VirtualClock`.

    >>> EngineOptions(max_concurrent=4, fail_fast=True).max_concurrent
    4
    """

    max_concurrent: int = 10
    max_per_second: float | None = None
    retry: RetryPolicy | None = None
    fail_fast: bool = False
    timeout: float | None = None
    item_timeout: float | None = None
    on_progress: Callable[[Progress], object] | None = None
    progress: bool = False
    checkpoint: str | os.PathLike[str] | None = None
    key: Callable[[T], str] | None = None
    adaptive: bool = False
    dry_run: bool = False
    validate: Callable[[T], object] | None = None
    clock: Clock | None = None
    checkpoint_fsync: bool = False

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def of(cls, options: EngineOptions[T] | None, kwargs: EngineKwargs[T]) -> EngineOptions[T]:
        """``options`` with ``kwargs`` laid over it (both optional), checked."""
        if options is None:
            return cls(**kwargs)
        if not isinstance(options, EngineOptions):
            raise TypeError(
                f"options={options!r}: pass an EngineOptions, e.g. "
                "options=EngineOptions(max_concurrent=20), or the options as keywords"
            )
        return dataclasses.replace(options, **kwargs) if kwargs else options


def _positive(name: str, value: float | None, unit: str) -> None:
    if value is None:
        return
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or math.isnan(value)
        or value <= 0
    ):
        raise ValueError(f"{name}={value!r}: must be a positive number of {unit}, or None")


def _check(o: EngineOptions[Any]) -> None:
    max_concurrent = o.max_concurrent
    if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool):
        raise TypeError(f"max_concurrent={max_concurrent!r}: must be an int >= 1")
    if max_concurrent < 1:
        raise ValueError(
            f"max_concurrent={max_concurrent}: must be >= 1 (it is how many items run at "
            "once; use max_per_second= to slow down further)"
        )
    max_per_second = o.max_per_second
    if max_per_second is not None and (
        isinstance(max_per_second, bool) or not isinstance(max_per_second, int | float)
    ):
        raise TypeError(f"max_per_second={max_per_second!r}: must be a number or None")
    _positive("max_per_second", max_per_second, "items per second (None means no cap)")
    if max_per_second is not None and math.isinf(max_per_second):
        raise ValueError("max_per_second=inf: pass None for no rate cap")
    _positive("timeout", o.timeout, "seconds for the whole batch")
    _positive("item_timeout", o.item_timeout, "seconds per attempt")
    if o.retry is not None and not isinstance(o.retry, RetryPolicy):
        raise TypeError(
            f"retry={o.retry!r}: pass a RetryPolicy, e.g. retry=RetryPolicy(attempts=3), "
            "or None for no retries"
        )
    if o.on_progress is not None and not callable(o.on_progress):
        raise TypeError("on_progress must be a callable taking a Progress, or None")
    if o.checkpoint is not None and o.key is None:
        raise ValueError(
            "checkpoint= needs key=: a function giving each item a stable string id, so a "
            "rerun can tell which items are done, e.g. key=lambda item: str(item['id'])"
        )
    if o.key is not None and o.checkpoint is None:
        raise ValueError("key= is only used with checkpoint=path; pass both or neither")
    if o.key is not None and not callable(o.key):
        raise TypeError("key must be a callable: key=lambda item: str(item['id'])")
    if o.validate is not None and not o.dry_run:
        raise ValueError("validate= is only used with dry_run=True; pass dry_run=True too")
    if o.validate is not None and not callable(o.validate):
        raise TypeError("validate must be a callable (sync or async) taking one item")
    if o.clock is not None and not isinstance(o.clock, Clock):
        raise TypeError(
            f"clock={o.clock!r}: must provide now(), async sleep() and call_at(), like "
            "MonotonicClock or VirtualClock"
        )
