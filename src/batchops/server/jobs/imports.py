"""Streaming parsers for import files and the conversion of one row into record data.

Nothing here touches the database, and no file is ever read whole: CSV goes through the
stdlib ``csv`` module over a text stream, NDJSON line by line, a JSON array through
``ijson`` (an incremental parser; its C backend when available).

Row numbers are 1-based positions among the *data rows*: the CSV header is not a row, and
blank lines (CSV, NDJSON) are skipped without being counted. Row 1 is the first record.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ijson  # type: ignore[import-untyped]
import orjson

__all__ = [
    "FIELD_TYPES",
    "FORMATS",
    "FieldSpec",
    "Format",
    "InputError",
    "RowError",
    "SourceRow",
    "convert",
    "csv_header",
    "input_text",
    "read_rows",
]

Format = Literal["csv", "json", "ndjson"]
FORMATS: tuple[Format, ...] = ("csv", "json", "ndjson")
FieldType = Literal["string", "int", "float", "bool", "json"]
FIELD_TYPES: tuple[FieldType, ...] = ("string", "int", "float", "bool", "json")

_INT = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class RowError(Exception):
    """One row cannot be imported: ``code`` (e.g. ``BAD_VALUE``) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InputError(Exception):
    """The file cannot be read on from ``row_number`` (broken JSON array, bad encoding…):
    the job fails, keeping what earlier committed chunks wrote."""

    def __init__(self, code: str, message: str, row_number: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.row_number = row_number


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Where a source column goes (``field``, a dot path) and what type it becomes."""

    field: str
    type: FieldType


@dataclass(slots=True)
class SourceRow:
    """One data row as read: CSV cells (list of str), or a decoded JSON value; ``error``
    when it could not even be decoded (NDJSON), with ``raw`` its text."""

    number: int
    value: Any
    raw: str | None = None
    error: RowError | None = None


def csv_header(path: Path) -> list[str]:
    """The header row of a CSV file (empty if the file has none)."""
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        for cells in csv.reader(f):
            if cells:
                return cells
    return []


def read_rows(path: Path, fmt: Format) -> Iterator[SourceRow]:
    """Every data row of the file, in order. Raises InputError where it cannot go on."""
    if fmt == "csv":
        return _csv_rows(path)
    if fmt == "ndjson":
        return _ndjson_rows(path)
    return _json_rows(path)


def _csv_rows(path: Path) -> Iterator[SourceRow]:
    number = 0
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header_seen = False
            for cells in reader:
                if not cells:
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                number += 1
                yield SourceRow(number, cells)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError("INVALID_CSV", f"the CSV cannot be read: {exc}", number + 1) from exc


def _ndjson_rows(path: Path) -> Iterator[SourceRow]:
    number = 0
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            number += 1
            try:
                yield SourceRow(number, orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raw = line.rstrip(b"\r\n").decode("utf-8", "replace")
                yield SourceRow(number, None, raw, RowError("INVALID_JSON", str(exc)))


def _json_rows(path: Path) -> Iterator[SourceRow]:
    number = 0
    with path.open("rb") as f:
        try:
            for number, item in enumerate(ijson.items(f, "item", use_float=True), 1):
                yield SourceRow(number, item)
        except ijson.JSONError as exc:
            raise InputError(
                "INVALID_JSON", f"the JSON array is broken after row {number}: {exc}", number + 1
            ) from exc


def input_text(row: SourceRow, fmt: Format) -> str:
    """The row as text, for the failures report: a CSV line, or JSON."""
    if row.raw is not None:
        return row.raw
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(row.value)
        return out.getvalue()
    try:
        return orjson.dumps(row.value).decode()
    except TypeError:
        return repr(row.value)


def convert(
    row: SourceRow,
    fmt: Format,
    header: list[str],
    mapping: Mapping[str, FieldSpec] | None,
) -> dict[str, Any]:
    """The record data of one row, or RowError. Without ``mapping``: a CSV row becomes
    ``{column: text}``, a JSON row must be an object and is taken as it is. With it: only
    mapped columns (keys) are kept, renamed to their field (dot paths nest) and converted
    to their type; an empty CSV cell becomes null for every type but ``string``."""
    if row.error is not None:
        raise row.error
    if fmt == "csv":
        cells = row.value
        if len(cells) != len(header):
            raise RowError(
                "COLUMN_COUNT", f"the row has {len(cells)} columns, the header {len(header)}"
            )
        source: Mapping[str, Any] = dict(zip(header, cells, strict=True))
    else:
        if not isinstance(row.value, dict):
            raise RowError("NOT_AN_OBJECT", "each row must be a JSON object")
        source = row.value
    if mapping is None:
        return dict(source)
    data: dict[str, Any] = {}
    for column, spec in mapping.items():
        if column not in source:
            continue
        value = _typed(source[column], spec.type, column, empty_is_null=fmt == "csv")
        _set_path(data, spec.field, value)
    return data


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target = data
    for name in parents:
        child = target.get(name)
        if not isinstance(child, dict):
            child = target[name] = {}
        target = child
    target[last] = value


def _bad(column: str, value: Any, kind: str) -> RowError:
    shown = value if isinstance(value, str) else orjson.dumps(value).decode()
    return RowError("BAD_VALUE", f"column {column!r}: {shown[:80]!r} is not a valid {kind}")


def _typed(value: Any, kind: FieldType, column: str, *, empty_is_null: bool) -> Any:
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        raise _bad(column, value, "string")
    if empty_is_null and value == "":
        return None
    if kind == "int":
        if isinstance(value, bool):
            raise _bad(column, value, "int")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return int(value)
        raise _bad(column, value, "int")
    if kind == "float":
        if isinstance(value, bool):
            raise _bad(column, value, "float")
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise _bad(column, value, "float") from None
        else:
            raise _bad(column, value, "float")
        if not math.isfinite(number):
            raise _bad(column, value, "float")
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        raise _bad(column, value, "bool")
    # json: text is parsed, JSON values are taken as they are
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise _bad(column, value, "JSON text") from None
    return value
