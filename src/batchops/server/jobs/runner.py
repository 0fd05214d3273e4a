"""The job runner inside ``batchops serve``: claims jobs and runs them chunk by chunk.

Durability rule: each chunk is ONE ``store.run(fn)`` whose ``fn`` writes the chunk's
records through the operations layer, inserts the chunk's failures and advances the job's
counters and checkpoint — one transaction. A crash (kill -9) therefore leaves either the
whole chunk with its checkpoint or neither, and the resumed job skips exactly the rows at
or below the checkpoint: nothing is lost or written twice.

Ownership: a job being run carries ``worker`` (this runner's id) and a heartbeat renewed
every ``lease_s / 3``. Runners claim queued jobs and running jobs whose heartbeat is older
than ``lease_s`` (their process died). Every chunk transaction re-reads the job and stops
if another runner took it over (fencing), so two runners never both apply a chunk.
A clean shutdown puts this runner's jobs back in the queue at once.

Extension points: ``_RUNNERS`` maps a job type to its coroutine; bulk update/delete jobs
and webhooks on completion (via :class:`JobEvents`) plug in there.

Webhooks: whatever transaction saves a job in a terminal state must also call
:func:`batchops.server.jobs.webhooks.enqueue_job_event` (``_update`` — hence ``_finish`` —
does it), so the delivery rows commit with the state change (the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchops._exceptions import APIError, StoreError
from batchops.server import _ids
from batchops.server.jobs.batches import run_batch_job
from batchops.server.jobs.bulk import run_bulk_job
from batchops.server.jobs.imports import (
    InputError,
    RowError,
    SourceRow,
    checked_rows,
    csv_header,
    failure_text,
    input_text,
    key_text,
    missing_key,
    read_rows,
    scan_rows,
    take_rows,
)
from batchops.server.jobs.prepare import ChunkPreparer, PreparedChunk
from batchops.server.jobs.schemas import TERMINAL_STATES, ImportOptions
from batchops.server.jobs.webhooks import enqueue_job_event
from batchops.server.records import service
from batchops.server.settings import Settings
from batchops.store._url import parse_store_url
from batchops.store.base import JobFailureRow, JobRow, Store, Tx

__all__ = ["JobEvents", "JobRunner", "uploads_dir"]

log = logging.getLogger("batchops.jobs")


def uploads_dir(settings: Settings) -> Path:
    """Where uploaded import files wait: ``data_dir``, else beside the SQLite file, else
    ``./batchops-uploads``."""
    if settings.data_dir:
        return Path(settings.data_dir)
    dialect, target = parse_store_url(settings.db_url)
    if dialect == "sqlite":
        return Path(target).resolve().parent / "batchops-uploads"
    return Path.cwd() / "batchops-uploads"


class JobEvents:
    """In-process change notification: the runner calls :meth:`notify` after every commit;
    event streams :meth:`wait` instead of polling hard. (Changes made by other processes
    are seen at the next poll.)"""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every waiter."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout_s: float) -> None:
        """Until the next notify, or ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)


class _Stop(Exception):
    """The job must stop here: cancelled, or no longer ours."""


@dataclass(slots=True)
class _Chunk:
    rows: list[SourceRow]
    data: list[dict[str, Any] | RowError] = field(default_factory=list)


