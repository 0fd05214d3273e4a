"""Split items into lists by count and/or encoded size, for callers that send batches."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import orjson

__all__ = ["achunked", "chunked"]

T = TypeVar("T")


def _orjson_size(item: Any) -> int:
    return len(orjson.dumps(item))


class _Chunker(Generic[T]):
    """The splitting rule, shared by :func:`chunked` and :func:`achunked`."""

    __slots__ = ("_bytes", "_chunk", "_max_bytes", "_size", "_sizeof")

    def __init__(
        self, size: int | None, max_bytes: int | None, encode: Callable[[T], bytes] | None
    ) -> None:
        if size is None and max_bytes is None:
            raise ValueError(
                "chunked() needs size= (items per chunk) and/or max_bytes= (encoded bytes "
                "per chunk), e.g. chunked(items, size=100)"
            )
        for name, value in (("size", size), ("max_bytes", max_bytes)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"chunked({name}={value!r}): must be an int >= 1, or None")
        if encode is not None and max_bytes is None:
            raise ValueError("chunked(encode=...) only matters with max_bytes=; pass both")
        self._size = size
        self._max_bytes = max_bytes
        self._sizeof: Callable[[T], int] = (
            _orjson_size if encode is None else (lambda item: len(encode(item)))
        )
        self._chunk: list[T] = []
        self._bytes = 0

    def add(self, item: T) -> Iterator[list[T]]:
        """Add one item; yield the chunk(s) it closes (by bytes before it, by count with it)."""
        if self._max_bytes is not None:
            nbytes = self._sizeof(item)
            # An item bigger than max_bytes on its own still has to be sent: it gets a
            # chunk of its own rather than an error, and the caller's server decides.
            if self._chunk and self._bytes + nbytes > self._max_bytes:
                yield self._flush()
            self._bytes += nbytes
        self._chunk.append(item)
        if self._size is not None and len(self._chunk) >= self._size:
            yield self._flush()

    def _flush(self) -> list[T]:
        chunk, self._chunk, self._bytes = self._chunk, [], 0
        return chunk

    def rest(self) -> list[T] | None:
        """The last, partial chunk (if any)."""
        return self._flush() if self._chunk else None


def chunked(
    items: Iterable[T],
    size: int | None = None,
    *,
    max_bytes: int | None = None,
    encode: Callable[[T], bytes] | None = None,
) -> Iterator[list[T]]:
    """Split ``items`` into lists of at most ``size`` items and/or ``max_bytes`` bytes.

    The byte size of an item is ``len(encode(item))`` (default: ``orjson.dumps``), and a
    chunk's size is the sum over its items (separators and brackets are not counted:
    leave headroom). An item larger than ``max_bytes`` by itself forms its own chunk.
    Lazy: pulls only what the next chunk needs.

    >>> list(chunked(range(5), 2))
    [[0, 1], [2, 3], [4]]
    >>> list(chunked(["aaaa", "bb", "cc", "d"], max_bytes=8))
    [['aaaa'], ['bb', 'cc'], ['d']]
    """
    # Checked here, not on first next(), so misuse fails where it is written.
    chunker: _Chunker[T] = _Chunker(size, max_bytes, encode)
    return _chunks(items, chunker)


def _chunks(items: Iterable[T], chunker: _Chunker[T]) -> Iterator[list[T]]:
    for item in items:
        yield from chunker.add(item)
    last = chunker.rest()
    if last is not None:
        yield last


def achunked(
    items: AsyncIterable[T],
    size: int | None = None,
    *,
    max_bytes: int | None = None,
    encode: Callable[[T], bytes] | None = None,
) -> AsyncIterator[list[T]]:
    """:func:`chunked` for async iterables: same rules, yields lists as they fill."""
    chunker: _Chunker[T] = _Chunker(size, max_bytes, encode)
    return _achunks(items, chunker)


async def _achunks(items: AsyncIterable[T], chunker: _Chunker[T]) -> AsyncIterator[list[T]]:
    async for item in items:
        for chunk in chunker.add(item):
            yield chunk
    last = chunker.rest()
    if last is not None:
        yield last
