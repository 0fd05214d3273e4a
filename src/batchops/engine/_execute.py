"""``batch_execute``: run the engine and collect every result, in input order."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from operator import attrgetter
from typing import TypeVar, Unpack

from batchops._results import BatchResult, Result
from batchops.engine._core import Engine
from batchops.engine._options import EngineKwargs, EngineOptions

__all__ = ["batch_execute"]

T = TypeVar("T")
R = TypeVar("R")

_by_index = attrgetter("index")


async def batch_execute(
    items: Iterable[T] | AsyncIterable[T],
    operation: Callable[[T], Awaitable[R]],
    *,
    options: EngineOptions[T] | None = None,
    **kwargs: Unpack[EngineKwargs[T]],
) -> BatchResult[R]:
    """Run ``await operation(item)`` for every item, at most ``max_concurrent`` at a time.

    Returns a :class:`~batchops.BatchResult`: one ``Success`` or ``Failure`` per item, in
    input order. Item errors never raise; misuse (bad options, a non-async operation)
    raises ``ValueError`` / ``TypeError``, and an error from iterating ``items`` itself
    propagates.

    Options are keywords, or one :class:`EngineOptions` value (``options=``; keywords
    given beside it override its fields); :class:`EngineOptions` documents each:
    ``max_concurrent``, ``max_per_second``, ``retry``, ``fail_fast``, ``timeout``,
    ``item_timeout``, ``on_progress``, ``progress``, ``checkpoint`` + ``key``,
    ``adaptive``, ``dry_run`` + ``validate``, ``clock``, ``checkpoint_fsync``.

    Fail-fast and timeout account for every input item only when ``items`` has a
    ``len()``; otherwise pulling simply stops. Cancelling the awaiting task cancels the
    batch and raises ``CancelledError`` (no partial result).

    >>> async def double(x: int) -> int:
    ...     return 2 * x
    >>> import asyncio
    >>> asyncio.run(batch_execute([1, 2, 3], double)).values()
    [2, 4, 6]
    """
    engine: Engine[T, R] = Engine(items, operation, EngineOptions.of(options, kwargs))
    results: list[Result[R]] = []
    started = engine.clock.now()
    await engine.run(results.append)
    # Workers finish out of order; timsort is near-linear on such almost-sorted data.
    results.sort(key=_by_index)
    return BatchResult(results, duration_s=engine.clock.now() - started)