class JobRunner:
    """Runs up to ``settings.job_concurrency`` jobs at once (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.uploads = uploads_dir(settings)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.events = JobEvents()
        #: Test hook: awaited after every committed chunk with the job as committed.
        self.after_chunk: Callable[[JobRow], Awaitable[None]] | None = None
        self._wake = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def upload_path(self, job_id: str) -> Path:
        """The stored upload of a job."""
        return self.uploads / job_id

    async def start(self) -> None:
        """Start claiming jobs (called by the app's lifespan)."""
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="batchops-jobs"),
            asyncio.create_task(self._heartbeat_loop(), name="batchops-jobs-heartbeat"),
        ]

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop at once (a chunk in flight finishes in the database thread) and hand this
        runner's jobs back to the queue, so a restart resumes them without waiting."""
        self._stopping = True
        tasks = [*self._tasks, *self._active.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.store.run(lambda tx: tx.release_jobs(self.worker), retries=3)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            while len(self._active) < self.settings.job_concurrency:
                try:
                    job = await self.store.run(
                        lambda tx: tx.claim_job(
                            self.worker, now=time.time(), lease_s=self.settings.job_lease_s
                        ),
                        retries=3,
                    )
                except Exception:
                    log.exception("claiming a job failed")
                    break
                if job is None:
                    break
                self.events.notify()
                task = asyncio.create_task(self._run(job), name=f"batchops-job-{job.id}")
                self._active[job.id] = task
                task.add_done_callback(self._on_done(job.id))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_s)

    def _on_done(self, job_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._active.pop(job_id, None)
            self._wake.set()

        return done

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.job_lease_s / 3)
            with contextlib.suppress(Exception):
                await self.store.run(lambda tx: tx.heartbeat_jobs(self.worker, now=time.time()))

    async def _run(self, job: JobRow) -> None:
        try:
            await _RUNNERS[job.type](self, job)
        except (_Stop, asyncio.CancelledError):
            return
        except StoreError as exc:
            # Classified once by the store: the job says what the database refused, never
            # an INTERNAL_ERROR for what its input caused.
            log.warning("job %s failed: %s", job.id, exc)
            error = exc.to_api_error()
            await self._finish(job.id, "failed", {"code": error.code, "message": error.message})
        except Exception as exc:
            log.exception("job %s failed", job.id)
            await self._finish(
                job.id, "failed", {"code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}"}
            )
        self.events.notify()

    # -- helpers shared by job types ---------------------------------------------------------

    def _own(self, tx: Tx, job_id: str) -> JobRow:
        """The job, locked, if this runner still owns it; else _Stop."""
        job = tx.get_job(job_id, for_update=True)
        if job is None or job.state != "running" or job.worker != self.worker:
            raise _Stop
        return job

    async def _update(self, job_id: str, change: Callable[[Tx, JobRow], None]) -> JobRow:
        def fn(tx: Tx) -> JobRow:
            job = self._own(tx, job_id)
            change(tx, job)
            job.revision += 1
            job.heartbeat_at = time.time()
            tx.save_job(job)
            if job.state in TERMINAL_STATES:
                enqueue_job_event(tx, job)  # webhooks' outbox: same transaction
            return job

        job = await self.store.run(fn, retries=3)
        self.events.notify()
        return job

    async def _finish(
        self, job_id: str, state: str, error: dict[str, Any] | None = None
    ) -> JobRow | None:
        def change(tx: Tx, job: JobRow) -> None:
            job.state = state  # type: ignore[assignment]
            job.finished_at = _ids.now_iso()
            job.error = error
            job.worker = None

        try:
            job = await self._update(job_id, change)
        except _Stop:
            return None
        if job.state in TERMINAL_STATES:
            with contextlib.suppress(OSError):
                self.upload_path(job_id).unlink(missing_ok=True)
        return job


# -- imports --------------------------------------------------------------------------------


async def _run_import(runner: JobRunner, job: JobRow) -> None:
    options = ImportOptions.from_dict(job.options)
    path = runner.upload_path(job.id)
    if not path.exists():
        await runner._finish(
            job.id,
            "failed",
            {"code": "UPLOAD_MISSING", "message": "the uploaded file is gone from this server"},
        )
        return
    if job.started_at is None:

        def started(tx: Tx, j: JobRow) -> None:
            j.started_at = _ids.now_iso()

        job = await runner._update(job.id, started)
    try:
        header = await asyncio.to_thread(csv_header, path) if options.format == "csv" else []
    except (csv.Error, UnicodeDecodeError) as exc:  # refused at upload; a job queued before
        await runner._finish(
            job.id, "failed", {"code": "INVALID_CSV", "message": f"the CSV header: {exc}"}
        )
        return
    # Plain creates are prepared in a worker process (see batchops.server.jobs.prepare),
    # started now so that its start-up (~0.3 s) overlaps the first pass.
    preparer = (
        ChunkPreparer(
            path,
            options,
            header,
            skip_to=job.checkpoint,
            # SQLite computes search text when it indexes; PostgreSQL stores it with the row.
            with_search=runner.store.dialect == "postgresql",
        )
        if options.upsert_key is None and not options.dry_run
        else None
    )
    try:
        if job.total is None:
            job = await _first_pass(runner, job, options, path, header)
            if job.state != "running":
                return
        if preparer is not None:
            await _import_prepared(runner, job, options, path, preparer)
        else:
            await _import_rows(runner, job, options, path, header)
    except InputError as exc:
        await runner._finish(
            job.id, "failed", {"code": exc.code, "message": exc.message, "row": exc.row_number}
        )
        return
    finally:
        if preparer is not None:
            await preparer.aclose()
    await runner._finish(job.id, "succeeded")


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
    runner: JobRunner, job: JobRow, options: ImportOptions, path: Path, header: list[str]
) -> JobRow:
    """Count the rows (the job's ``total``); with strict validation, also check every row
    (conversion, the record rule, the upsert key: every failure the import would record
    but a write conflict) and fail the job — before anything is written — if any is bad."""
    strict = options.validation == "strict"
    if strict:

        def forget(tx: Tx, j: JobRow) -> None:
            tx.delete_job_failures(j.id)  # a pass cut short by a crash starts again

        await runner._update(job.id, forget)
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
            _failure(job.id, row, options, error.code, error.message) for row, error in problems
        ]
        bad += len(failures)

        def record(tx: Tx, j: JobRow, f: list[JobFailureRow] = failures) -> None:
            tx.insert_job_failures(f)

        await runner._update(job.id, record)

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

    job = await runner._update(job.id, counted)
    if job.state == "failed":
        with contextlib.suppress(OSError):
            await asyncio.to_thread(path.unlink, missing_ok=True)
    return job


