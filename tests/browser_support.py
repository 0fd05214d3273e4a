"""What the browser tests share: Debian's Chromium through Playwright (and, re-exported,
the real app under uvicorn in a thread: tests.client.conftest.serving_in_thread).

Chromium is Debian's (``apt-get install -y chromium``; Playwright's own browser download is
not reachable here), started with the flags this machine's closed network needs. Missing,
the browser tests skip on a developer's machine and fail in CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.client.conftest import serving_in_thread

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium", "serving_in_thread"]

CHROMIUM = os.environ.get("BATCHOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless (skipped without it, except in CI where it fails)."""
    if shutil.which(CHROMIUM) is None:
        message = f"Chromium is not at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # expect()'s own wait is 5 s: a job's state change reaches the page through the runner's
    # next chunk and the event stream, slower on a loaded 2-core CI machine.
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
