"""The rows of an import file as read, and the errors a row or a file can have.

Row numbers are 1-based positions among the *data rows*: the CSV header is not a row, and
blank lines (CSV, NDJSON) are skipped without being counted. Row 1 is the first record.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import orjson

__all__ = [
    "FIELD_TYPES",
    "FORMATS",
    "FieldSpec",
    "FieldType",
    "Format",
    "InputError",
    "RowError",
    "SourceRow",
    "csv_line",
    "failure_text",
    "input_text",
]

Format = Literal["csv", "json", "ndjson"]
FORMATS: tuple[Format, ...] = ("csv", "json", "ndjson")
FieldType = Literal["string", "int", "float", "bool", "json"]
FIELD_TYPES: tuple[FieldType, ...] = ("string", "int", "float", "bool", "json")


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
    when it could not even be read (JSON that does not decode, a CSV row whose quoted
    field never ends), with ``raw`` its text."""

    number: int
    value: Any
    raw: str | None = None
    error: RowError | None = None


def input_text(row: SourceRow, fmt: Format) -> str:
    """The row as text, for the failures report: a CSV line, or JSON (see
    :func:`failure_text`)."""
    if row.raw is not None:
        return failure_text(row.raw)
    if fmt == "csv":
        return failure_text(csv_line(row.value))
    try:
        return orjson.dumps(row.value).decode()  # escapes a NUL; refuses what cannot be JSON
    except TypeError:
        pass
    try:  # an integer beyond 64 bits, nesting past orjson's 254 levels
        return failure_text(msgspec.json.encode(row.value).decode())
    except (TypeError, ValueError, RecursionError):
        return f"(a {type(row.value).__name__} that cannot be shown as JSON)"


def csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


def failure_text(text: str) -> str:
    """``text`` as a failure's input or message may hold it: a NUL (which PostgreSQL cannot
    store) written ``\\u0000``, a lone surrogate (which no UTF-8 column takes) escaped."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text
