"""GraphiQL at GET /graphql in a real browser (Debian's Chromium through Playwright),
against the real app under uvicorn: the vendored page starts under its CSP with nothing
from the internet, runs a query with the key typed into its headers editor, and leaves no
key in the browser's storage."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.store import open_store
from tests.browser_support import chromium, serving_in_thread
from tests.conftest import make_sqlite_url
from tests.server.conftest import settings_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@dataclass
class Live:
    """The running app: its URL, a key, and a record of the key's tenant."""

    url: str
    key: str
    record_id: str


async def _new_key(db_url: str) -> str:
    store = await open_store(db_url)
    try:
        key, _ = await store.run(lambda tx: create_api_key(tx, f"t_{uuid.uuid4().hex[:8]}"))
        return key
    finally:
        await store.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("graphiql")
    db_url = make_sqlite_url(tmp / "graphiql.db")
    with ThreadPoolExecutor(1) as pool:
        key = pool.submit(asyncio.run, _new_key(db_url)).result()
    with serving_in_thread(create_app(settings_for(db_url))) as url:
        created = httpx.post(
            f"{url}/v1/collections/people/records",
            json={"data": {"name": "Ada"}},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201, created.text
        yield Live(url, key, created.json()["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _set_editor(page: Page, selector: str, text: str) -> None:
    """Put ``text`` in the CodeMirror editor under ``selector``, as a paste would."""
    page.locator(f"{selector} .CodeMirror").wait_for()
    page.evaluate(
        "([selector, text]) => document.querySelector(selector + ' .CodeMirror')"
        ".CodeMirror.setValue(text)",
        [selector, text],
    )


def test_graphiql_runs_a_query_with_the_typed_key_and_loads_nothing_from_elsewhere(
    browser: Browser, live: Live
) -> None:
    context = browser.new_context(base_url=live.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    blocked: list[Request] = []
    page.on("requestfailed", lambda request: blocked.append(request))

    page.goto("/graphql")
    expect(page.locator(".graphiql-container")).to_be_visible()

    page.get_by_role("button", name="Headers").click()
    _set_editor(
        page,
        "section[aria-label=Headers] .graphiql-editor:not(.hidden)",
        json.dumps({"Authorization": f"Bearer {live.key}"}),
    )
    _set_editor(
        page,
        ".graphiql-query-editor",
        f'{{ ada: record(collection: "people", id: "{live.record_id}") {{ id data }} }}',
    )
    page.locator(".graphiql-execute-button").click()

    response = page.locator(".graphiql-response .CodeMirror")
    expect(response).to_contain_text('"Ada"')
    answer = json.loads(
        page.evaluate(
            "document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"
        )
    )
    assert answer == {"data": {"ada": {"id": live.record_id, "data": {"name": "Ada"}}}}

    # Every script, style and call went to batchops itself.
    assert requested
    assert all(url.startswith(live.url) for url in requested), requested
    assert blocked == []
    # The key is in no storage the page leaves behind (GraphiQL's history keeps headers:
    # the page's storage wrapper blanks them).
    stored = page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert live.key not in stored
    assert "graphiql:" in stored  # GraphiQL did persist its state: the check looked at it
    context.close()
