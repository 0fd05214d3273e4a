"""The jobs console in a real browser: Debian's Chromium driven by Playwright, against the
real app under uvicorn on SQLite.

One server and one browser for the module (Chromium starts in ~1 s; a server per test
would cost more than the tests). The tests run in file order and share the server's
state, each with a browser context (cookies) of its own.

The live bar is tested without timing luck: the server runs ONE job at a time
(``job_concurrency=1``), a long import (one row per chunk) holds it, so the small import
uploaded next waits queued with its page open on the event stream; cancelling the long one
from its page lets the small one run, and its bar reaches 100% through the events.

Chromium is Debian's (``apt-get install -y chromium``; Playwright's own browser download is
not reachable here). Missing, these tests skip on a developer's machine and fail in CI.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.store import open_store
from tests.browser_support import chromium, serving_in_thread
from tests.conftest import make_sqlite_url
from tests.server.conftest import settings_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SMALL_CSV = b"name,age\nAda,36\nBob,not-a-number\nCy,41\n"
MAPPING = '{"name": {"field": "name"}, "age": {"field": "age", "type": "int"}}'
LONG_ROWS = 50_000  # one row per chunk: minutes of work, cancelled within seconds


@dataclass
class Live:
    """The running console: its URL and two tenants' keys."""

    url: str
    key: str
    other_key: str
    tmp: Path


async def _keys(db_url: str) -> tuple[str, str]:
    store = await open_store(db_url)
    try:
        mine, _ = await store.run(lambda tx: create_api_key(tx, f"t_{uuid.uuid4().hex[:8]}"))
        theirs, _ = await store.run(lambda tx: create_api_key(tx, f"t_{uuid.uuid4().hex[:8]}"))
        return mine, theirs
    finally:
        await store.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The real app under uvicorn on a SQLite file, running one job at a time."""
    tmp = tmp_path_factory.mktemp("console")
    db_url = make_sqlite_url(tmp / "console.db")
    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        key, other_key = pool.submit(asyncio.run, _keys(db_url)).result()
    settings = settings_for(
        db_url,
        job_concurrency=1,
        job_poll_s=0.05,
        data_dir=str(tmp / "uploads"),
        rate_limit_requests_per_minute=0,
        rate_limit_operations_per_minute=0,
    )
    with serving_in_thread(create_app(settings)) as url:
        yield Live(url, key, other_key, tmp)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (skipped without it, except in CI)."""
    with chromium() as launched:
        yield launched


def signed_in(browser: Browser, live: Live, key: str) -> Page:
    """A page of a fresh browser context, signed in with ``key``."""
    context = browser.new_context(base_url=live.url, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/jobs$"))
    return page


def start_import(page: Page, path: Path, *, chunk_size: str = "", lenient: bool = False) -> str:
    """Upload ``path`` from the console's form; the new job's id (its page is open)."""
    page.get_by_role("link", name="New import").click()
    form = page.locator("form[action='/console/imports']")
    form.locator("[name=collection]").fill("people")
    form.locator("[name=file]").set_input_files(str(path))
    if lenient:
        form.locator("[name=validation]").select_option("lenient")
    form.locator("[name=mapping]").fill(MAPPING)
    form.locator("[name=chunk_size]").fill(chunk_size)
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"/console/jobs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def test_a_signed_in_user_imports_watches_the_bar_cancels_downloads_and_retries_failures(
    browser: Browser, live: Live
) -> None:
    page = signed_in(browser, live, live.key)
    assert live.key not in page.content()
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("batchops_console", True, "Strict")
    ]
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session

    long_csv = live.tmp / "long.csv"
    long_csv.write_text("name,age\n" + "".join(f"p{i},{i}\n" for i in range(LONG_ROWS)))
    long_id = start_import(page, long_csv, chunk_size="1")
    expect(page.locator(".summary [data-field=state]")).to_have_text("running")

    small_csv = live.tmp / "small.csv"
    small_csv.write_bytes(SMALL_CSV)
    watcher = page.context.new_page()
    watcher.goto("/console/jobs")
    small_id = start_import(watcher, small_csv, lenient=True)
    # The runner is busy with the long import: this one waits, its page on the events.
    expect(watcher.locator(".summary [data-field=state]")).to_have_text("queued")

    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator(".summary [data-field=state]")).to_have_text("cancelled")
    assert page.url.endswith(f"/console/jobs/{long_id}")

    # The small import runs now; its bar follows the events to 100%.
    bar = watcher.locator(".summary progress")
    expect(bar).to_have_js_property("value", 100)
    expect(watcher.locator(".summary [data-field=state]")).to_have_text("succeeded")
    expect(watcher.locator(".summary [data-field=failed]")).to_have_text("1")
    expect(watcher.locator("table.failures")).to_contain_text("not-a-number")

    with watcher.expect_download() as info:
        watcher.get_by_role("link", name="Download all as CSV").click()
    download = info.value
    assert download.suggested_filename == f"failures-{small_id}.csv"
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0] == "row,code,message,input"
    assert len(lines) == 2
    assert "Bob,not-a-number" in lines[1]

    # Retry the failed row: a new import of just that row, which fails again the same way.
    watcher.get_by_role("button", name="Retry failed rows").click()
    expect(watcher.locator(".summary dd a")).to_have_text(small_id)  # "Retry of"
    expect(watcher.locator(".summary [data-field=state]")).to_have_text("succeeded")
    expect(watcher.locator(".summary [data-field=failed]")).to_have_text("1")
    assert not watcher.url.endswith(small_id)

    watcher.goto("/console/jobs")
    rows = watcher.locator("tr[data-job-row]")
    expect(rows).to_have_count(3)
    expect(watcher.locator(f'tr[data-job-row="{long_id}"] [data-field=state]')).to_have_text(
        "cancelled"
    )
    watcher.get_by_role("link", name="Collections").click()
    expect(watcher.locator("table.collections")).to_contain_text("people")
    page.context.close()


def test_another_tenant_never_sees_these_jobs(browser: Browser, live: Live) -> None:
    mine = signed_in(browser, live, live.key)
    ids = mine.locator("tr[data-job-row]").evaluate_all("rows => rows.map(r => r.dataset.jobRow)")
    assert ids  # the first test's jobs
    mine.context.close()

    theirs = signed_in(browser, live, live.other_key)
    expect(theirs.get_by_text("No jobs")).to_be_visible()
    for job_id in ids:
        assert job_id not in theirs.content()
        answer = theirs.goto(f"/console/jobs/{job_id}")
        assert answer is not None
        assert answer.status == 404
        expect(theirs.locator("main")).to_contain_text("JOB_NOT_FOUND")
    theirs.context.close()


def test_signing_out_ends_the_session(browser: Browser, live: Live) -> None:
    page = signed_in(browser, live, live.key)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    assert page.context.cookies() == []
    page.goto("/console/jobs")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.context.close()
