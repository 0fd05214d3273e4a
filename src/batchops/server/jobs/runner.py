"""The job scheduler inside ``batchops serve``: claims jobs and hands each to its kind.

It knows no job kind. Each kind's package registers a :class:`JobKind` (its handler, and
optionally how to answer its results) in the :class:`JobKinds` registry that the app
builds at start and gives to the runner and to the ``/v1/jobs`` routes; a handler gets a
:class:`JobContext`, the public face of the guarantees below. So the scheduler imports no
kind, and no kind imports the scheduler's internals.

Durability rule: each chunk is ONE ``store.run(fn)`` whose ``fn`` writes the chunk's
changes, inserts the chunk's failures and advances the job's counters and checkpoint
(:meth:`JobContext.checkpoint`) — one transaction. A crash (kill -9) therefore leaves either
the whole chunk with its checkpoint or neither, and the resumed job goes on from the
checkpoint: nothing is lost or written twice.

Ownership: a job being run carries ``worker`` (this runner's id) and a heartbeat renewed
every ``lease_s / 3``. Runners claim queued jobs and running jobs whose heartbeat is older
than ``lease_s`` (their process died). Heartbeats and that cutoff are the database's clock,
never this process's (``time.time()`` appears nowhere in them): servers on machines whose
clocks disagree still agree on whose a job is. Every chunk transaction re-reads the job
and stops if another runner took it over (fencing, :meth:`JobContext.own`), so two runners
never both apply a chunk. A clean shutdown claims nothing more, lets each job end the chunk it
is writing (its next transaction finds the job no longer owned), and puts this runner's jobs
back in the queue at once, each with the checkpoint of its last chunk (:meth:`JobRunner.stop`).

Attempts: every claim counts one (a clean shutdown's hand-back takes its claim back). A job
claimed past ``Settings.job_max_attempts`` — its process died that often while running it
(out of memory, a poison input) — is not run again: the claim's own transaction ends it
failed ``ATTEMPTS_EXHAUSTED``, with what it had done, and runs the end hooks.

The end of a job: whatever transaction saves a job in a terminal state also calls
:meth:`JobKinds.ended`. That deletes the job's input stored in the database and runs the
registry's end hooks (the webhooks' outbox), so all of it commits with the state change.
:meth:`JobContext.update` (hence ``finish``) and :meth:`JobContext.cancel` call it, and so
does the cancel route for a job that never started.

A job's input file (an import's upload) is kept by :mod:`batchops.server.jobs.inputs`
(in the database or in the uploads directory). Any process reads it as a local file
(:meth:`JobContext.input_file`); a process's local copy is deleted when its run of the job
ends, and the input itself when the job ends.

The runner also runs the periodic cleanup (:class:`batchops.server.jobs.cleanup.Cleanup`):
jobs, idempotency keys and abandoned uploads past their retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import Response

from batchops._exceptions import StoreError, TransientStoreError
from batchops.engine import backoff_s
from batchops.server import _ids
from batchops.server.jobs.cleanup import Cleanup
from batchops.server.jobs.inputs import JobInputs, job_inputs
from batchops.server.jobs.schemas import TERMINAL_STATES
from batchops.server.observability import metrics, tracing
from batchops.server.observability.logs import PROGRESS_EVERY_S, job_event
from batchops.server.settings import Settings
from batchops.store.base import JobFailureRow, JobRow, Store, Tx

__all__ = [
    "EndHook",
    "JobContext",
    "JobEvents",
    "JobHandler",
    "JobKind",
    "JobKinds",
    "JobRunner",
    "JobStopped",
    "ResultsHandler",
    "queued",
]

log = logging.getLogger("batchops.jobs")


class JobEvents:
    """In-process change notification: the runner calls :meth:`notify` after every commit;
    event streams and the webhook sender :meth:`wait` instead of polling hard. (Changes
    made by other processes are seen at the next poll.)"""

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


class JobStopped(Exception):
    """The job must stop here: it ended (cancelled, failed) or is no longer this runner's.
    Raised by :meth:`JobContext.own` and :meth:`JobContext.commit`; the runner ends the
    job's task quietly when a handler lets it through."""


JobHandler = Callable[["JobContext"], Awaitable[None]]
"""Runs one job of a kind, from its checkpoint, until it ends (see :class:`JobContext`)."""
ResultsHandler = Callable[[Store, JobRow], Awaitable[Response | None]]
"""The results of a finished job of a kind (``GET /v1/jobs/{id}/results``); None: none."""
EndHook = Callable[[Tx, JobRow], None]
"""Runs inside the transaction that saves a job in a terminal state."""


