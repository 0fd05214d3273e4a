"""The client commands' rough edges: one set of variables, one line and a documented exit
status for every expected error (``--debug`` for the traceback), progress that knows its
total, and an import summary that says how the rows ended. Real server, both backends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import batchops.client._batch
from batchops.cli import main
from batchops.client import AsyncClient
from batchops.engine._progress import ProgressReporter
from tests.client.conftest import Live, Tenant, free_port

# No server listens there: the connection is refused at once.
NOWHERE = f"http://127.0.0.1:{free_port()}"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI in this process (in a thread: it runs its own event loop)."""
    return CliRunner().invoke(main, list(args), env=env)


async def invoke_async(*args: str, env: dict[str, str] | None = None) -> Result:
    return await asyncio.to_thread(invoke, *args, env=env)


@pytest.mark.parametrize("command", ["batch", "import", "jobs"])
def test_every_client_command_shows_its_variables_in_help(command: str) -> None:
    result = invoke(command, "--help")
    assert "BATCHOPS_URL" in result.output
    assert "BATCHOPS_API_KEY" in result.output


@pytest.mark.parametrize("variable", ["BATCHOPS_API_KEY", "BATCHOPS_KEY"])
def test_the_key_comes_from_the_variable_serve_prints_or_the_older_name(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    import batchops.client._jobs_cli

    seen: list[dict[str, Any]] = []

    def run_jobs(action: str, job_id: str | None, **options: Any) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(batchops.client._jobs_cli, "run_jobs", run_jobs)
    env: dict[str, str | None] = {"BATCHOPS_URL": "http://h:1"}
    env |= {"BATCHOPS_API_KEY": None, "BATCHOPS_KEY": None, variable: "bo_secret"}
    result = CliRunner().invoke(main, ["jobs", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert (seen[0]["url"], seen[0]["key"]) == ("http://h:1", "bo_secret")


async def test_an_unknown_job_is_one_line_with_its_code_and_exit_3(
    live: Live, tenant_key: Tenant
) -> None:
    result = await invoke_async(
        "jobs", "show", "job_nope", "--url", live.url, "--key", tenant_key.key
    )
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "batchops jobs: error JOB_NOT_FOUND: no job 'job_nope' (HTTP 404)"
    ]


async def test_cancelling_a_finished_job_is_one_line_with_its_code_and_exit_3(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "people.ndjson"
    path.write_text('{"name": "Ada"}\n')
    async with AsyncClient(live.url, tenant_key.key) as client:
        job = await client.jobs.create_import(path, collection="people")
        async for _ in client.jobs.events(job["id"]):
            pass  # the stream ends with the job
    result = await invoke_async(
        "jobs", "cancel", job["id"], "--url", live.url, "--key", tenant_key.key
    )
    assert result.exit_code == 3
    [line] = result.stderr.splitlines()
    assert line.startswith("batchops jobs: error JOB_FINISHED: ")
    assert line.endswith("(HTTP 409)")


def test_an_unreachable_server_is_one_line_and_exit_3() -> None:
    result = invoke("jobs", "list", "--url", NOWHERE, "--key", "bo_x")
    assert result.exit_code == 3
    [line] = result.stderr.splitlines()
    assert line.startswith("batchops jobs: error CONNECTION_FAILED: GET /v1/jobs")


def test_a_batch_file_that_is_not_json_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "ops.ndjson"
    path.write_text('{"type": "read", "collection": "c", "id": "a"}\nnot json\n')
    result = invoke("batch", str(path), "--url", NOWHERE, "--key", "bo_x")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("batchops batch: error BAD_INPUT: line 2: not JSON")


def test_a_missing_batch_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = invoke("batch", str(tmp_path / "nope.ndjson"), "--url", NOWHERE, "--key", "bo_x")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"batchops batch: error BAD_INPUT: {tmp_path / 'nope.ndjson'}: no such file"
    ]


def test_an_out_file_in_a_missing_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "ops.ndjson"
    path.write_text('{"type": "read", "collection": "c", "id": "a"}\n')
    out = tmp_path / "missing" / "out.ndjson"
    result = invoke("batch", str(path), "--out", str(out), "--url", NOWHERE, "--key", "bo_x")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("batchops batch: error FILE_ERROR: ")
    assert "No such file or directory" in line


def test_debug_shows_the_traceback_instead_of_the_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchops", "--debug", "jobs", "list", "--url", NOWHERE,
         "--key", "bo_x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1  # Python's own status for an uncaught exception
    assert "Traceback (most recent call last)" in done.stderr
    assert (
        done.stderr.rstrip()
        .splitlines()[-1]
        .startswith("batchops._exceptions.ConnectionFailedError: GET /v1/jobs")
    )


def test_without_debug_a_subprocess_prints_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchops", "jobs", "list", "--url", NOWHERE, "--key", "bo_x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


async def test_the_batch_progress_total_is_the_files_operation_count(
    live: Live, tenant_key: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    totals: list[int | None] = []

    class Recording(ProgressReporter):
        def __init__(self, *, total: int | None, **rest: Any) -> None:
            totals.append(total)
            super().__init__(total=total, **rest)

    monkeypatch.setattr(batchops.client._batch, "ProgressReporter", Recording)
    path = tmp_path / "ops.ndjson"
    lines = [f'{{"type": "create", "collection": "c", "data": {{"n": {i}}}}}' for i in range(7)]
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")  # a blank line
    result = await invoke_async(
        "batch", str(path), "--chunk-size", "2", "--out", str(tmp_path / "out.ndjson"),
        "--url", live.url, "--key", tenant_key.key,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert totals == [7]


async def test_an_upload_reports_every_byte_of_the_file(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "people.ndjson"
    path.write_text("".join(f'{{"name": "p{i}", "pad": "{"x" * 200}"}}\n' for i in range(2000)))
    sent: list[int] = []
    async with AsyncClient(live.url, tenant_key.key) as client:
        await client.jobs.create_import(path, collection="people", on_upload_progress=sent.append)
    assert sum(sent) == path.stat().st_size
    assert len(sent) > 1  # reported as it goes, not once at the end


async def test_the_import_summary_counts_the_rows_that_failed(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("name,age\nAda,36\nBob,old\nCy,7\nDi,40\n")
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"name": {"field": "name"}, "age": {"field": "age", "type": "int"}}')
    result = await invoke_async(
        "import", str(path), "--collection", "people", "--mapping", str(mapping), "--lenient",
        "--url", live.url, "--key", tenant_key.key,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    summary = next(line for line in result.stdout.splitlines() if line.startswith("job "))
    assert summary.endswith(": succeeded — succeeded 3/4, 1 failed")


async def test_the_import_summary_of_a_dry_run_says_nothing_was_written(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "people.ndjson"
    path.write_text('{"name": "Ada"}\n{"name": "Bob"}\n')
    result = await invoke_async(
        "import", str(path), "--collection", "people", "--dry-run",
        "--url", live.url, "--key", tenant_key.key,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = next(line for line in result.stdout.splitlines() if line.startswith("job "))
    assert summary.endswith(": succeeded (dry run, nothing written) — succeeded 2/2")


def test_docs_cli_lists_every_exit_status_as_the_cli_defines_it() -> None:
    from batchops.cli import EXIT_CODES

    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for status, meaning in EXIT_CODES.items():
        assert f"| {status} | {meaning} |" in text
