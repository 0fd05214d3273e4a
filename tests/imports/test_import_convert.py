"""The planned CSV conversion (convert_rows / check_rows / scan_rows) gives exactly what
convert() gives: the same data, the same key order, and the same RowError (code and
message) per row."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from batchops.server.imports.check import check_rows, scan_rows
from batchops.server.imports.convert import convert, convert_rows
from batchops.server.imports.read import read_rows
from batchops.server.imports.rows import FieldSpec, RowError, SourceRow

HEADER = ["name", "age", "score", "ok", "meta", "city", "zip", "name"]  # "name" twice

CELLS = [
    ["a", "42", "1.5", "yes", '{"k": [1, 2]}', "Oslo", "0150", "last name wins"],
    ["b", "-7", "1e3", " TRUE ", "null", "", "", ""],
    ["c", " 12 ", "inf", "0", "[", "x", "1", "y"],  # bad float and bad json
    ["d", "", "", "", "", "", "", ""],  # empty cells: null except strings
    ["e", "1_000", "nan", "maybe", "1", "x", "y", "z"],  # several bad cells
    ["f", "٣", "2", "n", '"s"', "x", "y", "z"],  # a non-ASCII decimal digit is an int
    ["g", "+3", "-0.0", "F", "{}", "x", "y", "z"],
    ["h", "1"],  # too few columns
    ["i", "1", "2", "t", "1", "x", "y", "z", "extra"],  # too many
    [],
]

MAPPINGS: dict[str, dict[str, FieldSpec] | None] = {
    "none": None,
    "flat": {
        "name": FieldSpec("name", "string"),
        "age": FieldSpec("age", "int"),
        "score": FieldSpec("score", "float"),
        "ok": FieldSpec("ok", "bool"),
        "meta": FieldSpec("meta", "json"),
    },
    "nested": {
        "city": FieldSpec("address.city", "string"),
        "age": FieldSpec("person.age", "int"),
        "zip": FieldSpec("address.zip", "int"),
        "score": FieldSpec("score", "float"),
        "ok": FieldSpec("person.flags.ok", "bool"),
    },
    "overlapping": {  # a field that is also another's parent, and a field mapped twice
        "meta": FieldSpec("a", "json"),
        "city": FieldSpec("a.b", "string"),
        "zip": FieldSpec("c", "int"),
        "age": FieldSpec("c", "int"),
    },
    "missing column": {"nope": FieldSpec("x", "int"), "age": FieldSpec("age", "int")},
}


def _expected(row: SourceRow, mapping: dict[str, FieldSpec] | None) -> Any:
    try:
        return convert(row, "csv", HEADER, mapping)
    except RowError as exc:
        return exc


def _same(got: Any, want: Any) -> None:
    if isinstance(want, RowError):
        assert isinstance(got, RowError)
        assert (got.code, got.message) == (want.code, want.message)
    else:
        assert got == want
        assert _key_order(got) == _key_order(want)


def _key_order(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, _key_order(v)) for k, v in value.items()]
    return None


@pytest.mark.parametrize("name", list(MAPPINGS))
def test_convert_rows_matches_convert_row_by_row(name: str) -> None:
    mapping = MAPPINGS[name]
    rows = [SourceRow(i, cells) for i, cells in enumerate(CELLS, 1)]
    got = convert_rows(rows, "csv", HEADER, mapping)
    assert len(got) == len(rows)
    for row, outcome in zip(rows, got, strict=True):
        _same(outcome, _expected(row, mapping))


@pytest.mark.parametrize("name", list(MAPPINGS))
def test_check_rows_reports_the_error_convert_raises_and_none_for_good_rows(name: str) -> None:
    mapping = MAPPINGS[name]
    rows = [SourceRow(i, cells) for i, cells in enumerate(CELLS, 1)]
    for row, outcome in zip(rows, check_rows(rows, "csv", HEADER, mapping), strict=True):
        want = _expected(row, mapping)
        if isinstance(want, RowError):
            _same(outcome, want)
        else:
            assert outcome is None


def test_a_row_that_could_not_be_decoded_keeps_its_error() -> None:
    broken = SourceRow(1, None, "{", RowError("INVALID_JSON", "bad"))
    good = SourceRow(2, {"a": 1})
    assert convert_rows([broken, good], "ndjson", [], None) == [broken.error, {"a": 1}]
    assert check_rows([broken, good], "ndjson", [], None) == [broken.error, None]


def _csv_file(path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for cells in CELLS:
            writer.writerow(cells)  # [] is a blank line: skipped, not counted
    return path


@pytest.mark.parametrize("name", list(MAPPINGS))
def test_scan_rows_counts_every_chunk_and_reports_the_errors_convert_raises(
    name: str, tmp_path: Path
) -> None:
    mapping = MAPPINGS[name]
    path = _csv_file(tmp_path / "rows.csv")
    chunks = list(scan_rows(path, "csv", HEADER, mapping, size=3, check=True))
    rows = list(read_rows(path, "csv"))
    assert [count for count, _ in chunks] == [3, 3, 3]
    want = {row.number: _expected(row, mapping) for row in rows}
    got = {row.number: error for _, bad in chunks for row, error in bad}
    assert sorted(got) == sorted(n for n, w in want.items() if isinstance(w, RowError))
    for number, error in got.items():
        _same(error, want[number])
    assert all(row.value == rows[row.number - 1].value for _, bad in chunks for row, _ in bad)


def test_scan_rows_without_check_only_counts(tmp_path: Path) -> None:
    path = _csv_file(tmp_path / "rows.csv")
    chunks = list(scan_rows(path, "csv", HEADER, MAPPINGS["flat"], size=4, check=False))
    assert chunks == [(4, []), (4, []), (1, [])]
