"""An import's rows read, converted and encoded in a worker *process*, ahead of the writer.

Why a process: the server is one CPython process, and reading a CSV (the ``csv`` module),
converting each row into record data and encoding it as JSON all hold the GIL, as does
most of the work around each database statement. In a thread (the previous read-ahead)
both halves took turns on one core; py-spy showed the GIL held ~75-85% of an import. Here
the worker process does everything that does not need the transaction — parse, convert,
check that each row is an object, encode its JSON and (for PostgreSQL) its search text —
and the job's process only generates ids and runs the chunk's transaction, on the other
core at the same time.

The worker runs ahead of the writer by at most ``_AHEAD_BYTES`` (32 MiB) of prepared
chunks: a thread of its own sends them (:class:`_Outbox`), the preparing loop waits only
when that much is waiting, and the job receives the next chunk while it writes the
current one, so memory stays bounded whatever the file size. Running ahead is what
matters with strict validation: the job's process reads the whole file once more first
(the first pass), and the worker prepares meanwhile on the other core instead of stopping
after a chunk; the writes after the pass then rarely wait for it. It is started per job
(``spawn``: nothing of the server's threads or connections is inherited), is killed when
the job stops for any reason, and exits by itself when its parent dies (its next send
fails). Durability is unchanged: the worker only reads the upload; every chunk is still
committed with its checkpoint by the job's process, and a resumed job starts a new worker
that skips to the checkpoint.

Only plain creates take this path (no ``upsert_key``, not a dry run): the others need the
decoded rows in the job's process.

Each row's data is held to the record rule here, as the records API holds it: the JSON
orjson wrote goes through :func:`~batchops.server.records.schemas.check_encoded` (NUL,
nesting: substring tests on the bytes, ~0.7 µs a row of 256 bytes), and data orjson
refuses (an integer beyond 64 bits, nesting past its 254 levels) through ``encode_data``
for the same failure the in-process path records. CSV rows skip ``check_encoded`` when
:func:`~batchops.server.imports.check.csv_rule` shows their verdict is the one every row
shares (no ``json`` column, no NUL in the file). Nothing a file holds may crash this
process: a crash would fail the job as ``INTERNAL_ERROR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import orjson

from batchops._exceptions import ValidationError
from batchops.server.imports.check import csv_rule, data_error
from batchops.server.imports.convert import convert_rows, csv_converter
from batchops.server.imports.csv_rows import UnterminatedQuote, csv_cells, has_nul
from batchops.server.imports.options import ImportOptions
from batchops.server.imports.read import read_rows, take_rows
from batchops.server.imports.rows import InputError, RowError, SourceRow, failure_text, input_text
from batchops.server.records.schemas import check_encoded
from batchops.store._query import search_text
from batchops.store.base import EncodedRecords

__all__ = ["ChunkPreparer", "PreparedChunk"]

_NOT_AN_OBJECT = ("NOT_AN_OBJECT", "each row must be a JSON object")


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """One chunk of rows, ready for its transaction.

    ``count`` rows were read, the last numbered ``last_number`` (the checkpoint once the
    chunk commits). The good rows' data are ``json``: their JSON texts joined by newlines
    (JSON text never holds a raw newline), one bytes object rather than an object per row,
    which costs both processes least to send and to unpack; ``search`` likewise holds their
    search texts (newlines turned into spaces) when the store wants them. ``failures`` are
    the bad rows as ``(row number, input text, code, message)``.
    """

    count: int
    last_number: int
    json: bytes
    search: bytes | None
    failures: list[tuple[int, str, str, str]]

    def records(self) -> EncodedRecords | None:
        """The good rows, as the store takes them (None when there are none)."""
        if not self.json:
            return None
        search = self.search.decode().split("\n") if self.search is not None else None
        return EncodedRecords(self.json.decode().split("\n"), search)


def _outcomes(
    path: Path, opts: ImportOptions, header: list[str], skip_to: int
) -> Iterator[tuple[int, Any, Any]]:
    """``(row number, data dict or RowError, the row as read)`` from ``skip_to`` on: the
    row is its CSV cells, or its SourceRow for the other formats. CSV cells go straight to
    the planned converter: no SourceRow per row."""
    fmt = opts.format
    if fmt == "csv":
        one = csv_converter(header, opts.mapping)
        try:
            for number, cells in csv_cells(path):
                if number <= skip_to:
                    continue
                try:
                    out: Any = one(cells)
                except RowError as exc:
                    out = exc
                yield number, out, cells
        except UnterminatedQuote as exc:  # the file's last row: its failure
            if exc.row.number > skip_to:
                yield exc.row.number, exc.error, exc.row
        return
    rows = read_rows(path, fmt)
    while chunk := take_rows(rows, opts.chunk_size, skip_to):
        for row, out in zip(chunk, convert_rows(chunk, fmt, header, opts.mapping), strict=True):
            yield row.number, out, row


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
# The worker's heap swings by a chunk's worth (its rows' objects, the joined JSON, the
# pickled message) every chunk; kept this much above its high-water mark, it is not given
# back to the system after each chunk.
_HEAP_KEEP_BYTES = 64 * 1024 * 1024


def _keep_heap() -> bool:
    """Stop glibc from trimming this process's heap after every chunk (the worker only).

    Measured (``perf stat -e page-faults`` on the worker, 600,000 CSV rows): with glibc's
    default policy the top of the heap is freed and taken back every chunk, and each new
    page is faulted in again — 636,630 page faults, ~1 a row, ~2 µs a row of the worker's
    CPU, the worker the import's bottleneck (~140k rows/s). Whether that happens depends
    on whether some long-lived object happens to sit above the freed space: unrelated code
    changes flipped it (the store restructure did; an extra f-string in the worker undid
    it). With the threshold fixed: ~8,000 page faults, ~185k rows/s, the same peak RSS.
    Returns False where there is no glibc (the policy is then the platform's).
    """
    try:
        # The symbols this process already has (no find_library: it runs ldconfig in a
        # subprocess, at every worker start).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    trim: int = mallopt(_M_TRIM_THRESHOLD, _HEAP_KEEP_BYTES)
    pad: int = mallopt(_M_TOP_PAD, 16 * 1024 * 1024)
    return trim == 1 and pad == 1


# How far the worker may run ahead of the job's process: chunks it prepared and pickled that
# the job has not taken yet, in bytes. It pays while the job's process runs the strict first
# pass (the whole file once, ~1.2-1.5 µs a row, on the other core): the worker prepares up to
# this much meanwhile instead of stopping after one chunk, and the writes that follow the
# pass then wait for the worker less. 32 MiB is ~130,000 rows of 200 bytes; the worker holds
# at most that much more than before, whatever the file size.
_AHEAD_BYTES = 32 * 1024 * 1024
# A pipe this large (Linux; the default limit for unprivileged processes is 1 MiB) takes a
# chunk of a few thousand rows in one write, and the job's process reads it in one read:
# each read of a 64 KiB pipe is another wait for the GIL there, beside the writer.
_PIPE_BYTES = 1024 * 1024


def _widen_pipe(conn: Connection) -> None:
    """Ask for a ``_PIPE_BYTES`` pipe (Linux only; elsewhere, or refused, nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import fcntl  # not on Windows

    with contextlib.suppress(OSError):
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


class _Outbox:
    """The worker's messages, pickled, sent in order by a thread of their own, so that the
    worker goes on preparing while the job's process is busy elsewhere (at most
    ``_AHEAD_BYTES`` waiting; one message always fits). :meth:`put` returns False once the
    job's process stopped listening: the worker then ends."""

    def __init__(self, conn: Connection, limit: int = _AHEAD_BYTES) -> None:
        self._conn = conn
        self._limit = limit
        self._queue: deque[memoryview | None] = deque()
        self._held = 0
        self._gone = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._send, name="batchops-import-send")
        self._thread.start()

    def put(self, message: Any) -> bool:
        """Queue ``message`` (waits while ``_AHEAD_BYTES`` are queued)."""
        blob = ForkingPickler.dumps(message)  # a view of its buffer: no copy
        with self._cond:
            while self._held and self._held + len(blob) > self._limit and not self._gone:
                self._cond.wait()
            if self._gone:
                return False
            self._queue.append(blob)
            self._held += len(blob)
            self._cond.notify_all()
        return True

    def close(self) -> None:
        """Send what is queued, then stop the thread (at once if nobody listens)."""
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()
        self._thread.join()

    def _send(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                blob = self._queue.popleft()
            if blob is None:
                return
            try:
                self._conn.send_bytes(blob)
            except (BrokenPipeError, OSError):
                with self._cond:
                    self._gone = True
                    self._queue.clear()
                    self._cond.notify_all()
                return
            with self._cond:
                self._held -= len(blob)
                self._cond.notify_all()


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
    # A SIGTERM or SIGINT sent to the server's whole process group (Ctrl-C in a terminal,
    # systemd's default KillMode) is for the server, which drains and hands the job back;
    # this process ends when the server stops it or dies, never on its own, else the job
    # would fail INTERNAL_ERROR instead of being handed back.
    if threading.current_thread() is threading.main_thread():  # (tests run it in a thread)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _keep_heap()
    # The sending thread must get the GIL back promptly after each write (the default
    # switch interval, 5 ms, would hold back the next chunk behind the preparing thread).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    _widen_pipe(conn)
    out = _Outbox(conn)
    try:
        _prepare(out, path, options, header, skip_to, with_search)
    except KeyboardInterrupt:
        return
    finally:
        out.close()
        conn.close()
        sys.setswitchinterval(switch)  # (the tests run this in a thread)


def _prepare(
    out: _Outbox,
    path: str,
    options: dict[str, Any],
    header: list[str],
    skip_to: int,
    with_search: bool,
) -> None:
    """:func:`_produce`'s loop: every message into ``out``; returns early once nobody
    listens."""
    opts = ImportOptions.from_dict(options)
    size = opts.chunk_size
    dumps, check = orjson.dumps, check_encoded
    # Whose data check_encoded judges: every JSON row; a CSV row only when csv_rule says
    # that its verdict may differ from the one all rows share (~0.7 µs a row saved).
    judge_all, nul = True, False
    if opts.format == "csv":
        shared, each = csv_rule(header, opts.mapping)
        judge_all, nul = shared is not None or each, has_nul(Path(path))
    count = last = 0
    json: list[bytes] = []
    search: list[str] = []
    failures: list[tuple[int, str, str, str]] = []
    try:
        for number, outcome, source in _outcomes(Path(path), opts, header, skip_to):
            count, last = count + 1, number
            if type(outcome) is dict:
                try:
                    encoded = dumps(outcome)
                    if judge_all or (nul and "\x00" in "".join(source)):
                        check(encoded, outcome)
                except (TypeError, ValidationError) as exc:
                    outcome = _refused(outcome, exc)
                else:
                    json.append(encoded)
                    if with_search:
                        search.append(search_text(outcome).replace("\n", " "))
            if type(outcome) is not dict:
                row = source if isinstance(source, SourceRow) else SourceRow(number, source)
                text = input_text(row, opts.format)
                if isinstance(outcome, RowError):
                    failures.append((number, text, outcome.code, failure_text(outcome.message)))
                else:  # convert() returns objects; kept in step with validate_data anyway
                    failures.append((number, text, *_NOT_AN_OBJECT))
            if count == size:
                if not out.put(_chunk(count, last, json, search, with_search, failures)):
                    return
                count, json, search, failures = 0, [], [], []
    except InputError as exc:
        # The rows of the chunk read so far are dropped, as in the in-process path: the
        # job fails keeping what earlier chunks committed. (The first pass reads the
        # whole file, so only a file changed between the passes gets here.)
        out.put(("input_error", exc.code, exc.message, exc.row_number))
        return
    if count and not out.put(_chunk(count, last, json, search, with_search, failures)):
        return
    out.put(None)


def _refused(data: dict[str, Any], exc: Exception) -> RowError:
    """The failure of a row whose data orjson could not write (TypeError: ``encode_data``
    names the fault) or that :func:`check_encoded` refused."""
    if isinstance(exc, ValidationError):
        return RowError(exc.code, failure_text(exc.message))
    error = data_error(data)
    return error if error is not None else RowError("VALIDATION_ERROR", str(exc))


def _chunk(
    count: int,
    last: int,
    json: list[bytes],
    search: list[str],
    with_search: bool,
    failures: list[tuple[int, str, str, str]],
) -> PreparedChunk:
    return PreparedChunk(
        count,
        last,
        b"\n".join(json),
        "\n".join(search).encode() if with_search else None,
        failures,
    )


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
