"""Fixtures for bulk tests: the job suite's (both backends, fast job polls, uploads in the
test's temporary directory; see tests/jobs/conftest.py)."""

from __future__ import annotations

from tests.jobs.conftest import db_url, service, settings

__all__ = ["db_url", "service", "settings"]
