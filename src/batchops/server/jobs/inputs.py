"""Where a job's input file (an import's upload) waits for its job, and how the process that
runs the job gets it as a local file: the :class:`JobInputs` interface and its two
implementations, chosen by ``Settings.upload_storage`` (:func:`job_inputs`).

- :class:`DatabaseInputs` (``"database"``, the default on PostgreSQL): the upload is stored
  as chunk rows of the database (``job_uploads``, :class:`~batchops.store.base.UploadsTx`).
  Every process of the database can read it, so whichever process claims the job, or takes
  it over after a crash, runs it. The processes share no disk.
- :class:`DirectoryInputs` (``"directory"``, the default on SQLite): a file per job in
  :func:`uploads_dir`. The processes that run jobs must share that directory.

The life of an upload:

1. :meth:`JobInputs.receive` returns an :class:`InputWriter`. The route writes the body to it
   in blocks of 1 MiB. One block is stored while the next arrives, so an upload holds a
   few MiB of memory whatever its size (two blocks and the driver's copy of one). The
   database writer commits each block as a chunk row in a transaction of its own: a 1 GiB
   upload is ~1,000 small transactions.
2. :meth:`InputWriter.open`: the stored bytes, read back for the route's checks (the first
   byte, a CSV header).
3. :meth:`InputWriter.publish` inserts the job's row in the transaction that makes the upload
   visible (the database seals the chunk rows; the directory renames ``<id>.part`` to
   ``<id>`` just before). No job ever sees a partial upload. :meth:`InputWriter.abort`
   deletes what was written if anything fails before that.
4. :meth:`JobInputs.local_file` gives the process that runs the job a real file, which the
   import reads with a worker process. A directory upload is the file itself. A database
   upload is copied into this process's *local copy* (``<data_dir>/cache/<runner>/<job>``),
   streamed one chunk at a time, once per run. A process that takes the job over copies it
   again. Each implementation also finds an upload the other one stored (a job queued
   before ``upload_storage`` changed, for example across an upgrade).
5. :meth:`JobInputs.release`: this process's run of the job is over (it ended, was stopped,
   or another process took it over), so its local copy is deleted.
6. The end of the job: the transaction that ends it deletes its chunk rows
   (:meth:`~batchops.server.jobs.runner.JobKinds.ended`), so they go exactly when the job
   ends. :meth:`JobInputs.discard` deletes its file afterwards (cancel route, runner).
7. :meth:`JobInputs.purge` sweeps what dead processes left behind (see its docstring).

Local copies live in a directory per :class:`JobInputs` (``cache/<token>``), which holds
an ``flock`` on ``cache/<token>/.lock`` for as long as it lives. The kernel releases the
lock when the process dies, however it dies, so a copies directory whose lock is free
belongs to a dead process. It is deleted by :meth:`JobInputs.purge` and whenever a process
creates its own copies directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from batchops._exceptions import ServiceUnavailableError
from batchops.server._ids import is_id
from batchops.server.jobs.schemas import TERMINAL_STATES
from batchops.server.settings import Settings
from batchops.store._url import parse_store_url
from batchops.store.base import Store, Tx

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_PURGE_AGE_S",
    "DatabaseInputs",
    "DirectoryInputs",
    "InputWriter",
    "JobInputs",
    "UploadStorage",
    "job_inputs",
    "upload_storage",
    "uploads_dir",
]

UploadStorage = Literal["database", "directory"]

CHUNK_BYTES = 1 << 20
"""How much of an upload one block (a chunk row, a write to the file) holds, the last one
less: the route's spool hands over blocks of this size (see
:mod:`batchops.server.imports.uploads`)."""

DEFAULT_PURGE_AGE_S = 3600.0
"""How old an upload without a job must be before :meth:`JobInputs.purge` deletes it: an
upload still arriving has no job yet, and its newest chunk or its file's last write is
no older than the body read timeout (30 s by default)."""

_COPIES = "cache"  # under the uploads directory: the processes' local copies
_LOCK = ".lock"


def uploads_dir(settings: Settings) -> Path:
    """The uploads directory: ``data_dir``, else beside the SQLite file, else
    ``./batchops-uploads``. It holds directory uploads, and the local copies of the
    database uploads that this process's jobs read."""
    if settings.data_dir:
        return Path(settings.data_dir)
    dialect, target = parse_store_url(settings.db_url)
    if dialect == "sqlite":
        return Path(target).resolve().parent / "batchops-uploads"
    return Path.cwd() / "batchops-uploads"


def upload_storage(settings: Settings) -> UploadStorage:
    """Where new uploads go: ``settings.upload_storage``, else ``"database"`` on
    PostgreSQL and ``"directory"`` on SQLite."""
    if settings.upload_storage == "database":
        return "database"
    if settings.upload_storage == "directory":
        return "directory"
    dialect, _ = parse_store_url(settings.db_url)
    return "database" if dialect == "postgresql" else "directory"