@dataclass(frozen=True, slots=True)
class JobKind:
    """What the scheduler knows of one job type: how to run it and, if it has results,
    how to answer them."""

    run: JobHandler
    results: ResultsHandler | None = None


class JobKinds:
    """The registry the app builds at start: a :class:`JobKind` per job type, and the hooks
    every job's terminal transaction runs (the webhooks' outbox)."""

    def __init__(self, kinds: Mapping[str, JobKind], *, on_end: Sequence[EndHook] = ()) -> None:
        self._kinds = dict(kinds)
        self._on_end = tuple(on_end)

    @property
    def types(self) -> frozenset[str]:
        """The job types registered."""
        return frozenset(self._kinds)

    def get(self, job_type: str) -> JobKind | None:
        """The kind of ``job_type``, or None when none is registered."""
        return self._kinds.get(job_type)

    def ended(self, tx: Tx, job: JobRow) -> None:
        """Delete the job's input stored in the database (an upload; one index probe when
        there is none) and run the end hooks. Call it in the transaction that saves ``job``
        in its terminal state (and only then): what they do is exactly as durable as the
        state."""
        tx.delete_upload(job.id)
        for hook in self._on_end:
            hook(tx, job)


class JobContext:
    """What a job kind's handler gets: the claimed job and the scheduler's guarantees.

    - :meth:`own` (fencing): in each of the job's transactions, the job locked, if this
      runner still owns it; else :class:`JobStopped`.
    - :meth:`checkpoint`: a chunk's failures, counters and checkpoint, saved in the chunk's
      transaction, with a fresh heartbeat (the runner also renews the lease of every job
      it runs every ``lease_s / 3``, however long a chunk takes).
    - :meth:`commit`: one chunk's transaction, then wake the job's watchers; stops the
      handler (:class:`JobStopped`) when the job ended in it.
    - :meth:`start`, :meth:`update`, :meth:`finish`, :meth:`fail`, :meth:`cancel`: the
      job's own changes, each running the end hooks when the job ends.
    """

    def __init__(self, runner: JobRunner, job: JobRow) -> None:
        self._runner = runner
        self.job = job
        """The job as claimed (its checkpoint says where to resume)."""
        self.id = job.id
        self.store: Store = runner.store
        self.settings: Settings = runner.settings
        # For the metrics and the progress lines: what the job had counted when it was
        # last seen committed, when this process claimed it, when progress was logged.
        self._counted = (job.succeeded, job.failed)
        self._claimed_at = runner.claimed_at.get(job.id, time.monotonic())
        self._logged_at = time.monotonic()

    def _committed(self, job: JobRow, *, chunk: bool = False) -> None:
        """After a transaction of the job committed: its rows' metrics, its end, and after
        a chunk a progress line now and then."""
        succeeded, failed = job.succeeded - self._counted[0], job.failed - self._counted[1]
        self._counted = (job.succeeded, job.failed)
        if succeeded > 0 or failed > 0:
            metrics.observe_job_rows(job.type, max(succeeded, 0), max(failed, 0))
        if job.state in TERMINAL_STATES:
            seconds = time.monotonic() - self._claimed_at
            metrics.observe_job_end(job.type, job.state, seconds)
            error = (job.error or {}).get("code")
            job_event(
                job.state,
                job.id,
                job.type,
                processed=job.processed,
                succeeded=job.succeeded,
                failed=job.failed,
                duration_s=round(seconds, 3),
                **({"error_code": error} if error else {}),
            )
        elif chunk and time.monotonic() - self._logged_at >= PROGRESS_EVERY_S:
            self._logged_at = time.monotonic()
            job_event(
                "progress",
                job.id,
                job.type,
                processed=job.processed,
                total=job.total,
                succeeded=job.succeeded,
                failed=job.failed,
            )

    async def input_file(self, *, size: int | None = None) -> Path | None:
        """The job's input (an import's upload) as a file on this machine, wherever it is
        stored; None if it is gone, or is not ``size`` bytes long. An input stored in the
        database is copied to a local file (streamed, one chunk at a time) the first time
        in a run; the copy is deleted when this process's run of the job ends."""
        return await self._runner.inputs.local_file(self.id, size=size)

    def notify(self) -> None:
        """Wake the job's watchers (event streams, the webhook sender) after a commit made
        outside :meth:`commit` and :meth:`update`."""
        self._runner.events.notify()

    def own(self, tx: Tx) -> JobRow:
        """The job, locked, if this runner still owns it; else :class:`JobStopped`. A
        runner that is stopping owns no job any more: each stops at its next transaction
        and is handed back (:meth:`JobRunner.stop`)."""
        if self._runner.handing_back:
            raise JobStopped
        job = tx.get_job(self.id, for_update=True)
        if job is None or job.state != "running" or job.worker != self._runner.worker:
            raise JobStopped
        return job

    async def update(self, change: Callable[[Tx, JobRow], None]) -> JobRow:
        """Apply ``change`` to the owned job and save it, in one transaction (the end hooks
        too when ``change`` ends the job); :class:`JobStopped` if it is not ours."""

        def fn(tx: Tx) -> JobRow:
            job = self.own(tx)
            change(tx, job)
            job.revision += 1
            tx.save_job(job, renew_lease=job.state == "running")
            if job.state in TERMINAL_STATES:
                self._runner.kinds.ended(tx, job)
            return job

        job = await self.store.run(fn, retries=3)
        self.notify()
        self._committed(job)
        if job.state in TERMINAL_STATES:
            await self._discard_input()
        return job

    async def start(self) -> JobRow:
        """Mark the job started (once: a resumed job keeps its first ``started_at``)."""
        if self.job.started_at is not None:
            job_event("started", self.id, self.job.type, attempt=self.job.attempts, resumed=True)
            return self.job

        def started(tx: Tx, job: JobRow) -> None:
            if job.started_at is None:
                job.started_at = _ids.now_iso()

        self.job = await self.update(started)
        job_event("started", self.id, self.job.type, attempt=self.job.attempts)
        return self.job

    async def finish(self, state: str, error: dict[str, Any] | None = None) -> JobRow | None:
        """End the job in ``state`` (``succeeded``, ``failed``, ``cancelled``) with
        ``error``; None if it was no longer ours."""

        def change(tx: Tx, job: JobRow) -> None:
            job.state = state  # type: ignore[assignment]
            job.finished_at = _ids.now_iso()
            job.error = error
            job.worker = None

        try:
            return await self.update(change)
        except JobStopped:
            return None

    async def fail(self, code: str, message: str, **details: Any) -> JobRow | None:
        """:meth:`finish` as ``failed`` with the error ``{code, message, **details}``."""
        return await self.finish("failed", {"code": code, "message": message, **details})

    def cancel(self, tx: Tx, job: JobRow) -> JobRow:
        """In a chunk's transaction, instead of the chunk: end the owned ``job`` as
        cancelled (its cancel was requested)."""
        job.state = "cancelled"
        job.finished_at = _ids.now_iso()
        job.worker = None
        job.revision += 1
        tx.save_job(job)
        self._runner.kinds.ended(tx, job)
        return job

    def checkpoint(
        self,
        tx: Tx,
        job: JobRow,
        position: int,
        *,
        processed: int,
        succeeded: int,
        failed: int,
        failures: Sequence[JobFailureRow] = (),
    ) -> JobRow:
        """In a chunk's transaction: store the chunk's ``failures``, add its counts to the
        job's counters, move the checkpoint to ``position`` and save the job."""
        if failures:
            tx.insert_job_failures(failures)
        job.processed += processed
        job.succeeded += succeeded
        job.failed += failed
        job.checkpoint = position
        job.revision += 1
        tx.save_job(job, renew_lease=True)
        return job

    async def commit(self, apply: Callable[[Tx], JobRow], *, retries: int = 3) -> JobRow:
        """Run one chunk's transaction (``apply``: :meth:`own`, the chunk, then
        :meth:`checkpoint` or :meth:`cancel`) and wake the job's watchers. Raises
        :class:`JobStopped` when the job is no longer running after it."""
        with tracing.span(
            "job chunk",
            {"batchops.job_id": self.id, "batchops.job_type": self.job.type}
            if tracing.enabled()
            else None,
        ):
            job = await self.store.run(apply, retries=retries)
        self.notify()
        self._committed(job, chunk=True)
        if job.state != "running":
            if job.state in TERMINAL_STATES:
                await self._discard_input()
            raise JobStopped
        hook = self._runner.after_chunk
        if hook is not None:
            await hook(job)
        return job

    async def _discard_input(self) -> None:
        await self._runner.inputs.discard(self.id)


