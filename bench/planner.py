"""Sanity benchmark: what planning a 100-operation batch body costs per operation.

Run: ``.venv/bin/python bench/planner.py``. Prints medians (µs per operation) for

- ``orjson.loads`` (untyped JSON, the floor),
- ``decode_batch`` (msgspec typed decode + shape checks),
- ``plan_batch`` (decode + names, dependencies, references, routing, cost),
- pydantic v2 ``model_validate_json`` of an equivalent model (decode only), if installed.

The batch: 100 creates in the REST dialect; every other one references the previous one
(``"${op<i-1>.body.id}"`` in its data) and depends on it. Not a test: a figure for
docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson

from batchops.server.batch.planner import plan_batch
from batchops.server.batch.wire import decode_batch

N_OPS = 100
ROUNDS = 7
LOOPS = 200


def make_body(n: int = N_OPS, *, references: bool = True) -> bytes:
    """A REST-dialect create batch, half of the operations referencing the previous one."""
    ops: list[dict[str, Any]] = []
    for i in range(n):
        data: dict[str, Any] = {"name": f"person {i}", "age": 20 + i % 50, "tags": ["a", "b"]}
        op: dict[str, Any] = {
            "id": f"op{i}",
            "method": "POST",
            "path": "/v1/collections/people/records",
            "body": {"data": data},
        }
        if references and i % 2 == 1:
            data["friend"] = f"${{op{i - 1}.body.id}}"
            op["depends_on"] = [f"op{i - 1}"]
        ops.append(op)
    return orjson.dumps({"operations": ops, "options": {"parallel": 4}})


def per_op_us(fn: Callable[[bytes], object], body: bytes) -> float:
    """Median over ROUNDS of the mean time of LOOPS calls, in µs per operation."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(LOOPS):
            fn(body)
        samples.append((time.perf_counter() - start) / LOOPS / N_OPS * 1e6)
    return statistics.median(samples)


def pydantic_decoder() -> Callable[[bytes], object] | None:
    """An equivalent pydantic v2 model's ``model_validate_json``, or None without pydantic."""
    try:
        from pydantic import BaseModel, ConfigDict, Field
    except ImportError:
        return None

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        atomic: bool = False
        continue_on_error: bool | None = None
        parallel: int = Field(default=1, ge=1)
        timeout_ms: int | None = Field(default=None, gt=0)
        suppress_success: bool = False
        validate_only: bool = False
        max_retries: int = Field(default=0, ge=0, le=10)

    class Operation(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: str | None = None
        depends_on: list[str] | None = None
        atomicity_group: str | None = None
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
        path: str | None = None
        body: Any = None
        headers: dict[str, str] | None = None
        type: Literal["create", "read", "update", "replace", "delete", "search", "list"] | None = (
            None
        )
        collection: str | None = None
        data: Any = None
        query: str | None = None
        options: dict[str, Any] | None = None
        ref: str | None = None
        if_match: int | None = None

    class Request(BaseModel):
        model_config = ConfigDict(extra="forbid")
        operations: list[Operation]
        options: Options = Options()

    return Request.model_validate_json


def main() -> None:
    """Print the figures."""
    body = make_body()
    plan = plan_batch(body)
    assert len(plan.ops) == N_OPS  # the batch is valid: we time the success path
    rows: list[tuple[str, float]] = [
        ("orjson.loads (untyped floor)", per_op_us(orjson.loads, body)),
        ("decode_batch (msgspec + shape checks)", per_op_us(decode_batch, body)),
        ("plan_batch (decode + full planning)", per_op_us(plan_batch, body)),
        (
            "plan_batch, same batch without references",
            per_op_us(plan_batch, make_body(references=False)),
        ),
    ]
    validate = pydantic_decoder()
    if validate is not None:
        rows.append(("pydantic v2 model_validate_json (decode only)", per_op_us(validate, body)))
    print(f"{N_OPS}-op create batch, {len(body)} bytes, half with references; µs per op (median)")
    for label, value in rows:
        print(f"  {label:<48} {value:6.2f}")


if __name__ == "__main__":
    main()
