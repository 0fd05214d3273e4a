"""Retention: the periodic cleanup inside the processes that run jobs.

Every ``Settings.cleanup_interval_s`` (with jitter, so that processes started together do
not sweep together) one pass deletes:

- jobs that ended more than ``job_retention_s`` ago (by the database's clock) and have no
  webhook delivery pending, with what hangs on them: failures, stored bodies (inputs and
  results), their own ``notification_webhook``, deliveries and delivery attempts;
- ``Idempotency-Key`` rows (and their progress) last used more than
  ``idempotency_retention_s`` ago;
- job inputs no job will read (:meth:`batchops.server.jobs.inputs.JobInputs.purge`: chunk
  rows or files of uploads whose request died, local copies of processes that are gone),
  when the cleanup is given the process's inputs.

A retention of 0 keeps those rows forever. Each step is one transaction deleting at most
:attr:`Cleanup.BATCH_ROWS` rows (the store's ``purge_*`` methods: dependents first, so a
step cut short leaves nothing orphaned), so the cleanup never holds many row locks, or
SQLite's write lock, for long; a pass repeats steps until one deletes nothing. Each step
also takes a named lock without waiting (:meth:`batchops.store.base.TxBase.try_lock`): when
another process is cleaning already, this one leaves the pass to it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from batchops.server import _ids
from batchops.server.jobs.inputs import JobInputs
from batchops.server.settings import Settings
from batchops.store.base import Store, Tx

__all__ = ["Cleanup", "CleanupCounts"]

log = logging.getLogger("batchops.jobs")


@dataclass(frozen=True, slots=True)
class CleanupCounts:
    """Rows one pass deleted (``None``: another process was cleaning; this pass left it)."""

    jobs: int | None
    idempotency_keys: int | None
    inputs: int = 0


class Cleanup:
    """Deletes what outlived its retention (see the module docstring)."""

    #: At most this many rows per transaction.
    BATCH_ROWS = 5000
    #: The named lock a cleaning transaction holds (one process cleans at a time).
    LOCK = "batchops:cleanup"

    def __init__(self, store: Store, settings: Settings, inputs: JobInputs | None = None) -> None:
        self.store = store
        self.settings = settings
        self.inputs = inputs

    async def run_forever(self) -> None:
        """A pass every ``cleanup_interval_s`` (jittered ±25%); a failed pass is logged and
        the next one tries again."""
        interval = self.settings.cleanup_interval_s
        while True:
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))
            try:
                counts = await self.run_once()
            except Exception:
                log.exception("the periodic cleanup failed")
                continue
            if counts.jobs or counts.idempotency_keys or counts.inputs:
                log.info(
                    "cleanup: %s job rows, %s idempotency rows, %s job inputs deleted",
                    counts.jobs,
                    counts.idempotency_keys,
                    counts.inputs,
                )

    async def run_once(self) -> CleanupCounts:
        """One pass: every kind of row, each until nothing of it is left to delete."""
        jobs: int | None = 0
        idempotency: int | None = 0
        if self.settings.job_retention_s > 0:
            jobs = await self._drain(self._jobs_step)
        if self.settings.idempotency_retention_s > 0:
            idempotency = await self._drain(self._idempotency_step)
        # Abandoned inputs: idempotent and bounded by itself, safe beside another
        # process's pass (see JobInputs.purge), so it takes no lock.
        inputs = await self.inputs.purge() if self.inputs is not None else 0
        return CleanupCounts(jobs, idempotency, inputs)

    async def _drain(self, step: Callable[[Tx], int | None]) -> int | None:
        total = 0
        while True:
            deleted = await self.store.run(step, retries=3)
            if deleted is None:
                return None if total == 0 else total
            total += deleted
            if deleted == 0:
                return total
            await asyncio.sleep(0)  # let the process's requests in between the steps

    def _jobs_step(self, tx: Tx) -> int | None:
        if not tx.try_lock(self.LOCK):
            return None
        before = _ids.iso_at(tx.database_now() - self.settings.job_retention_s)
        return tx.purge_jobs(finished_before=before, limit=self.BATCH_ROWS)

    def _idempotency_step(self, tx: Tx) -> int | None:
        if not tx.try_lock(self.LOCK):
            return None
        before = tx.database_now() - self.settings.idempotency_retention_s
        return tx.purge_idempotency_keys(before=before, limit=self.BATCH_ROWS)