def job_inputs(settings: Settings, store: Store) -> JobInputs:
    """The job inputs the settings choose (see :func:`upload_storage`)."""
    directory = uploads_dir(settings)
    if upload_storage(settings) == "database":
        return DatabaseInputs(store, directory)
    return DirectoryInputs(store, directory)


class InputWriter(Protocol):
    """One upload being received (see the module docstring, steps 1-3)."""

    @property
    def size(self) -> int:
        """The bytes written so far."""
        ...

    async def write(self, block: bytes | bytearray) -> None:
        """Store the next block. Returns once the block before it is stored: one block is
        in flight at most. The writer keeps ``block``: do not change it afterwards."""
        ...

    async def finish(self) -> None:
        """Wait until every block written is stored."""
        ...

    def open(self) -> BinaryIO:
        """The stored bytes, from the first, after :meth:`finish`. The reads are blocking:
        call this from a worker thread, never from the event loop."""
        ...

    async def publish(self, insert: Callable[[Tx], None]) -> None:
        """Make the upload the job's and run ``insert`` (which inserts the job's row) in
        the same transaction. After :meth:`finish`."""
        ...

    async def abort(self) -> None:
        """Delete whatever was stored (the request failed before :meth:`publish`
        succeeded). Idempotent, never raises."""
        ...


class JobInputs(Protocol):
    """Jobs' input files: stored by the route that makes the job, read by the process that
    runs it (see the module docstring)."""

    storage: UploadStorage
    """Where :meth:`receive` stores new uploads."""

    def receive(self, job_id: str) -> InputWriter:
        """Start storing the upload of the job ``job_id`` (not made yet)."""
        ...

    async def local_file(self, job_id: str, *, size: int | None = None) -> Path | None:
        """The job's input as a file on this machine, for the run of the job in this
        process. None when the job has no input, or when it is not ``size`` bytes long."""
        ...

    def release(self, job_id: str) -> None:
        """This process's run of the job is over: delete its local copy (if any)."""
        ...

    async def discard(self, job_id: str) -> None:
        """The job has ended: delete its input file and this process's copy. Idempotent.
        (Its chunk rows went in the transaction that ended it.)"""
        ...

    async def purge(self, *, older_than_s: float = DEFAULT_PURGE_AGE_S) -> int:
        """Delete the inputs no job will read, and return how many were deleted:

        - chunk rows of ended jobs, and chunk rows without a job whose newest chunk is
          older than ``older_than_s`` (the request died mid-upload):
          :meth:`~batchops.store.base.UploadsTx.purge_uploads`;
        - files in the uploads directory: ``<id>.part`` older than ``older_than_s``, and
          ``<id>`` of an ended job, or of no job once older than ``older_than_s``;
        - local copies of processes that are gone (their lock is free).

        Safe to run from every process at any time, and again."""
        ...

    async def close(self) -> None:
        """Delete this process's local copies and let go of their directory."""
        ...


# -- writers -----------------------------------------------------------------------------------


class _OneInFlight:
    """A writer's pipeline: a block is stored by a task while the next one arrives. At most
    one task is in flight at a time."""

    def __init__(self) -> None:
        self._pending: asyncio.Future[Any] | None = None
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    async def _submit(self, store: Awaitable[Any]) -> None:
        await self._drain()
        self._pending = asyncio.ensure_future(store)

    async def _drain(self) -> None:
        """Wait for the block in flight (its error, if it failed)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def finish(self) -> None:
        await self._drain()

    async def _settle(self) -> None:
        """Wait for what is in flight, whatever its outcome (for abort)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await pending


class _DirectoryWriter(_OneInFlight):
    """A directory upload: ``<id>.part`` while it arrives, ``<id>`` once published."""

    def __init__(self, store: Store, directory: Path, job_id: str) -> None:
        super().__init__()
        self._store = store
        self._partial = directory / f"{job_id}.part"
        self._final = directory / job_id
        self._file: BinaryIO | None = None

    def _append(self, block: bytes | bytearray) -> None:
        if self._file is None:
            self._partial.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._partial.open("wb")
        self._file.write(block)

    async def write(self, block: bytes | bytearray) -> None:
        self._size += len(block)
        await self._submit(asyncio.to_thread(self._append, block))

    async def finish(self) -> None:
        await self._drain()
        if self._file is None:  # an empty upload is an empty file
            await asyncio.to_thread(self._append, b"")
        assert self._file is not None
        file, self._file = self._file, None
        await asyncio.to_thread(file.close)

    def open(self) -> BinaryIO:
        return self._partial.open("rb")

    async def publish(self, insert: Callable[[Tx], None]) -> None:
        os.replace(self._partial, self._final)
        await self._store.run(insert, retries=3)

    async def abort(self) -> None:
        await self._settle()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        for path in (self._partial, self._final):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


