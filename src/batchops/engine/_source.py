"""The input side of the pool: pull ``(index, item)`` pairs lazily, one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sized
from typing import Generic, TypeVar

__all__ = ["Source"]

T = TypeVar("T")


class Source(Generic[T]):
    """Hands out input items with their index to whichever worker is free.

    Sync iterables are pulled with a plain ``next()`` (``sync_next``): no await happens
    inside it, so workers cannot interleave mid-pull and need no lock. Async iterables
    need a lock because an async generator cannot run two ``__anext__`` at once.
    """

    __slots__ = ("_aiter", "_index", "_lock", "_sync", "exhausted", "sync_next", "total")

    def __init__(self, items: Iterable[T] | AsyncIterable[T]) -> None:
        self.total: int | None = len(items) if isinstance(items, Sized) else None
        self.exhausted = False
        self._index = 0
        self._aiter: AsyncIterator[T] | None = None
        self._sync: Iterator[tuple[int, T]] | None = None
        self._lock: asyncio.Lock | None = None
        self.sync_next: Callable[[], tuple[int, T]] | None = None
        if isinstance(items, str | bytes):
            raise TypeError(
                f"items is a {type(items).__name__}, which would be split into characters; "
                "pass a list of items instead, e.g. [text]"
            )
        if isinstance(items, AsyncIterable):
            self._aiter = aiter(items)
            self._lock = asyncio.Lock()
        elif isinstance(items, Iterable):
            self._sync = enumerate(items)
            self.sync_next = self._sync.__next__
        else:
            raise TypeError(
                f"items must be an iterable or an async iterable, got {type(items).__name__}"
            )

    async def next_async(self) -> tuple[int, T] | None:
        """The next pair from an async iterable, or ``None`` when it is exhausted."""
        assert self._aiter is not None
        assert self._lock is not None
        async with self._lock:
            if self.exhausted:
                return None
            try:
                item = await anext(self._aiter)
            except StopAsyncIteration:
                self.exhausted = True
                return None
            index = self._index
            self._index = index + 1
            return index, item

    def remaining(self) -> Iterator[tuple[int, T]]:
        """The pairs nobody pulled, when the input is finite (has ``len()``), else none.

        Why only sized inputs: a generator may be endless, and accounting for "every
        input item" must not hang; unsized inputs simply stop being pulled.
        """
        if self._sync is not None and self.total is not None:
            yield from self._sync
