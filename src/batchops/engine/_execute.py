"""``batch_execute``: run the engine and collect every result, in input order."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from operator import attrgetter
from typing import TypeVar

from batchops._results import BatchResult, Result
from batchops.engine._clock import Clock
from batchops.engine._core import Engine
from batchops.engine._progress import Progress
from batchops.engine._retry import RetryPolicy

__all__ = ["batch_execute"]

T = TypeVar("T")
R = TypeVar("R")

_by_index = attrgetter("index")


async def batch_execute(
    items: Iterable[T] | AsyncIterable[T],
    operation: Callable[[T], Awaitable[R]],
    *,
    max_concurrent: int = 10,
    max_per_second: float | None = None,
    retry: RetryPolicy | None = None,
    fail_fast: bool = False,
    timeout: float | None = None,  # noqa: ASYNC109 - a batch deadline, not a call's
    item_timeout: float | None = None,
    on_progress: Callable[[Progress], object] | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    key: Callable[[T], str] | None = None,
    adaptive: bool = False,
    dry_run: bool = False,
    validate: Callable[[T], object] | None = None,
    clock: Clock | None = None,
    checkpoint_fsync: bool = False,
) -> BatchResult[R]:
    """Run ``await operation(item)`` for every item, at most ``max_concurrent`` at a time.

    Returns a :class:`~batchops.BatchResult`: one ``Success`` or ``Failure`` per item, in
    input order. Item errors never raise; misuse (bad options, a non-async operation)
    raises ``ValueError`` / ``TypeError``, and an error from iterating ``items`` itself
    propagates.

    Options (all keyword-only):

    - ``max_per_second``: batch-wide cap on starts (attempts), evenly spaced, no bursts.
    - ``retry``: a :class:`RetryPolicy`; transient errors only by default. An error with
      ``retry_after`` delays that item at least that long and pauses the whole pool.
    - ``fail_fast``: the first failure cancels running items (``"cancelled"``) and skips
      the rest (``"skipped"``).
    - ``timeout``: seconds for the whole batch; items unfinished then, started or not,
      are ``"timeout"`` failures. ``item_timeout``: seconds per attempt (retryable).
    - ``on_progress``: called with a :class:`Progress` as each item finishes;
      ``progress=True`` draws a rich bar when stderr is a terminal.
    - ``checkpoint`` + ``key``: journal each success to a JSON-lines file; a rerun returns
      journaled items as ``Success(attempts=0)`` without calling ``operation``.
    - ``adaptive``: AIMD concurrency between 1 and ``max_concurrent``.
    - ``dry_run`` (+ ``validate``): call ``validate(item)`` instead of ``operation``.
    - ``clock``: a :class:`Clock`; tests pass a :class:`VirtualClock`.

    Fail-fast and timeout account for every input item only when ``items`` has a
    ``len()``; otherwise pulling simply stops. Cancelling the awaiting task cancels the
    batch and raises ``CancelledError`` (no partial result).

    >>> async def double(x: int) -> int:
    ...     return 2 * x
    >>> import asyncio
    >>> asyncio.run(batch_execute([1, 2, 3], double)).values()
    [2, 4, 6]
    """
    engine: Engine[T, R] = Engine(
        items,
        operation,
        max_concurrent=max_concurrent,
        max_per_second=max_per_second,
        retry=retry,
        fail_fast=fail_fast,
        timeout=timeout,
        item_timeout=item_timeout,
        on_progress=on_progress,
        progress=progress,
        checkpoint=checkpoint,
        key=key,
        adaptive=adaptive,
        dry_run=dry_run,
        validate=validate,
        clock=clock,
        checkpoint_fsync=checkpoint_fsync,
    )
    results: list[Result[R]] = []
    started = engine.clock.now()
    await engine.run(results.append)
    # Workers finish out of order; timsort is near-linear on such almost-sorted data.
    results.sort(key=_by_index)
    return BatchResult(results, duration_s=engine.clock.now() - started)
