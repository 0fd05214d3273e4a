"""``batchops batch FILE.ndjson``: stream operations from a file through the SDK.

Resumable runs (``--resume``), built on two things that already exist:

- the engine's checkpoint journal (``<out>.journal``): each finished *request* is
  journaled with its per-operation results, so a rerun yields them without sending;
- deterministic Idempotency-Keys ``cli-<run id>:<request n>`` (the run id lives in
  ``<out>.run.json`` with the input's SHA-256 and the chunk size): the same file splits
  into the same requests again, so a request in flight when the CLI was killed is sent
  with the same key and the server replays its stored answer instead of applying it twice.

The out file is rewritten from the start on resume (journaled requests replay at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson

from batchops._exceptions import APIError
from batchops._results import Result, Success
from batchops.client._async_client import AsyncClient

__all__ = ["UsageError", "run"]


class UsageError(click.ClickException):
    """Bad input (a line that is not JSON, a missing file) or options that cannot go
    together: the CLI prints it as one line, code BAD_INPUT, and exits 2."""

    exit_code = 2


def _scan(path: Path) -> tuple[str, int]:
    """Check every line is a JSON object (before sending anything); the file's SHA-256 and
    its operation count (the progress bar's total)."""
    digest = hashlib.sha256()
    count = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            digest.update(line)
            if line.strip():
                _parse(line, number)
                count += 1
    return digest.hexdigest(), count


def _parse(line: bytes, number: int) -> dict[str, Any]:
    try:
        op = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"line {number}: not JSON ({exc})") from exc
    if not isinstance(op, dict):
        raise UsageError(f"line {number}: an operation must be a JSON object")
    return op


def _operations(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(stream, 1):
        if line.strip():
            yield _parse(line, number)


def _line(result: Result[Any]) -> bytes:
    if isinstance(result, Success):
        value = result.value
        return orjson.dumps(
            {"index": result.index, "status": value["status"], "body": value["body"]}
        )
    error = result.error
    if isinstance(error, APIError):
        status, code, details = error.status_code, error.code, error.details
        message = error.message
    else:
        status, code, details = 0, result.status.upper(), {}
        message = f"{type(error).__name__}: {error}"
    return orjson.dumps(
        {
            "index": result.index,
            "status": status,
            "error": {"code": code, "message": message, "details": details},
        }
    )


def run(
    file: str,
    *,
    url: str,
    key: str,
    out: str | None,
    chunk_size: int | None,
    concurrency: int,
    atomic: bool,
    dry_run: bool,
    resume: bool,
) -> int:
    """Run the command; returns the exit code (0 all succeeded, 1 some failed)."""
    source = None if file == "-" else Path(file)
    if source is not None and not source.is_file():
        raise UsageError(f"{file}: no such file")
    journal: Path | None = None
    run_file: Path | None = None
    prefix: str | None = None
    if out is not None and not dry_run:
        journal = Path(out + ".journal")
        run_file = Path(out + ".run.json")
    if resume and (source is None or journal is None or run_file is None):
        raise UsageError("--resume needs a FILE (not stdin) and --out, and not --dry-run")
    digest, total = _scan(source) if source is not None else (None, None)
    if journal is not None and run_file is not None:
        params = {"sha256": digest, "chunk_size": chunk_size, "atomic": atomic}
        if resume:
            if not run_file.exists():
                raise UsageError(f"nothing to resume: {run_file} does not exist")
            state = orjson.loads(run_file.read_bytes())
            if {k: state.get(k) for k in params} != params:
                raise UsageError(
                    f"cannot resume: {file} or --chunk-size/--atomic changed since the run "
                    f"recorded in {run_file}; the same input must split the same way"
                )
            run_id = str(state["run_id"])
        else:
            if journal.exists() and digest is not None:
                raise UsageError(
                    f"{journal} holds an unfinished run: pass --resume to continue it, or "
                    "delete it (and its .run.json) to start over"
                )
            run_id = uuid.uuid4().hex
            run_file.write_bytes(orjson.dumps({"run_id": run_id, **params}))
        prefix = f"cli-{run_id}"
        if digest is None:
            journal = None  # stdin cannot be re-read, so there is nothing to resume from
    # Opened here, outside the event loop: file opening blocks.
    sink: IO[bytes] = open(out, "wb") if out is not None else sys.stdout.buffer  # noqa: SIM115
    stream: IO[bytes] = source.open("rb") if source is not None else sys.stdin.buffer
    try:
        return asyncio.run(
            _run(
                stream,
                sink,
                url=url,
                key=key,
                chunk_size=chunk_size,
                concurrency=concurrency,
                atomic=atomic,
                dry_run=dry_run,
                prefix=prefix,
                journal=journal,
                run_file=run_file,
                total=total,
            )
        )
    finally:
        if source is not None:
            stream.close()
        if out is not None:
            sink.close()
        else:
            sink.flush()


async def _run(
    stream: IO[bytes],
    sink: IO[bytes],
    *,
    url: str,
    key: str,
    chunk_size: int | None,
    concurrency: int,
    atomic: bool,
    dry_run: bool,
    prefix: str | None,
    journal: Path | None,
    run_file: Path | None,
    total: int | None,
) -> int:
    started = time.monotonic()
    counts = {"succeeded": 0, "failed": 0, "skipped": 0}
    # An error that ends the run (the server unreachable, the key refused) propagates: the
    # CLI prints it as one line (batchops.cli); the journal stays for --resume.
    async with AsyncClient(url, key, max_concurrent=concurrency) as client:
        results = client._runner.stream(
            _operations(stream),
            atomic=atomic,
            chunk_size=chunk_size,
            validate_only=dry_run,
            max_concurrent=concurrency,
            progress=True,
            idempotency_prefix=prefix,
            checkpoint=journal,
            wire=True,
            total=total,
        )
        async for result in results:
            sink.write(_line(result) + b"\n")
            if isinstance(result, Success):
                counts["succeeded"] += 1
            elif result.status == "skipped":
                counts["skipped"] += 1
            else:
                counts["failed"] += 1
    # Every request reached a result: the journal has served its purpose.
    for path in (journal, run_file):
        if path is not None and path.exists():
            os.unlink(path)
    done = sum(counts.values())
    elapsed = time.monotonic() - started
    what = "validated" if dry_run else "operations"
    print(
        f"{done} {what}: {counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['skipped']} skipped in {elapsed:.2f}s"
        + (f" ({done / elapsed:.0f}/s)" if elapsed > 0 else ""),
        file=sys.stderr,
    )
    return 0 if counts["failed"] == 0 and counts["skipped"] == 0 else 1
