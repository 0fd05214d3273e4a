"""The answer to a batch, built once for the synchronous route, the NDJSON stream and async
batch jobs alike: its status, its JSON body and its counts.

Both results of a run go through one payload (:func:`batch_payload`) and orjson: an
outcome per operation, or, for a plan of runs written whole
(:class:`~batchops.server.batch.executor.Created`), entries spliced from the JSON texts its
records were stored as, which orjson copies as they are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from batchops.server.batch.executor import Created, Result, summarize
from batchops.server.batch.model import BatchPlan

__all__ = ["Answer", "answer", "batch_payload", "batch_status"]


@dataclass(slots=True)
class Answer:
    """A batch's answer: its status, its JSON, and the same before it was encoded."""

    status: int
    data: bytes
    payload: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        """``meta``'s ``total``, ``succeeded``, ``failed`` and ``skipped``."""
        meta = self.payload["meta"]
        return {name: meta[name] for name in ("total", "succeeded", "failed", "skipped")}


def answer(
    batch_id: str,
    plan: BatchPlan,
    result: Result,
    started: float,
    *,
    committed: bool,
    status: int | None = None,
) -> Answer:
    """The answer to ``plan`` run to ``result``; ``started`` is a perf_counter reading
    taken when the request arrived. ``status``: the answer's, when not
    :func:`batch_status` (a rolled-back atomic batch answers its failure's)."""
    payload = batch_payload(batch_id, plan, result, started, committed=committed)
    if status is None:
        status = batch_status(result)
    return Answer(status, orjson.dumps(payload), payload)


def batch_payload(
    batch_id: str,
    plan: BatchPlan,
    result: Result,
    started: float,
    *,
    committed: bool,
) -> dict[str, Any]:
    """``{"batch_id", "committed", "results", "meta"}``; ``started`` is a perf_counter
    reading taken when the request arrived."""
    duration_ms = (time.perf_counter() - started) * 1000
    suppress = plan.options.suppress_success
    if isinstance(result, Created):
        n = plan.count
        counts = {"total": n, "succeeded": n, "failed": 0, "skipped": 0}
        return {
            "batch_id": batch_id,
            "committed": committed,
            "results": [] if suppress else _created_results(plan, result),
            "meta": {
                **counts,
                "duration_ms": round(duration_ms, 3),
                "by_type": {"create": dict(counts)},
                "cost": plan.cost,
            },
        }
    return {
        "batch_id": batch_id,
        "committed": committed,
        "results": [o.to_wire() for o in result if not (suppress and o.counted == "succeeded")],
        "meta": summarize(result, plan, duration_ms),
    }


def batch_status(result: Result) -> int:
    """200 when every operation succeeded, else 207."""
    if isinstance(result, Created):
        return 200
    return 200 if all(o.counted == "succeeded" for o in result) else 207


def _created_results(plan: BatchPlan, created: Created) -> list[orjson.Fragment]:
    """The ``results[]`` entries of runs written whole, spliced from the JSON texts the
    records were stored as: what :meth:`OpOutcome.to_wire` gives for the same records
    (byte for byte, pinned by tests), without a dict per record or a second encoding of
    their data.

    Collection names and record ids need no JSON escaping: both are validated to a
    URL-safe alphabet before anything is written.
    """
    names = plan.names_by_index() if plan.names else None
    fragment = orjson.Fragment
    results: list[orjson.Fragment] = []
    start = 0
    head = '{"index":'
    for run in created.runs:
        middle = f'","collection":"{run.collection}","data":'
        tail = f',"version":1,"created_at":"{run.now}","updated_at":"{run.now}"}}}}'
        rows = enumerate(zip(run.ids, run.json, strict=True), start)
        if names is None:  # the common case, as one comprehension
            results += [
                fragment(
                    f'{head}{i},"type":"create","status":201,"body":{{"id":"{rid}{middle}{text}{tail}'
                )
                for i, (rid, text) in rows
            ]
        else:
            # A name is the client's text: JSON-escaped, unlike ids and collections.
            results += [
                fragment(
                    f"{head}{i}"
                    + (
                        ""
                        if (name := names.get(i)) is None
                        else f',"id":{orjson.dumps(name).decode()}'
                    )
                    + f',"type":"create","status":201,"body":{{"id":"{rid}{middle}{text}{tail}'
                )
                for i, (rid, text) in rows
            ]
        start += len(run.ids)
    return results