def queued(runner: JobRunner | None, job: JobRow) -> None:
    """A route committed ``job`` (queued): say so in the log, and wake this process's
    runner (None: this process runs no jobs; another one's poll finds it)."""
    job_event("queued", job.id, job.type, total=job.total)
    if runner is not None:
        runner.wake()


class JobRunner:
    """Runs up to ``settings.job_concurrency`` jobs at once (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        kinds: JobKinds,
        inputs: JobInputs | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.kinds = kinds
        #: Jobs' input files (None: the settings' own, closed when the runner stops).
        self.inputs: JobInputs = inputs if inputs is not None else job_inputs(settings, store)
        self._owns_inputs = inputs is None
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.events = JobEvents()
        #: Test hook: awaited after every committed chunk with the job as committed.
        self.after_chunk: Callable[[JobRow], Awaitable[None]] | None = None
        self._wake = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming: asyncio.Task[None] | None = None
        self._stopping = False
        #: Set by :meth:`stop`: this runner's jobs stop at their next transaction.
        self.handing_back = False
        #: When this process claimed each job it runs (monotonic): a job's duration.
        self.claimed_at: dict[str, float] = {}

    async def start(self) -> None:
        """Start claiming jobs (called by the app's lifespan), and sweep the job inputs once
        (what a process that died left behind, this one's previous life included)."""
        self._claiming = asyncio.create_task(self._claim_loop(), name="batchops-jobs")
        self._tasks = [
            self._claiming,
            asyncio.create_task(self._heartbeat_loop(), name="batchops-jobs-heartbeat"),
            asyncio.create_task(self._sweep_inputs(), name="batchops-jobs-sweep"),
        ]
        if self.settings.cleanup_interval_s > 0:
            self._tasks.append(
                asyncio.create_task(
                    Cleanup(self.store, self.settings, self.inputs).run_forever(),
                    name="batchops-cleanup",
                )
            )

    async def _sweep_inputs(self) -> None:
        try:
            await self.inputs.purge()
        except Exception:
            log.warning("sweeping job inputs at start failed", exc_info=True)

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop, and hand this runner's jobs back to the queue (``queued``, with their
        checkpoint) so that another runner, or a restart, resumes them at once.

        Claims nothing more, then lets each running job end the chunk it is writing, for up
        to ``grace_s`` seconds: its next transaction finds the job no longer owned
        (:meth:`JobContext.own`), so it stops there, having lost nothing. The lease is still
        renewed meanwhile. What still runs after ``grace_s`` is cancelled (a chunk in
        flight then commits or rolls back whole in the database thread: the durability rule
        holds either way). Then the jobs are released."""
        self.handing_back = True
        claiming = self._claiming
        while claiming is not None and not claiming.done():
            # Again until it ends: on Python 3.11 the loop's idle asyncio.wait_for swallows
            # a cancel that lands as its wait ends (a job ending wakes it).
            claiming.cancel()
            await asyncio.wait({claiming}, timeout=0.1)
        running = set(self._active.values())
        if running and grace_s > 0:
            _, late = await asyncio.wait(running, timeout=grace_s)
            if late:
                log.warning(
                    "%d job(s) did not reach the end of a chunk within the %g s grace: "
                    "cancelled (each resumes from its last committed chunk)",
                    len(late),
                    grace_s,
                )
        self._stopping = True
        tasks = [*self._tasks, *self._active.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.store.run(lambda tx: tx.release_jobs(self.worker), retries=3)
        if self._owns_inputs:
            await self.inputs.close()

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            while len(self._active) < self.settings.job_concurrency:
                try:
                    job = await self.store.run(self._claim, retries=3)
                except Exception:
                    log.exception("claiming a job failed")
                    break
                if job is None:
                    break
                self.events.notify()
                if job.state != "running":  # its attempts were exhausted: it ended here
                    log.warning("job %s failed: %s", job.id, (job.error or {}).get("message"))
                    job_event("failed", job.id, job.type, error_code="ATTEMPTS_EXHAUSTED")
                    await self.inputs.discard(job.id)
                    continue
                # A claim past the first that no clean hand-back undid: the process that
                # ran it before stopped without ending it (its lease ran out).
                job_event(
                    "taken over" if job.attempts > 1 else "claimed",
                    job.id,
                    job.type,
                    attempt=job.attempts,
                    checkpoint=job.checkpoint,
                )
                self.claimed_at[job.id] = time.monotonic()
                task = asyncio.create_task(self._run(job), name=f"batchops-job-{job.id}")
                self._active[job.id] = task
                task.add_done_callback(self._on_done(job.id))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_s)

    def _claim(self, tx: Tx) -> JobRow | None:
        """Claim the next job; one claimed past its attempts ends failed instead, in this
        transaction (with its end hooks): it comes back in a terminal state."""
        job = tx.claim_job(self.worker, lease_s=self.settings.job_lease_s)
        limit = max(self.settings.job_max_attempts, 1)
        if job is None or job.attempts <= limit:
            return job
        job.attempts -= 1  # this claim runs nothing: the count is of the runs it had
        job.state = "failed"
        job.finished_at = _ids.now_iso()
        job.worker = None
        job.heartbeat_at = None
        # Its counters and checkpoint stay: what it did is committed, and is reported.
        job.error = {
            "code": "ATTEMPTS_EXHAUSTED",
            "message": (
                f"the job was started {job.attempts} times and its server stopped without "
                f"finishing it every time (killed, out of memory?); it is not started again "
                f"(job_max_attempts: {limit})"
            ),
            "attempts": job.attempts,
        }
        job.revision += 1
        tx.save_job(job)
        self.kinds.ended(tx, job)
        return job

    def _on_done(self, job_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._active.pop(job_id, None)
            self.claimed_at.pop(job_id, None)
            self._wake.set()

        return done

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.job_lease_s / 3)
            with contextlib.suppress(Exception):
                await self.store.run(lambda tx: tx.heartbeat_jobs(self.worker))

    # A job whose database stays busy past its units' own retries runs again from its
    # checkpoint, after a pause, up to this many times in all, before it fails STORE_BUSY.
    BUSY_RUNS = 5
    BUSY_PAUSE_S = 0.5  # before the 2nd run; doubling, at most 10 s

    async def _run(self, job: JobRow) -> None:
        try:
            await self._run_until_settled(job)
        finally:
            # This process is done with the job (ended, stopped, or taken over): its local
            # copy of the input goes; whoever runs the job next fetches its own.
            self.inputs.release(job.id)

    async def _run_until_settled(self, job: JobRow) -> None:
        for run in range(1, self.BUSY_RUNS + 1):
            busy = await self._run_once(job, last=run == self.BUSY_RUNS)
            if busy is None:
                break
            # Busy (lock timeouts, serialization failures, a lost connection): what the job
            # committed stays, and it resumes from its checkpoint — as a job taken over
            # after a crash does — rather than ending, and being uploaded again.
            log.warning("job %s: the database is busy (%s); run %d resumes", job.id, busy, run + 1)
            await asyncio.sleep(backoff_s(run, initial_s=self.BUSY_PAUSE_S, max_s=10.0, jitter=0.5))
            fresh = await self._still_ours(job.id)
            if fresh is None:
                break  # ended, or taken over, meanwhile: nothing of ours to resume
            job = fresh
        self.events.notify()

    async def _still_ours(self, job_id: str) -> JobRow | None:
        """The job as stored, if it is still running on this runner."""
        try:
            job = await self.store.run(lambda tx: tx.get_job(job_id), retries=3)
        except StoreError:
            return None
        if job is None or job.state != "running" or job.worker != self.worker:
            return None
        return job

    async def _run_once(self, job: JobRow, *, last: bool) -> TransientStoreError | None:
        """One run of the job's handler; the busy error if the job should run again."""
        context = JobContext(self, job)
        kind = self.kinds.get(job.type)
        try:
            if kind is None:
                await context.fail(
                    "UNKNOWN_JOB_TYPE",
                    f"this server runs no {job.type!r} jobs (known: "
                    f"{', '.join(sorted(self.kinds.types))})",
                )
                return None
            await kind.run(context)
        except (JobStopped, asyncio.CancelledError):
            return None
        except StoreError as exc:
            if isinstance(exc, TransientStoreError) and not last:
                return exc
            # Classified once by the store: the job says what the database refused, never
            # an INTERNAL_ERROR for what its input caused.
            log.warning("job %s failed: %s", job.id, exc)
            error = exc.to_api_error()
            await context.fail(error.code, error.message)
        except Exception as exc:
            log.exception("job %s failed", job.id)
            await context.fail("INTERNAL_ERROR", f"{type(exc).__name__}")
        return None
