"""Fixtures for job tests: the server suite's app-in-process fixtures on both backends,
plus helpers to upload a file and wait for its job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchops.server.settings import Settings
from batchops.store.base import Tx
from tests.server.conftest import Service, db_url, service, settings_for

__all__ = ["Service", "db_url", "service", "settings_for"]


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Service settings; ``@pytest.mark.limits(**overrides)`` changes them for a test.
    Jobs poll fast so tests do not wait on the runner's idle loop; uploads go to the
    test's temporary directory."""
    marker = request.node.get_closest_marker("limits")
    overrides: dict[str, object] = {"job_poll_s": 0.05, "data_dir": str(tmp_path / "uploads")}
    if marker is not None:
        overrides.update(marker.kwargs)
    return settings_for(db_url, **overrides)


async def upload(
    client: httpx.AsyncClient,
    body: bytes,
    *,
    content_type: str = "text/csv",
    **params: Any,
) -> httpx.Response:
    """POST /v1/imports with ``body`` as the file."""
    query = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    return await client.post(
        "/v1/imports", content=body, params=query, headers={"Content-Type": content_type}
    )


async def wait_done(
    client: httpx.AsyncClient, job_id: str, timeout_s: float = 30
) -> dict[str, Any]:
    """Poll the job until it is no longer queued or running; its final body."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["state"] not in ("queued", "running"):
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job still {job['state']}: {job}"
        await asyncio.sleep(0.02)


async def stored_upload(service: Service, job_id: str) -> bytes | None:
    """A job's upload as stored, wherever it is (its file in the uploads directory, or its
    chunk rows); None if there is none."""
    inputs = service.app.state.services.inputs
    path: Path = inputs.directory / job_id
    if await asyncio.to_thread(path.is_file):
        return await asyncio.to_thread(path.read_bytes)
    chunks: list[bytes] = []
    while True:
        seq = len(chunks)
        chunk = await service.store.run(
            lambda tx, s=seq: tx.upload_chunk(job_id, s)  # type: ignore[misc]
        )
        if chunk is None:
            return b"".join(chunks) if chunks else None
        chunks.append(chunk)


async def uploads_left(service: Service) -> list[str]:
    """What uploads left behind that no job owns: the uploads directory's files (``<id>``
    whose job does not exist, ``<id>.part``) and the job ids of chunk rows without a job.
    (Files and rows of existing jobs are theirs; this process's local copies are not
    counted.)"""
    directory: Path = service.app.state.services.inputs.directory

    def files() -> list[str]:
        return (
            sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
        )

    names = await asyncio.to_thread(files)

    def orphans(tx: Tx) -> list[str]:
        jobless = [n for n in names if tx.get_job(n) is None]
        rows = tx._run(  # type: ignore[attr-defined]
            "SELECT DISTINCT job_id FROM job_uploads u "
            "WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = u.job_id)"
        ).fetchall()
        return sorted(jobless + [f"rows:{row[0]}" for row in rows])

    found: list[str] = await service.store.run(orphans)
    return found


async def records(client: httpx.AsyncClient, collection: str) -> list[dict[str, Any]]:
    """Every live record of a collection, through the REST API."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/collections/{collection}/records", params=params)).json()
        out.extend(page["records"])
        cursor = page["next_cursor"]
        if not cursor:
            return out


BAD_LIMITS: tuple[str, ...] = (
    "0",
    "-1",
    "1001",
    "ten",
    "2.5",
    "1e3",
    "",
    " 5",
    "+5",
    str(2**70),
    "9" * 40,
)
"""``?limit=`` texts no list takes: out of 1-1000, not an integer in digits, past 64 bits."""


async def limit_error(client: httpx.AsyncClient, path: str, limit: str) -> tuple[int, Any]:
    """The status and error of ``GET path?limit=<limit>``."""
    response = await client.get(path, params={"limit": limit})
    return response.status_code, response.json().get("error")
