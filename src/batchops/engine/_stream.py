"""``batch_stream``: the engine's results as an async iterator, as they finish."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TypeVar, Unpack

from batchops._results import Result
from batchops.engine._core import Engine
from batchops.engine._options import EngineKwargs, EngineOptions

__all__ = ["batch_stream"]

T = TypeVar("T")
R = TypeVar("R")


class _Channel:
    """Finished results waiting for the consumer; workers block when it is full.

    Why bounded: with an endless input and a slow consumer, an unbounded buffer is a
    memory leak. Its capacity equals ``max_concurrent``, so at most ~2×N results exist.
    """

    __slots__ = ("_capacity", "_consumer", "_producers", "buffer")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self.buffer: deque[Result[object]] = deque()
        self._consumer: asyncio.Future[None] | None = None
        self._producers: deque[asyncio.Future[None]] = deque()

    def put(self, result: Result[object]) -> None:
        self.buffer.append(result)
        self.wake_consumer()

    def wake_consumer(self) -> None:
        consumer = self._consumer
        if consumer is not None and not consumer.done():
            consumer.set_result(None)

    def full(self) -> bool:
        return len(self.buffer) >= self._capacity

    async def wait_room(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._producers.append(future)
        await future

    async def wait_result(self) -> None:
        self._consumer = asyncio.get_running_loop().create_future()
        await self._consumer

    def take(self) -> Result[object]:
        result = self.buffer.popleft()
        if self._producers and len(self.buffer) < self._capacity:
            future = self._producers.popleft()
            if not future.done():
                future.set_result(None)
        return result


def batch_stream(
    items: Iterable[T] | AsyncIterable[T],
    operation: Callable[[T], Awaitable[R]],
    *,
    options: EngineOptions[T] | None = None,
    **kwargs: Unpack[EngineKwargs[T]],
) -> AsyncGenerator[Result[R], None]:
    """Yield each item's ``Success`` / ``Failure`` as soon as it finishes (see ``.index``).

    Same options as :func:`batch_execute`. Input is pulled lazily, only when a worker is
    free, and workers wait while the consumer lags, so an endless async generator runs
    in bounded memory. Options are checked here, at call time; work starts on the first
    iteration. Leaving early (``break``, ``aclose()``) cancels the running items; use
    ``contextlib.aclosing`` to make that happen at once rather than when the generator
    is garbage-collected::

        async with contextlib.aclosing(batch_stream(ids, fetch)) as results:
            async for result in results:
                ...
    """
    checked = EngineOptions.of(options, kwargs)
    engine: Engine[T, R] = Engine(items, operation, checked)
    return _stream(engine, checked.max_concurrent)


async def _stream(engine: Engine[T, R], capacity: int) -> AsyncGenerator[Result[R], None]:
    channel = _Channel(capacity)
    runner = asyncio.get_running_loop().create_task(engine.run(channel.put, channel))
    runner.add_done_callback(lambda _: channel.wake_consumer())
    try:
        while True:
            while not channel.buffer:
                if runner.done():
                    # Surface a misuse or input error raised inside the engine.
                    runner.result()
                    return
                await channel.wait_result()
            result: Result[R] = channel.take()  # type: ignore[assignment]
            yield result
    finally:
        if not runner.done():
            runner.cancel()
            try:
                await runner
            except asyncio.CancelledError:
                # Only swallow the cancellation we caused, not one aimed at our caller.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
