"""The body and status of a batch answer: built once, for the synchronous route, the NDJSON
stream and async batch jobs alike."""

from __future__ import annotations

import time
from typing import Any

from batchops.server.batch.executor import OpOutcome, summarize
from batchops.server.batch.model import BatchPlan

__all__ = ["batch_payload", "batch_status"]


def batch_payload(
    batch_id: str,
    plan: BatchPlan,
    outcomes: list[OpOutcome],
    started: float,
    *,
    committed: bool,
) -> dict[str, Any]:
    """``{"batch_id", "committed", "results", "meta"}``; ``started`` is a perf_counter
    reading taken when the request arrived."""
    suppress = plan.options.suppress_success
    return {
        "batch_id": batch_id,
        "committed": committed,
        "results": [o.to_wire() for o in outcomes if not (suppress and o.counted == "succeeded")],
        "meta": summarize(outcomes, plan, (time.perf_counter() - started) * 1000),
    }


def batch_status(outcomes: list[OpOutcome]) -> int:
    """200 when every operation succeeded, else 207."""
    return 200 if all(o.counted == "succeeded" for o in outcomes) else 207
