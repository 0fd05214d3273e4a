"""The ``bulk_update`` and ``bulk_delete`` jobs: a bulk request too large to answer inline.

A job walks the selection **in id order** in chunks. Each chunk is ONE transaction that
changes its records, stores the chunk's ids as a result row (``job_results`` seq n, with
``after``: the last id it covered) and advances the job's counters and ``checkpoint`` (=
n, the seq of the last committed chunk). A resumed job reads ``after`` from its last
committed chunk and goes on above it, so a committed chunk is never touched again: no
version is bumped twice, whatever the merge patch. Records created while a job runs with
ids above its position may be included when they match (ids are time-ordered).
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator

import orjson
from starlette.responses import Response, StreamingResponse

from batchops.server.bulk.service import BULK_TYPES, BulkOptions, answer, apply
from batchops.server.jobs.runner import JobContext, JobKind
from batchops.server.records import service
from batchops.store.base import JobFailureRow, JobRow, Store, Tx

__all__ = ["KINDS", "bulk_results", "run_bulk_job"]


def _chunk(
    ctx: JobContext, tx: Tx, options: BulkOptions, ids: list[str] | None
) -> tuple[JobRow, bool]:
    """ONE transaction: the next chunk's records, its result row and failures, the job's
    counters and checkpoint. Returns (the job, whether the selection is exhausted); a job
    whose cancel was requested ends as cancelled instead, at this chunk boundary."""
    job = ctx.own(tx)
    if job.cancel_requested:
        return ctx.cancel(tx, job), True
    job_id = job.id
    assert job.collection is not None
    after: str | None = None
    if job.checkpoint:
        previous = tx.get_job_result(job_id, job.checkpoint)
        assert previous is not None, "a bulk job's checkpoint names its last result row"
        after = orjson.loads(previous)["after"]
    remaining = options.limit - job.succeeded if options.limit is not None else None
    size = options.chunk_size if remaining is None else min(options.chunk_size, remaining)
    rows: dict[str, int] = {}  # id -> its 1-based row among the sorted ids (for failures)
    if ids is not None:
        first = bisect.bisect_right(ids, after) if after is not None else 0
        pending = ids[first : first + options.chunk_size]
        rows = {record_id: first + n + 1 for n, record_id in enumerate(pending)}
        changed, missing = (
            apply(tx, job.tenant, job.collection, options, limit=size, ids=pending)
            if size > 0
            else ([], [])
        )
        covered = sorted([*changed, *missing])
        done = len(pending) < options.chunk_size or len(covered) < len(pending)
    else:
        changed, missing = apply(tx, job.tenant, job.collection, options, limit=size, after=after)
        covered = changed
        done = size == 0 or (
            len(changed) < size
            # Rows are locked as they are read, and one changed meanwhile so that it no
            # longer matches is left out: a short chunk ends the job only if nothing
            # matching is left after it.
            and not service.matching_ids(
                tx,
                job.tenant,
                job.collection,
                filters=options.filter,
                after_id=changed[-1] if changed else after,
                limit=1,
            )
        )
    if remaining is not None and len(changed) >= remaining:
        done = True
    seq = job.checkpoint + 1
    body = {"after": covered[-1] if covered else after, "ids": changed, "not_found": missing}
    tx.insert_job_results(job_id, [(seq, orjson.dumps(body))])
    failures = [
        JobFailureRow(
            job_id,
            rows[record_id],
            record_id,
            "NOT_FOUND",
            f"no live record {record_id!r} in collection {job.collection!r}",
        )
        for record_id in (missing if ids is not None else ())
    ]
    processed = len(changed) + len(missing)
    if done:
        job.total = job.processed + processed
    job = ctx.checkpoint(
        tx,
        job,
        seq,
        processed=processed,
        succeeded=len(changed),
        failed=len(missing),
        failures=failures,
    )
    return job, done


async def run_bulk_job(ctx: JobContext) -> None:
    """The ``bulk_update`` / ``bulk_delete`` job (see the module docstring)."""
    options = BulkOptions.from_dict(ctx.job.options)
    ids: list[str] | None = None
    if options.by_ids:
        raw = await ctx.store.run(lambda tx: tx.get_job_result(ctx.id, 0))
        ids = orjson.loads(raw) if raw is not None else []
    await ctx.start()
    done = False
    while not done:

        def step(tx: Tx) -> JobRow:
            nonlocal done
            job, done = _chunk(ctx, tx, options, ids)
            return job

        await ctx.commit(step)  # JobStopped when the chunk cancelled the job
    await ctx.finish("succeeded")


async def bulk_results(store: Store, job: JobRow) -> Response | None:
    """A finished bulk job's results (``GET /v1/jobs/{id}/results``): the inline answer's
    shape, streamed, ``ids`` in id order."""
    return StreamingResponse(_results(store, job), media_type="application/json")


KINDS = {kind: JobKind(run=run_bulk_job, results=bulk_results) for kind in BULK_TYPES}
"""The job kinds of this package, registered by the app at start."""


async def _results(store: Store, job: JobRow) -> AsyncIterator[bytes]:
    options = BulkOptions.from_dict(job.options)
    assert job.collection is not None
    head = answer(job.collection, options, [], [])
    head["matched"] = job.succeeded
    head[options.operation + "d"] = 0 if options.dry_run else job.succeeded
    head.pop("ids")
    not_found = head.pop("not_found", None)
    yield orjson.dumps(head)[:-1] + b',"ids":['
    for key in ("ids", "not_found"):
        if key == "not_found":
            if not_found is None:
                break
            yield b'],"not_found":['
        after, first = 0, True
        while True:

            def fetch(tx: Tx, a: int = after) -> list[tuple[int, bytes]]:
                return tx.list_job_results(job.id, after_seq=a, limit=100)

            page = await store.run(fetch)
            if not page:
                break
            for _, raw in page:
                values = orjson.loads(raw)[key]
                if values:
                    yield (b"" if first else b",") + orjson.dumps(values)[1:-1]
                    first = False
            after = page[-1][0]
    yield b"]}"
