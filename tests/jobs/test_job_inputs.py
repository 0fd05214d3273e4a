"""An import's upload is readable by every process of the database: two apps in this
process with different data directories (no shared disk), one that only takes uploads
(``run_jobs`` False) and one that only runs jobs.

PostgreSQL: a database of this module's own (a runner claims any queued job of its
database, whoever queued it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.settings import Settings
from batchops.store.base import Store
from tests.conftest import make_sqlite_url
from tests.jobs.conftest import records, upload, wait_done


def _csv(rows: int) -> bytes:
    return ("k,n\n" + "".join(f"key{i},{i}\n" for i in range(rows))).encode()


class Node:
    """One app (a "server process") and a client of the shared tenant."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, data_dir: Path) -> None:
        self.app = app
        self.client = client
        self.data_dir = data_dir

    @property
    def store(self) -> Store:
        store: Store = self.app.state.services.store
        return store


@asynccontextmanager
async def _node(settings: Settings, key: str | None, make_key: bool) -> AsyncIterator[Node]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        store: Store = app.state.services.store
        if make_key:
            key, _ = await store.run(lambda tx: create_api_key(tx, f"t_{uuid.uuid4().hex[:10]}"))
        assert key is not None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            yield Node(app, client, Path(settings.data_dir or ""))


Nodes = Callable[..., Any]


@pytest.fixture(params=["postgresql"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The one database both nodes use."""
    if request.param == "sqlite":
        return make_sqlite_url(tmp_path / "shared.db")
    url: str = request.getfixturevalue("own_pg_url")
    return url


@pytest.fixture
async def nodes(shared_db: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """``(front, worker)``: the front takes uploads and runs no job; the worker runs jobs.
    Each has a data directory of its own."""
    async with AsyncExitStack() as stack:
        front_settings = Settings(
            db_url=shared_db,
            print_first_key=False,
            run_jobs=False,
            data_dir=str(tmp_path / "front"),
        )
        front = await stack.enter_async_context(_node(front_settings, None, make_key=True))
        key = front.client.headers["Authorization"].split()[1]
        worker_settings = Settings(
            db_url=shared_db,
            print_first_key=False,
            job_poll_s=0.05,
            data_dir=str(tmp_path / "worker"),
        )
        worker = await stack.enter_async_context(_node(worker_settings, key, make_key=False))
        yield front, worker


async def test_an_upload_to_one_process_is_imported_exactly_by_another_with_no_shared_disk(
    nodes: tuple[Node, Node],
) -> None:
    front, worker = nodes
    rows = 3_000
    response = await upload(front.client, _csv(rows), collection="shared", chunk_size=500)
    assert response.status_code == 202, response.text
    job = await wait_done(worker.client, response.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert (job["total"], job["processed"], job["succeeded"], job["failed"]) == (
        rows,
        rows,
        rows,
        0,
    )
    keys = sorted(r["data"]["k"] for r in await records(front.client, "shared"))
    assert keys == sorted(f"key{i}" for i in range(rows))
