"""A stand-in for :func:`batchops.server.imports.retry.retry_failures`, being written on
another branch: removed when that branch is merged (the console then calls it)."""

from __future__ import annotations

from batchops.server.deps import Services
from batchops.store.base import JobRow

__all__ = ["retry_failures"]


async def retry_failures(svc: Services, tenant: str, job_id: str) -> JobRow:
    """Not written yet: see the module docstring."""
    raise NotImplementedError("retry_failures: merge the jobsapi branch")