async def _import_rows(
    runner: JobRunner, job: JobRow, options: ImportOptions, path: Path, header: list[str]
) -> None:
    if options.upsert_key is not None and not options.dry_run:
        # Each chunk looks its keys up (find_ids_by_field): without this index that is a
        # scan of the collection per chunk (~170 ms a chunk at 200k records).
        assert job.collection is not None
        collection, key = job.collection, options.upsert_key
        await runner.store.run(
            lambda tx: tx.ensure_field_index(job.tenant, collection, key), retries=3
        )
    rows = read_rows(path, options.format)
    skip_to = job.checkpoint
    job_id = job.id
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
                return _apply_chunk(runner, tx, job_id, options, c, v)

            await _write_chunk(runner, path, apply)
    finally:
        ahead.cancel()  # leaving early (cancelled, _Stop, an error): drop the read-ahead
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
    runner: JobRunner, job: JobRow, options: ImportOptions, path: Path, preparer: ChunkPreparer
) -> None:
    """Plain creates: each chunk comes prepared from the worker process, which prepares
    the next one while this one is written; the next one is also received (unpickled)
    during the write, so the database thread never waits for it."""
    ahead = asyncio.ensure_future(preparer.next())
    try:
        while (prepared := await ahead) is not None:
            ahead = asyncio.ensure_future(preparer.next())

            def apply(tx: Tx, chunk: PreparedChunk = prepared) -> JobRow:
                return _apply_prepared(runner, tx, job.id, options, chunk)

            await _write_chunk(runner, path, apply)
    finally:
        ahead.cancel()  # leaving early: the worker is stopped by the caller
        ahead.add_done_callback(_retrieve)


async def _write_chunk(runner: JobRunner, path: Path, apply: Callable[[Tx], JobRow]) -> JobRow:
    """Apply one chunk (one transaction: ``apply``, see :func:`_apply_chunk`); _Stop when
    the job must not go on."""
    job = await runner.store.run(apply, retries=3)
    runner.events.notify()
    if job.state != "running":
        if job.state in TERMINAL_STATES:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(path.unlink, missing_ok=True)
        raise _Stop
    if runner.after_chunk is not None:
        await runner.after_chunk(job)
    return job


def _apply_chunk(
    runner: JobRunner,
    tx: Tx,
    job_id: str,
    options: ImportOptions,
    chunk: list[SourceRow],
    converted: list[dict[str, Any] | RowError],
) -> JobRow:
    """ONE transaction: the chunk's records, its failures, the job's counters."""
    job = runner._own(tx, job_id)
    if job.cancel_requested:
        return _cancel(tx, job)
    assert job.collection is not None
    failures: list[JobFailureRow] = []
    good: list[tuple[SourceRow, dict[str, Any]]] = []
    for row, outcome in zip(chunk, converted, strict=True):
        if isinstance(outcome, RowError):
            failures.append(_failure(job_id, row, options, outcome.code, outcome.message))
        else:
            good.append((row, outcome))
    if not options.dry_run and good:  # (a dry run's rows were all checked by _convert_chunk)
        if options.upsert_key is None:
            _create(tx, job, good, options, failures)
        else:
            _upsert(tx, job, good, options, failures)
    failures.sort(key=lambda f: f.row_number)
    return _advance(tx, job, len(chunk), chunk[-1].number, failures)


def _apply_prepared(
    runner: JobRunner, tx: Tx, job_id: str, options: ImportOptions, chunk: PreparedChunk
) -> JobRow:
    """:func:`_apply_chunk` for a chunk prepared in the worker process (plain creates)."""
    job = runner._own(tx, job_id)
    if job.cancel_requested:
        return _cancel(tx, job)
    assert job.collection is not None
    records = chunk.records()
    if records is not None:
        service.create_prepared(
            tx, job.tenant, service.PreparedCreates.encoded(job.collection, records)
        )
    failures = [JobFailureRow(job_id, *failure) for failure in chunk.failures]
    return _advance(tx, job, chunk.count, chunk.last_number, failures)


def _cancel(tx: Tx, job: JobRow) -> JobRow:
    job.state = "cancelled"
    job.finished_at = _ids.now_iso()
    job.worker = None
    job.revision += 1
    tx.save_job(job)
    enqueue_job_event(tx, job)
    return job


def _advance(
    tx: Tx, job: JobRow, count: int, last_number: int, failures: list[JobFailureRow]
) -> JobRow:
    """The chunk's failures and the job's counters and checkpoint, in the chunk's
    transaction."""
    tx.insert_job_failures(failures)
    job.processed += count
    job.failed += len(failures)
    job.succeeded += count - len(failures)
    job.checkpoint = last_number
    job.revision += 1
    job.heartbeat_at = time.time()
    tx.save_job(job)
    return job


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


_RUNNERS: dict[str, Callable[[JobRunner, JobRow], Awaitable[None]]] = {
    "import": _run_import,
    "bulk_update": run_bulk_job,
    "bulk_delete": run_bulk_job,
    "batch": run_batch_job,
}
