"""``batchops import`` and ``batchops jobs …``: the CLI side of bulk jobs (lazy-imported)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from batchops._exceptions import APIError, BatchopsError
from batchops.client._async_client import AsyncClient

__all__ = ["run_import", "run_jobs"]


def _summary(job: dict[str, Any]) -> str:
    line = (
        f"job {job['id']}: {job['state']} — {job['processed']}/{job['total']} rows processed, "
        f"{job['succeeded']} succeeded, {job['failed']} failed"
    )
    if job.get("error"):
        line += f"\n{job['error'].get('code')}: {job['error'].get('message')}"
    return line


async def _follow(client: AsyncClient, job_id: str, url: str) -> dict[str, Any]:
    job = await client.jobs.get(job_id)
    if sys.stdout.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("[bold]{task.fields[state]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task("import", total=job["total"], state=job["state"])
            async for event in client.jobs.events(job_id):
                job = event["data"]
                bar.update(task, completed=job["processed"], total=job["total"], state=job["state"])
    else:
        async for event in client.jobs.events(job_id):
            job = event["data"]
            print(f"{event['event']}: {job['state']} {job['processed']}/{job['total']}", flush=True)
    return job


def run_import(file: str, *, url: str, key: str, **options: Any) -> int:
    """Upload, follow the events, print the summary; exit status 0 only if every row
    succeeded. A refused upload (a bad option, a webhook the server will not call…) or a
    lost server is one line on stderr and exit status 1, not a traceback."""

    async def go() -> int:
        async with AsyncClient(url, key) as client:
            try:
                job = await client.jobs.create_import(file, **options)
            except BatchopsError as exc:
                code = f" {exc.code}" if isinstance(exc, APIError) else ""
                print(f"batchops import: {type(exc).__name__}{code}: {exc}", file=sys.stderr)
                return 1
            print(f"uploaded {Path(file).name}: job {job['id']}", flush=True)
            job = await _follow(client, job["id"], url)
            print(_summary(job))
            if job["failed"]:
                print(
                    "failed rows: batchops jobs failures "
                    f"{job['id']} --url {url} --key $BATCHOPS_KEY > failures.ndjson"
                )
            return 0 if job["state"] == "succeeded" and not job["failed"] else 1

    return asyncio.run(go())


def _line(job: dict[str, Any]) -> str:
    """A job as ``jobs list`` prints it: id, type, state, percentage, tab-separated."""
    return f"{job['id']}\t{job['type']}\t{job['state']}\t{job['percentage']}%"


def run_jobs(action: str, job_id: str | None, *, url: str, key: str, **options: Any) -> int:
    """``list``, ``show``, ``watch``, ``cancel``, ``results``, ``failures`` or
    ``retry-failures``."""

    async def go() -> int:
        async with AsyncClient(url, key) as client:
            if action == "list":  # every job: the pages followed as they come
                async for job in client.jobs.iter(**options):
                    print(_line(job), flush=True)
                return 0
            assert job_id is not None
            if action == "show":
                print(json.dumps(await client.jobs.get(job_id), indent=2))
            elif action == "watch":
                print(_summary(await _follow(client, job_id, url)))
            elif action == "cancel":
                print(_summary(await client.jobs.cancel(job_id)))
            elif action == "results":
                print(json.dumps(await client.jobs.results(job_id), indent=2))
            elif action == "retry-failures":
                print(_line(await client.jobs.retry_failures(job_id)))
            else:  # the server's download as it is (NDJSON or CSV)
                sys.stdout.buffer.write(await client.jobs.failures_file(job_id, **options))
            return 0

    return asyncio.run(go())
