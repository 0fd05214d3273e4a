"""The ``import`` job: the uploaded file, chunk by chunk, into its collection.

Each chunk is ONE transaction (:meth:`~batchops.server.jobs.runner.JobContext.commit`) that
writes the chunk's records through the records service, inserts its failures and moves
the checkpoint to its last row number; a resumed job skips exactly the rows at or below
the checkpoint, so nothing is lost or written twice.

A job that has no ``total`` yet first counts the rows (:func:`_first_pass`); with strict
validation it also checks every row there and fails before anything is written. Plain
creates are then prepared in a worker process (:mod:`batchops.server.imports.prepare`);
upserts and dry runs are converted in this process with one chunk of read-ahead.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batchops._exceptions import APIError
from batchops.server import _ids
from batchops.server.imports.check import checked_rows, key_text, missing_key, scan_rows
from batchops.server.imports.csv_rows import csv_header
from batchops.server.imports.options import ImportOptions
from batchops.server.imports.prepare import ChunkPreparer, PreparedChunk
from batchops.server.imports.read import read_rows, take_rows
from batchops.server.imports.rows import InputError, RowError, SourceRow, failure_text, input_text
from batchops.server.jobs.runner import JobContext, JobKind
from batchops.server.records import service
from batchops.store.base import EncodedRecords, JobFailureRow, JobRow, Tx

__all__ = ["KINDS", "run_import"]


async def run_import(ctx: JobContext) -> None:
    """The ``import`` job (see the module docstring)."""
    job = ctx.job
    options = ImportOptions.from_dict(job.options)
    # A local file wherever the upload is kept (copied from the database when it is there;
    # a process that takes the job over makes its own copy).
    path = await ctx.input_file(size=options.bytes or None)
    if path is None:
        await ctx.fail("UPLOAD_MISSING", "the uploaded file is gone")
        return
    job = await ctx.start()
    try:
        header = await asyncio.to_thread(csv_header, path) if options.format == "csv" else []
    except (csv.Error, UnicodeDecodeError) as exc:  # refused at upload; a job queued before
        await ctx.fail("INVALID_CSV", f"the CSV header: {exc}")
        return
    # Plain creates are prepared in a worker process (see batchops.server.imports.prepare),
    # started now so that its start-up (~0.3 s) overlaps the first pass.
    preparer = (
        ChunkPreparer(
            path,
            options,
            header,
            skip_to=job.checkpoint,
            # SQLite computes search text when it indexes; PostgreSQL stores it with the row.
            with_search=ctx.store.dialect == "postgresql",
        )
        if options.upsert_key is None and not options.dry_run
        else None
    )
    try:
        if job.total is None:
            job = await _first_pass(ctx, options, path, header)
            if job.state != "running":
                return
        if preparer is not None:
            await _import_prepared(ctx, options, preparer)
        else:
            await _import_rows(ctx, job, options, path, header)
    except InputError as exc:
        await ctx.fail(exc.code, exc.message, row=exc.row_number)
        return
    finally:
        if preparer is not None:
            await preparer.aclose()
    await ctx.finish("succeeded")


KINDS = {"import": JobKind(run=run_import)}
"""The job kinds of this package, registered by the app at start."""


def _convert_chunk(
    chunk: list[SourceRow], options: ImportOptions, header: list[str]
) -> list[dict[str, Any] | RowError]:
    """Each row's data, or the RowError it fails with: conversion, the record rule and the
    upsert key (so that a key the store could not look up never reaches it), as in the
    strict first pass and in the worker process."""
    return checked_rows(chunk, options.format, header, options.mapping, options.upsert_key)


def _failure(
    job_id: str, row: SourceRow, options: ImportOptions, code: str, message: str
) -> JobFailureRow:
    return JobFailureRow(
        job_id, row.number, input_text(row, options.format), code, failure_text(message)
    )


async def _first_pass(
    ctx: JobContext, options: ImportOptions, path: Path, header: list[str]
) -> JobRow:
    """Count the rows (the job's ``total``); with strict validation, also check every row
    (conversion, the record rule, the upsert key: every failure the import would record
    but a write conflict) and fail the job — before anything is written — if any is bad."""
    strict = options.validation == "strict"
    if strict:

        def forget(tx: Tx, j: JobRow) -> None:
            tx.delete_job_failures(j.id)  # a pass cut short by a crash starts again

        await ctx.update(forget)
    scan = scan_rows(
        path,
        options.format,
        header,
        options.mapping,
        size=options.chunk_size,
        check=strict,
        upsert_key=options.upsert_key,
    )
    total = bad = 0
    while True:
        # One hop per chunk: the scan holds the GIL, the event loop gets it between chunks.
        step = await asyncio.to_thread(next, scan, None)
        if step is None:
            break
        count, problems = step
        total += count
        if not problems:
            continue
        failures = [
            _failure(ctx.id, row, options, error.code, error.message) for row, error in problems
        ]
        bad += len(failures)

        def record(tx: Tx, j: JobRow, f: list[JobFailureRow] = failures) -> None:
            tx.insert_job_failures(f)

        await ctx.update(record)

    def counted(tx: Tx, j: JobRow) -> None:
        j.total = total
        if bad:
            j.state = "failed"
            j.failed = bad
            j.finished_at = _ids.now_iso()
            j.worker = None
            j.error = {
                "code": "VALIDATION_FAILED",
                "message": f"{bad} of {total} rows are invalid; nothing was imported "
                "(strict validation). See the failures.",
            }

    return await ctx.update(counted)  # (a failed job's upload is deleted by update)


async def _import_rows(
    ctx: JobContext, job: JobRow, options: ImportOptions, path: Path, header: list[str]
) -> None:
    if options.upsert_key is not None and not options.dry_run:
        # Each chunk looks its keys up (find_ids_by_field): without this index that is a
        # scan of the collection per chunk (~170 ms a chunk at 200k records).
        assert job.collection is not None
        collection, key = job.collection, options.upsert_key
        await ctx.store.run(
            lambda tx: tx.ensure_field_index(job.tenant, collection, key), retries=3
        )
    rows = read_rows(path, options.format)
    skip_to = job.checkpoint
    # Read-ahead: the next chunk is parsed and converted in a worker thread while this one
    # is written (SQLite and psycopg release the GIL while the database works). One chunk
    # ahead at most, so memory stays bounded; an InputError in it surfaces only after the
    # chunk before it has committed, as without read-ahead.
    ahead = _read_ahead(rows, options, header, skip_to)
    try:
        while True:
            chunk, converted = await ahead
            if not chunk:
                return
            ahead = _read_ahead(rows, options, header, skip_to)

            def apply(
                tx: Tx,
                c: list[SourceRow] = chunk,
                v: list[dict[str, Any] | RowError] = converted,
            ) -> JobRow:
                return _apply_chunk(ctx, tx, options, c, v)

            await ctx.commit(apply)
    finally:
        ahead.cancel()  # leaving early (cancelled, JobStopped, an error): drop the read-ahead
        ahead.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned read-ahead's error is not logged


def _read_ahead(
    rows: Iterator[SourceRow], options: ImportOptions, header: list[str], skip_to: int
) -> asyncio.Future[tuple[list[SourceRow], list[dict[str, Any] | RowError]]]:
    """The next chunk and its conversion, read in a worker thread (one hop)."""

    def read() -> tuple[list[SourceRow], list[dict[str, Any] | RowError]]:
        chunk = take_rows(rows, options.chunk_size, skip_to)
        return chunk, _convert_chunk(chunk, options, header)

    return asyncio.ensure_future(asyncio.to_thread(read))


async def _import_prepared(
    ctx: JobContext, options: ImportOptions, preparer: ChunkPreparer
) -> None:
    """Plain creates: each chunk comes prepared from the worker process, which prepares
    the next one while this one is written; the next one is also received (unpickled)
    during the write, so the database thread never waits for it."""

    async def receive() -> tuple[PreparedChunk, EncodedRecords | None] | None:
        # The chunk's texts are cut apart here too, beside the write before it, not in
        # the database thread (~0.2 µs a row there).
        chunk = await preparer.next()
        return None if chunk is None else (chunk, await asyncio.to_thread(chunk.records))

    ahead = asyncio.ensure_future(receive())
    try:
        while (received := await ahead) is not None:
            ahead = asyncio.ensure_future(receive())

            def apply(
                tx: Tx,
                chunk: PreparedChunk = received[0],
                records: EncodedRecords | None = received[1],
            ) -> JobRow:
                return _apply_prepared(ctx, tx, chunk, records)

            await ctx.commit(apply)
    finally:
        ahead.cancel()  # leaving early: the worker is stopped by the caller
        ahead.add_done_callback(_retrieve)


def _apply_chunk(
    ctx: JobContext,
    tx: Tx,
    options: ImportOptions,
    chunk: list[SourceRow],
    converted: list[dict[str, Any] | RowError],
) -> JobRow:
    """ONE transaction: the chunk's records, its failures, the job's counters."""
    job = ctx.own(tx)
    if job.cancel_requested:
        return ctx.cancel(tx, job)
    assert job.collection is not None
    failures: list[JobFailureRow] = []
    good: list[tuple[SourceRow, dict[str, Any]]] = []
    for row, outcome in zip(chunk, converted, strict=True):
        if isinstance(outcome, RowError):
            failures.append(_failure(job.id, row, options, outcome.code, outcome.message))
        else:
            good.append((row, outcome))
    if not options.dry_run and good:  # (a dry run's rows were all checked by _convert_chunk)
        if options.upsert_key is None:
            _create(tx, job, good, options, failures)
        else:
            _upsert(tx, job, good, options, failures)
    failures.sort(key=lambda f: f.row_number)
    return _advance(ctx, tx, job, len(chunk), chunk[-1].number, failures)


def _apply_prepared(
    ctx: JobContext, tx: Tx, chunk: PreparedChunk, records: EncodedRecords | None
) -> JobRow:
    """:func:`_apply_chunk` for a chunk prepared in the worker process (plain creates);
    ``records``: ``chunk.records()``."""
    job = ctx.own(tx)
    if job.cancel_requested:
        return ctx.cancel(tx, job)
    assert job.collection is not None
    if records is not None:
        service.create_prepared(
            tx, job.tenant, service.PreparedCreates.encoded(job.collection, records)
        )
    failures = [JobFailureRow(job.id, *failure) for failure in chunk.failures]
    return _advance(ctx, tx, job, chunk.count, chunk.last_number, failures)


def _advance(
    ctx: JobContext,
    tx: Tx,
    job: JobRow,
    count: int,
    last_number: int,
    failures: list[JobFailureRow],
) -> JobRow:
    """The chunk's failures and the job's counters; the checkpoint is its last row."""
    return ctx.checkpoint(
        tx,
        job,
        last_number,
        processed=count,
        succeeded=count - len(failures),
        failed=len(failures),
        failures=failures,
    )


def _create(
    tx: Tx,
    job: JobRow,
    good: list[tuple[SourceRow, dict[str, Any]]],
    options: ImportOptions,
    failures: list[JobFailureRow],
) -> None:
    assert job.collection is not None
    problems = service.create_bulk(tx, job.tenant, job.collection, [data for _, data in good])
    for position, problem in problems.items():
        failures.append(_failure(job.id, good[position][0], options, problem.code, problem.message))


def _missing_key(job_id: str, row: SourceRow, options: ImportOptions) -> JobFailureRow:
    assert options.upsert_key is not None
    error = missing_key(options.upsert_key)
    return _failure(job_id, row, options, error.code, error.message)


def _upsert(
    tx: Tx,
    job: JobRow,
    good: list[tuple[SourceRow, dict[str, Any]]],
    options: ImportOptions,
    failures: list[JobFailureRow],
) -> None:
    """Replace the records whose upsert key matches, create the rest. A key repeated
    within the chunk starts a new segment, so its later row replaces the earlier one.

    The chunk holds a transaction lock on (tenant, collection, key field) first: between
    a lookup that finds no record and the create, a concurrent upsert of the same key
    would otherwise create it too (a key created twice). Upserts into one collection on
    one key therefore commit one chunk at a time (PostgreSQL; SQLite's writer does anyway).
    """
    assert job.collection is not None
    assert options.upsert_key is not None
    # (A name shared by accident would only serialise more: "|" needs no escaping.)
    tx.lock(f"upsert|{job.tenant}|{job.collection}|{options.upsert_key}")
    segment: list[tuple[SourceRow, dict[str, Any], str]] = []
    for row, data in good:
        key = key_text(data, options.upsert_key)
        if key is None:
            failures.append(_missing_key(job.id, row, options))
            continue
        if any(k == key for _, _, k in segment):
            _upsert_segment(tx, job, segment, options, failures)
            segment = []
        segment.append((row, data, key))
    _upsert_segment(tx, job, segment, options, failures)


def _upsert_segment(
    tx: Tx,
    job: JobRow,
    segment: list[tuple[SourceRow, dict[str, Any], str]],
    options: ImportOptions,
    failures: list[JobFailureRow],
) -> None:
    if not segment:
        return
    assert job.collection is not None
    assert options.upsert_key is not None
    found = tx.find_ids_by_field(
        job.tenant, job.collection, options.upsert_key, [k for _, _, k in segment]
    )
    creates: list[tuple[SourceRow, dict[str, Any]]] = []
    for row, data, key in segment:
        record_id = found.get(key)
        if record_id is None:
            creates.append((row, data))
            continue
        try:
            service.replace(tx, job.tenant, job.collection, record_id, data)
        except APIError as exc:
            failures.append(_failure(job.id, row, options, exc.code, exc.message))
    if creates:
        _create(tx, job, creates, options, failures)
