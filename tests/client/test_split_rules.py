"""The request splitter on its own: count, bytes, tied groups, refusals (no server)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchops.client._ops import op_links
from batchops.client._split import Chunk, PendingOp, Splitter


def pending(index: int, op: dict[str, Any]) -> PendingOp:
    data = orjson.dumps(op)
    links, group = op_links(op, data)
    name = op.get("ref")
    return PendingOp(index, name if isinstance(name, str) else None, links, group, data)


def split(ops: list[dict[str, Any]], max_ops: int, max_bytes: int = 1 << 20) -> list[Chunk]:
    splitter = Splitter(max_ops, max_bytes)
    chunks = [c for i, op in enumerate(ops) for c in splitter.add(pending(i, op))]
    last = splitter.rest()
    return chunks + ([last] if last is not None else [])


def layout(chunks: list[Chunk]) -> list[list[int]]:
    return [[op.index for op in c.ops] for c in chunks]


def read(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "read", "collection": "c", "id": f"r{i}", **extra}


def test_independent_operations_are_cut_by_count() -> None:
    assert layout(split([read(i) for i in range(5)], 2)) == [[0, 1], [2, 3], [4]]


def test_references_are_found_in_strings_but_not_in_keys_or_escapes() -> None:
    op: dict[str, Any] = {"type": "update", "collection": "c", "id": "${a.body.id}"}
    op["depends_on"] = ["b"]
    op["data"] = {"${x.y}": "$${lit}", "n": "user-${c.body.data.n}"}
    assert op_links(op, orjson.dumps(op))[0] == {"a", "b", "c"}


def test_a_cut_never_separates_a_group_from_its_referrer() -> None:
    ops = [read(0), read(1, ref="a"), read(2, id="${a.body.id}"), read(3, depends_on=["a"])]
    assert layout(split(ops, 3)) == [[0], [1, 2, 3]]


def test_an_atomicity_group_stays_in_one_request() -> None:
    ops = [read(0), read(1, atomicity_group="g"), read(2), read(3, atomicity_group="g")]
    assert layout(split(ops, 3)) == [[0], [1, 2, 3]]


def test_a_group_larger_than_a_request_refuses_the_operation_that_overflows() -> None:
    ops = [read(0, ref="a"), read(1, ref="b", id="${a.body.id}"), read(2, id="${b.body.id}")]
    chunks = split(ops, 2)
    assert layout(chunks) == [[0, 1], []]
    (index, wire), = chunks[1].refused  # fmt: skip
    assert index == 2
    assert wire["status"] == 400
    assert wire["error"]["code"] == "REFERENCE_ACROSS_REQUESTS"


def test_a_reference_to_an_unknown_or_later_name_is_refused() -> None:
    chunks = split([read(0, id="${later.body.id}"), read(1, ref="later")], 10)
    assert layout(chunks) == [[1]]
    assert chunks[0].refused[0][1]["error"]["details"]["reference"] == "later"


def test_an_operation_over_the_byte_limit_alone_is_refused_with_413() -> None:
    chunks = split([read(0, data={"x": "y" * 2000}), read(1)], 10, max_bytes=1024)
    assert layout(chunks) == [[1]]
    assert chunks[0].refused[0][1]["status"] == 413


async def test_misuse_is_reported_where_it_is_written() -> None:
    from batchops.client import AsyncClient

    async with AsyncClient("http://127.0.0.1:9", "k") as client:
        with pytest.raises(TypeError, match="operation 0 is a str"):
            await client.batch(["not an op"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="chunk_size=0"):
            await client.batch([read(0)], chunk_size=0)
    with pytest.raises(ValueError, match="max_concurrent"):
        AsyncClient("http://x", "k", max_concurrent=0)