class _DatabaseWriter(_OneInFlight):
    """A database upload: chunk ``seq`` per block, each committed on its own."""

    def __init__(self, store: Store, job_id: str) -> None:
        super().__init__()
        self._store = store
        self._job_id = job_id
        self._chunks = 0
        self._loop = asyncio.get_running_loop()

    async def write(self, block: bytes | bytearray) -> None:
        seq, self._chunks = self._chunks, self._chunks + 1
        self._size += len(block)
        job_id = self._job_id

        def insert(tx: Tx) -> None:
            tx.insert_upload_chunks(job_id, [(seq, block)], now=time.time())

        await self._submit(self._store.run(insert, retries=3))

    def open(self) -> BinaryIO:
        return _chunk_stream(self._store, self._job_id, self._loop)

    async def publish(self, insert: Callable[[Tx], None]) -> None:
        job_id, chunks, size = self._job_id, self._chunks, self._size

        def seal_and_insert(tx: Tx) -> None:
            if not tx.seal_upload(job_id, chunks=chunks, size=size):
                raise ServiceUnavailableError(
                    "the upload was swept away before its job was made; send it again",
                    code="UPLOAD_LOST",
                    retry_after=1.0,
                )
            insert(tx)

        await self._store.run(seal_and_insert, retries=3)

    async def abort(self) -> None:
        await self._settle()
        job_id = self._job_id
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._store.run(lambda tx: tx.delete_upload(job_id), retries=3)


class _ChunkReader(io.RawIOBase):
    """A database upload read from the first chunk on, one chunk in memory at a time, from
    a worker thread: each chunk is fetched on the event loop's store."""

    def __init__(self, fetch: Callable[[int], bytes | None]) -> None:
        super().__init__()
        self._fetch = fetch
        self._seq = 0
        self._view = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._view and not self._done:
            chunk = self._fetch(self._seq)
            if chunk is None:
                self._done = True
            else:
                self._seq += 1
                self._view = memoryview(chunk)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _chunk_stream(store: Store, job_id: str, loop: asyncio.AbstractEventLoop) -> BinaryIO:
    def fetch(seq: int) -> bytes | None:
        if _in_event_loop():  # the fetch runs on the loop: waiting here would deadlock
            raise RuntimeError("an upload's chunks are read from a worker thread only")
        future = asyncio.run_coroutine_threadsafe(
            store.run(lambda tx: tx.upload_chunk(job_id, seq), retries=3), loop
        )
        return future.result()

    return io.BufferedReader(_ChunkReader(fetch), CHUNK_BYTES)


# -- local copies -----------------------------------------------------------------------------


class _LocalCopies:
    """This process's local copies of database uploads (see the module docstring)."""

    def __init__(self, store: Store, root: Path) -> None:
        self._store = store
        self._root = root
        self._dir: Path | None = None
        self._lock_fd: int | None = None
        self._paths: dict[str, Path] = {}

    def _directory(self) -> Path:
        if self._dir is None:
            directory = self._root / secrets.token_hex(6)
            directory.mkdir(parents=True)
            fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._dir, self._lock_fd = directory, fd
            self.sweep()
        return self._dir

    async def fetch(self, job_id: str, size: int | None) -> Path | None:
        """The upload copied into a file of this process (once per run), or None."""
        path = self._paths.get(job_id)
        if path is not None and path.exists():
            return path
        store = self._store

        def chunk(seq: int) -> Awaitable[bytes | None]:
            return store.run(lambda tx: tx.upload_chunk(job_id, seq), retries=3)

        first = await chunk(0)
        if first is None:
            return None
        directory = await asyncio.to_thread(self._directory)
        target = directory / job_id
        partial = directory / f"{job_id}.part"
        file = await asyncio.to_thread(partial.open, "wb")
        written = 0
        try:
            seq, data = 0, first
            while data:
                # The next chunk is fetched while this one is written: two in memory at most.
                ahead = asyncio.ensure_future(chunk(seq + 1))
                try:
                    await asyncio.to_thread(file.write, data)
                except BaseException:
                    ahead.cancel()
                    raise
                written += len(data)
                seq, data = seq + 1, (await ahead) or b""
            await asyncio.to_thread(file.close)
        except BaseException:
            file.close()
            partial.unlink(missing_ok=True)
            raise
        if size is not None and written != size:  # (never: a sealed upload is whole)
            partial.unlink(missing_ok=True)
            return None
        os.replace(partial, target)
        self._paths[job_id] = target
        return target

    def drop(self, job_id: str) -> None:
        """Delete the copy of ``job_id``, if this process has one."""
        path = self._paths.pop(job_id, None)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def sweep(self) -> int:
        """Delete the copies directories of processes that are gone (their lock is free)."""
        if not self._root.is_dir():
            return 0
        removed = 0
        for directory in self._root.iterdir():
            if directory == self._dir or not directory.is_dir():
                continue
            try:
                fd = os.open(directory / _LOCK, os.O_RDWR)
            except FileNotFoundError:
                # Gone meanwhile, or just made by a process that has not locked it yet:
                # only an old one is a dead process's.
                if _age_s(directory) > 60:
                    shutil.rmtree(directory, ignore_errors=True)
                    removed += 1
                continue
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process's
            finally:
                os.close(fd)
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
        return removed

    def close(self) -> None:
        """Delete every copy of this process and its directory."""
        self._paths.clear()
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


