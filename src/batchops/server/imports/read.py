"""An import file as rows, and rows as chunks: the one entry point over the parsers of
each format (:mod:`~batchops.server.imports.csv_rows`,
:mod:`~batchops.server.imports.json_rows`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from batchops.server.imports.csv_rows import csv_rows
from batchops.server.imports.json_rows import json_rows, ndjson_rows
from batchops.server.imports.rows import Format, SourceRow

__all__ = ["read_rows", "take_rows"]


def read_rows(path: Path, fmt: Format) -> Iterator[SourceRow]:
    """Every data row of the file, in order. Raises InputError where it cannot go on."""
    if fmt == "csv":
        return csv_rows(path)
    if fmt == "ndjson":
        return ndjson_rows(path)
    return json_rows(path)


def take_rows(rows: Iterator[SourceRow], size: int, skip_to: int) -> list[SourceRow]:
    """Up to ``size`` rows numbered above ``skip_to`` from ``rows`` (a resumed import
    skips to its checkpoint this way)."""
    out: list[SourceRow] = []
    for row in rows:  # skip to the first row to take, then take the rest at C speed
        if row.number > skip_to:
            out.append(row)
            break
    if out and size > 1:
        out.extend(itertools.islice(rows, size - 1))
    return out
