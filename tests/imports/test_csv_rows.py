"""csv_cells splits quote-free lines itself and hands the others to the csv reader: the
rows, row numbers and errors must be exactly what the reader alone gives."""

from __future__ import annotations

import csv
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchops.server.imports.csv_rows import UnterminatedQuote, csv_cells
from batchops.server.imports.rows import InputError


def _reader_only(path: Path) -> Iterator[tuple[int, list[str]]]:
    """csv_cells as it was before the split lines: every line through csv.reader."""
    ended: list[bool] = []

    def mark() -> Iterator[str]:
        ended.append(True)
        yield from ()

    number = 0
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(itertools.chain(f, mark()))
            for cells in reader:
                if cells:
                    break
            line = reader.line_num
            for cells in reader:
                if cells:
                    if ended:
                        yield -1, [str(number + 1), str(line + 1), str(reader.line_num), *cells]
                        return
                    number += 1
                    yield number, cells
                line = reader.line_num
    except (csv.Error, UnicodeDecodeError) as exc:
        yield -2, [str(number + 1), type(exc).__name__]


def _split(path: Path) -> list[tuple[int, list[str]]]:
    out: list[tuple[int, list[str]]] = []
    try:
        out.extend(csv_cells(path))
    except UnterminatedQuote as exc:
        message = exc.error.message  # "... starts on line F ... of the file (line L) ..."
        first = message.split("starts on line ")[1].split(" ")[0]
        last = message.split("(line ")[1].split(")")[0]
        out.append((-1, [str(exc.row.number), first, last, *exc.row.value]))
    except InputError as exc:
        cause: Any = exc.__cause__
        out.append((-2, [str(exc.row_number), type(cause).__name__]))
    return out


PIECES = ["a", "b", ",", ",", '"', '""', "\n", "\r", "\r\n", " ", "\x00", "é", "\ufeff"]


@pytest.mark.parametrize("limit", [None, 6])
def test_rows_are_the_csv_readers_rows(tmp_path: Path, limit: int | None) -> None:
    before = csv.field_size_limit()
    if limit is not None:
        csv.field_size_limit(limit)
    try:
        path = tmp_path / "f.csv"
        for seed in range(3000):
            rnd = random.Random(seed)
            text = "".join(rnd.choice(PIECES) for _ in range(rnd.randrange(40)))
            raw = text.encode() + (b"\xff" if seed % 17 == 0 else b"")
            path.write_bytes((b"h1,h2\n" if seed % 3 else b"") + raw)
            assert _split(path) == list(_reader_only(path)), repr(raw)
    finally:
        csv.field_size_limit(before)