# -- the two implementations ---------------------------------------------------------------


class _Inputs:
    """What both implementations share: both read both places, discard and purge both."""

    storage: UploadStorage

    def __init__(self, store: Store, directory: Path) -> None:
        self._store = store
        self.directory = directory
        """The uploads directory (:func:`uploads_dir`)."""
        self._copies = _LocalCopies(store, directory / _COPIES)

    def _file(self, job_id: str, size: int | None) -> Path | None:
        path = self.directory / job_id
        try:
            actual = path.stat().st_size
        except OSError:
            return None
        return path if size is None or actual == size else None

    def release(self, job_id: str) -> None:
        self._copies.drop(job_id)

    async def discard(self, job_id: str) -> None:
        self._copies.drop(job_id)
        with contextlib.suppress(OSError):
            await asyncio.to_thread((self.directory / job_id).unlink, missing_ok=True)

    async def purge(self, *, older_than_s: float = DEFAULT_PURGE_AGE_S) -> int:
        before = time.time() - older_than_s
        purged = 0
        while True:
            ids = await self._store.run(
                lambda tx: tx.purge_uploads(before=before, limit=100), retries=3
            )
            purged += len(ids)
            if len(ids) < 100:
                break
        purged += await self._purge_files(before)
        purged += await asyncio.to_thread(self._copies.sweep)
        return purged

    async def _purge_files(self, before: float) -> int:
        def listing() -> tuple[list[Path], dict[str, float]]:
            partial: list[Path] = []
            whole: dict[str, float] = {}
            if not self.directory.is_dir():
                return partial, whole
            for entry in os.scandir(self.directory):
                if not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat().st_mtime
                if entry.name.endswith(".part"):
                    if mtime < before:
                        partial.append(Path(entry.path))
                elif is_id(entry.name):
                    whole[entry.name] = mtime
            return partial, whole

        partial, whole = await asyncio.to_thread(listing)
        names = list(whole)

        def states(tx: Tx) -> dict[str, str | None]:
            out: dict[str, str | None] = {}
            for name in names:
                job = tx.get_job(name)
                out[name] = None if job is None else job.state
            return out

        found = await self._store.run(states, retries=3) if names else {}
        gone = [
            self.directory / name
            for name, state in found.items()
            if state in TERMINAL_STATES or (state is None and whole[name] < before)
        ]

        def remove(paths: list[Path]) -> int:
            removed = 0
            for path in paths:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
            return removed

        return await asyncio.to_thread(remove, partial + gone)

    async def close(self) -> None:
        await asyncio.to_thread(self._copies.close)


class DirectoryInputs(_Inputs):
    """Uploads as files in the uploads directory (``upload_storage = "directory"``): every
    process that runs jobs must see the same directory."""

    storage: UploadStorage = "directory"

    def receive(self, job_id: str) -> InputWriter:
        """A writer to ``<directory>/<job_id>.part``, renamed to ``<job_id>`` when
        published."""
        return _DirectoryWriter(self._store, self.directory, job_id)

    async def local_file(self, job_id: str, *, size: int | None = None) -> Path | None:
        """The upload's file; else a copy of chunk rows (an upload stored by a process
        whose storage is the database)."""
        found = await asyncio.to_thread(self._file, job_id, size)
        return found if found is not None else await self._copies.fetch(job_id, size)


class DatabaseInputs(_Inputs):
    """Uploads as chunk rows in the database (``upload_storage = "database"``): any
    process of the database can run the job; the uploads directory holds only this
    process's local copies."""

    storage: UploadStorage = "database"

    def receive(self, job_id: str) -> InputWriter:
        """A writer of chunk rows, sealed when published."""
        return _DatabaseWriter(self._store, job_id)

    async def local_file(self, job_id: str, *, size: int | None = None) -> Path | None:
        """A local copy of the upload's chunk rows; else the upload's file in the uploads
        directory (a job queued while the storage was the directory)."""
        copied = await self._copies.fetch(job_id, size)
        return copied if copied is not None else await asyncio.to_thread(self._file, job_id, size)
