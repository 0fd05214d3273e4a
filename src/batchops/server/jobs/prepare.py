"""An import's rows read, converted and encoded in a worker *process*, a chunk ahead.

Why a process: the server is one CPython process, and reading a CSV (the ``csv`` module),
converting each row into record data and encoding it as JSON all hold the GIL, as does
most of the work around each database statement. In a thread (the previous read-ahead)
both halves took turns on one core; py-spy showed the GIL held ~75-85% of an import. Here
the worker process does everything that does not need the transaction — parse, convert,
check that each row is an object, encode its JSON and (for PostgreSQL) its search text —
and the job's process only generates ids and runs the chunk's transaction, on the other
core at the same time.

The worker runs ahead of the writer by about one chunk: it blocks sending the next chunk
until the job has taken the previous one (a pipe holds ~64 KiB), so memory stays bounded
whatever the file size. It is started per job (``spawn``: nothing of the server's threads
or connections is inherited), is killed when the job stops for any reason, and exits by
itself when its parent dies (its next send fails). Durability is unchanged: the worker
only reads the upload; every chunk is still committed with its checkpoint by the job's
process, and a resumed job starts a new worker that skips to the checkpoint.

Only plain creates take this path (no ``upsert_key``, not a dry run): the others need the
decoded rows in the job's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from batchops.server.jobs.imports import (
    InputError,
    RowError,
    convert_rows,
    input_text,
    read_rows,
    take_rows,
)
from batchops.server.jobs.schemas import ImportOptions
from batchops.store._query import search_text
from batchops.store.base import EncodedData

__all__ = ["ChunkPreparer", "PreparedChunk"]

_NOT_AN_OBJECT = ("NOT_AN_OBJECT", "each row must be a JSON object")


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """One chunk of rows, ready for its transaction.

    ``count`` rows were read, the last numbered ``last_number`` (the checkpoint once the
    chunk commits); ``data`` holds the good rows' encoded data in file order, ``failures``
    the bad rows as ``(row number, input text, code, message)``.
    """

    count: int
    last_number: int
    data: list[EncodedData]
    failures: list[tuple[int, str, str, str]]


def _produce(
    conn: Connection,
    path: str,
    options: dict[str, Any],
    header: list[str],
    skip_to: int,
    with_search: bool,
) -> None:
    """The worker process: send PreparedChunk after PreparedChunk, then None; an
    InputError is sent as ``("input_error", code, message, row)`` and ends the stream."""
    opts = ImportOptions.from_dict(options)
    fmt = opts.format
    dumps = orjson.dumps
    try:
        rows = read_rows(Path(path), fmt)
        while True:
            try:
                chunk = take_rows(rows, opts.chunk_size, skip_to)
            except InputError as exc:
                conn.send(("input_error", exc.code, exc.message, exc.row_number))
                return
            if not chunk:
                conn.send(None)
                return
            data: list[EncodedData] = []
            failures: list[tuple[int, str, str, str]] = []
            for row, out in zip(chunk, convert_rows(chunk, fmt, header, opts.mapping), strict=True):
                if type(out) is dict:
                    data.append(
                        EncodedData(dumps(out).decode(), search_text(out) if with_search else "")
                    )
                elif isinstance(out, RowError):
                    failures.append((row.number, input_text(row, fmt), out.code, out.message))
                else:  # convert() returns objects; kept in step with validate_data anyway
                    failures.append((row.number, input_text(row, fmt), *_NOT_AN_OBJECT))
            conn.send(PreparedChunk(len(chunk), chunk[-1].number, data, failures))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return  # the job's process stopped listening (cancelled, shut down, died)
    finally:
        conn.close()


class ChunkPreparer:
    """The job's end of one worker process (see the module docstring).

    >>> preparer = ChunkPreparer(path, options, header, skip_to=0, with_search=False)
    >>> while (chunk := await preparer.next()) is not None: ...
    >>> await preparer.aclose()
    """

    def __init__(
        self,
        path: Path,
        options: ImportOptions,
        header: list[str],
        *,
        skip_to: int,
        with_search: bool,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        self._conn = receiver
        self._process = ctx.Process(
            target=_produce,
            args=(sender, str(path), options.to_dict(), header, skip_to, with_search),
            name="batchops-import-prepare",
            daemon=True,
        )
        self._process.start()
        sender.close()  # the worker's end: EOF here once the worker has gone
        self._done = False

    async def next(self) -> PreparedChunk | None:
        """The next chunk, None after the last; raises InputError where the file cannot be
        read on (only after every chunk before that row was handed out)."""
        if self._done:
            return None
        try:
            message = await asyncio.to_thread(self._conn.recv)
        except (EOFError, OSError) as exc:
            self._done = True
            raise RuntimeError(
                f"the import's worker process ended unexpectedly "
                f"(exit code {self._process.exitcode})"
            ) from exc
        if message is None:
            self._done = True
            return None
        if isinstance(message, tuple):
            self._done = True
            _, code, text, row = message
            raise InputError(code, text, row)
        assert isinstance(message, PreparedChunk)
        return message

    async def aclose(self) -> None:
        """Stop the worker (at once if it is still running) and release the pipe."""
        if self._process.is_alive():
            self._process.kill()
        await asyncio.to_thread(self._process.join, 5)
        with contextlib.suppress(OSError):
            self._conn.close()
