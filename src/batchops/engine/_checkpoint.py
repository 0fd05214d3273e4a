"""The checkpoint journal: an append-only JSON-lines file of succeeded items.

One line per success, ``{"k": key, "v": value}``, written with a single ``os.write`` on
an ``O_APPEND`` descriptor: once ``write`` returns, the line is in the kernel, so a
``kill -9`` of this process cannot lose it (``fsync=True`` also survives power loss, at
the price of a disk flush per item). A crash can leave a torn last line; it is ignored on
read and cut off before appending, so the journal stays valid JSON-lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from batchops._exceptions import CheckpointError

__all__ = ["Journal"]


class Journal:
    """Load the finished keys of a previous run, then record new successes."""

    __slots__ = ("_fd", "_fsync", "done", "path")

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self.done: dict[str, Any] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise CheckpointError(f"cannot open checkpoint journal {self.path}: {exc}") from exc
        try:
            self._load()
        except BaseException:
            os.close(self._fd)
            raise

    def _load(self) -> None:
        with open(self._fd, "rb", closefd=False) as f:
            data = f.read()
        if not data:
            return
        lines = data.split(b"\n")
        # The part after the last newline is a line whose write did not finish: a torn
        # tail from a crash. Cut it off so the next append starts on a fresh line.
        tail = lines.pop()
        if tail:
            os.ftruncate(self._fd, len(data) - len(tail))
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                entry = orjson.loads(line)
                self.done[entry["k"]] = entry["v"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(
                    f"checkpoint journal {self.path} is corrupt at line {number} ({exc}); "
                    "it is not a batchops journal, or was edited: move it away to start over"
                ) from exc

    def record(self, key: str, value: object) -> None:
        """Journal one success durably. Raises :class:`CheckpointError` if not JSON."""
        try:
            line = orjson.dumps({"k": key, "v": value}) + b"\n"
        except TypeError as exc:
            raise CheckpointError(
                f"cannot checkpoint item {key!r}: its value of type {type(value).__name__} "
                f"is not JSON-serialisable ({exc}); return JSON data (dict, list, str, int, "
                "float, bool, None) from the operation, or run without checkpoint="
            ) from exc
        try:
            written = os.write(self._fd, line)
            while written < len(line):  # regular files rarely write short; disks do fill up
                written += os.write(self._fd, line[written:])
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint journal {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the journal file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
