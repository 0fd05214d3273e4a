"""Take the screenshots of docs/console.md: ``docs/console-*.png``, from a seeded server.

    python tools/console_screenshots.py [--out docs] [--chromium /usr/bin/chromium]

Starts the app under uvicorn on a SQLite file in a temporary directory, running one job
at a time; seeds a tenant with a finished import that has failed rows, a cancelled job,
records in two collections and a long import that is running; then signs in with
Debian's Chromium (through Playwright) and saves the sign-in page, the jobs list, a job's
page, the upload form and the collections page.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import Page, sync_playwright

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.settings import Settings
from batchops.store import open_store, sqlite_url

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAPPING = '{"name": {"field": "name"}, "age": {"field": "age", "type": "int"}}'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _key(db_url: str) -> str:
    store = await open_store(db_url)
    try:
        key, _ = await store.run(lambda tx: create_api_key(tx, "acme"))
        return key
    finally:
        await store.close()


@contextmanager
def _server(tmp: Path) -> Iterator[tuple[str, str]]:
    """(the server's URL, a key of tenant ``acme``)."""
    db_url = sqlite_url(tmp / "console.db")
    key = asyncio.run(_key(db_url))
    settings = Settings(
        db_url=db_url,
        print_first_key=False,
        job_concurrency=1,
        job_poll_s=0.05,
        data_dir=str(tmp / "uploads"),
    )
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _wait(client: httpx.Client, job_id: str, states: tuple[str, ...], *, rows: int = 0) -> None:
    """Until the job is in one of ``states`` with at least ``rows`` processed."""
    for _ in range(1200):
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states and job["processed"] >= rows:
            return
        time.sleep(0.05)
    raise SystemExit(f"job {job_id} never reached {states} with {rows} rows")


def _import(client: httpx.Client, body: bytes, **params: str) -> str:
    answer = client.post(
        "/v1/imports",
        content=body,
        params={"mapping": MAPPING, **params},
        headers={"Content-Type": "text/csv"},
    )
    answer.raise_for_status()
    job_id: str = answer.json()["id"]
    return job_id


def _seed(url: str, key: str) -> tuple[str, str]:
    """(the finished import with failures, the running import)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        rows = "".join(
            f"person{i},{'n/a' if i % 97 == 13 else 20 + i % 60}\n" for i in range(1, 1201)
        )
        done = _import(
            client,
            ("name,age\n" + rows).encode(),
            collection="people",
            validation="lenient",
            chunk_size="200",
        )
        _wait(client, done, ("succeeded", "failed"))
        for team in ("core", "docs", "infra"):
            client.post("/v1/collections/teams/records", json={"data": {"name": team}})
        cancelled = _import(client, b"name,age\nA,1\n", collection="people")
        client.post(f"/v1/jobs/{cancelled}/cancel")
        long_rows = "".join(f"p{i},{i % 90}\n" for i in range(200_000))
        running = _import(
            client, ("name,age\n" + long_rows).encode(), collection="people", chunk_size="2"
        )
        _wait(client, running, ("running",), rows=2000)  # its bar has moved, its rate settled
        return done, running


def _shot(page: Page, out: Path, name: str) -> None:
    path = out / f"console-{name}.png"
    page.screenshot(path=str(path))
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    out: Path = args.out
    with tempfile.TemporaryDirectory() as tmp, _server(Path(tmp)) as (url, key):
        done, running = _seed(url, key)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 720})
            page.goto("/console/login")
            _shot(page, out, "login")
            page.locator("[name=key]").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/console/jobs")
            page.wait_for_timeout(1500)  # a few events on the running job's bar
            _shot(page, out, "jobs")
            page.goto(f"/console/jobs/{done}")
            _shot(page, out, "job")
            page.goto("/console/imports/new")
            _shot(page, out, "upload")
            page.goto("/console/collections")
            _shot(page, out, "collections")
            page.goto(f"/console/jobs/{running}")
            page.get_by_role("button", name="Cancel job").click()  # leave nothing running
            browser.close()


if __name__ == "__main__":
    main()
