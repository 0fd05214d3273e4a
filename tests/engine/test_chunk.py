"""chunked / achunked: split by count, by encoded bytes, or both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from batchops.engine import achunked, chunked


def test_chunked_splits_by_count_with_a_short_last_chunk() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_chunked_splits_by_encoded_bytes() -> None:
    # orjson sizes: "aaaa" -> 6 bytes, "bb"/"cc" -> 4, "d" -> 3.
    assert list(chunked(["aaaa", "bb", "cc", "d"], max_bytes=8)) == [
        ["aaaa"],
        ["bb", "cc"],
        ["d"],
    ]


def test_an_item_larger_than_max_bytes_gets_a_chunk_of_its_own() -> None:
    assert list(chunked(["x" * 50, "y", "z"], max_bytes=10)) == [["x" * 50], ["y", "z"]]


def test_count_and_bytes_limits_apply_together() -> None:
    items = [b"a", b"b", b"c", b"dddddd", b"e"]

    chunks = list(chunked(items, 2, max_bytes=6, encode=bytes))

    assert chunks == [[b"a", b"b"], [b"c"], [b"dddddd"], [b"e"]]


def test_chunked_is_lazy() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for i in range(100):
            pulled.append(i)
            yield i

    first = next(chunked(source(), 5))

    assert first == [0, 1, 2, 3, 4]
    assert pulled == [0, 1, 2, 3, 4]


def test_an_empty_input_gives_no_chunks() -> None:
    assert list(chunked([], 3)) == []


async def test_achunked_splits_an_async_iterable_the_same_way() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    assert [c async for c in achunked(numbers(), 2)] == [[0, 1], [2, 3], [4]]
