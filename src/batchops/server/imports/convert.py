"""Streaming parsers for import files and the conversion of one row into record data.

Nothing here touches the database, and no file is ever read whole: CSV goes through the
stdlib ``csv`` module over a text stream, NDJSON line by line, a JSON array item by item
(:class:`_JsonArray` finds each item's bytes, block by block).

JSON rows are decoded by msgspec, not orjson: ``orjson.loads`` silently turns an integer
beyond 64 bits into a float, and ijson's C backend (used before for arrays) fails the
whole file on one (``integer overflow``) and turns a lone surrogate escape into ``?``.
msgspec keeps big integers exact, so the record rule refuses them (a failure for that
row), and refuses lone surrogates (``INVALID_JSON``). Measured, :func:`read_rows` over
200k rows of ~190 bytes: NDJSON 238 -> 198 ms (orjson -> msgspec), a JSON array
495 -> 177 ms (ijson -> :class:`_JsonArray`).

What record data may hold (64-bit integers, no NUL, at most ``MAX_JSON_DEPTH`` levels…)
is decided in one place, :func:`batchops.server.records.schemas.encode_data`; the checks
here call it (:func:`data_error`), they do not restate it.

Row numbers are 1-based positions among the *data rows*: the CSV header is not a row, and
blank lines (CSV, NDJSON) are skipped without being counted. Row 1 is the first record.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec
import orjson

from batchops._exceptions import ValidationError
from batchops.server.limits import INT64_MIN, MAX_JSON_DEPTH, UINT64_MAX
from batchops.server.records.schemas import encode_data

__all__ = [
    "FIELD_TYPES",
    "FORMATS",
    "FieldSpec",
    "Format",
    "InputError",
    "RowError",
    "SourceRow",
    "UnterminatedQuote",
    "check_rows",
    "checked_rows",
    "convert",
    "convert_rows",
    "csv_cells",
    "csv_checker",
    "csv_converter",
    "csv_header",
    "csv_rule",
    "data_error",
    "failure_text",
    "has_nul",
    "input_text",
    "key_text",
    "missing_key",
    "read_rows",
    "scan_rows",
    "take_rows",
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
    when it could not even be read (JSON that does not decode, a CSV row whose quoted
    field never ends), with ``raw`` its text."""

    number: int
    value: Any
    raw: str | None = None
    error: RowError | None = None


class UnterminatedQuote(InputError):
    """A CSV row whose quoted field is never closed, so that it runs to the end of the file
    (the csv module, not strict, would silently return the rest of the file as that one
    field). Raised by :func:`csv_cells` after every row before it; ``row`` is the broken
    row with its RowError (``UNTERMINATED_QUOTE``), which callers report as that row's
    failure: nothing follows it, every byte of the file is in a row or in that failure."""

    def __init__(self, row: SourceRow, error: RowError) -> None:
        super().__init__("INVALID_CSV", error.message, row.number)
        self.row = row
        self.error = error


_UNTERMINATED_SHOWN = 1024  # characters of the broken row kept in its failure's input


def _mark_end(ended: list[bool]) -> Iterator[str]:
    """Chained after a file's lines (``itertools.chain``, so the lines go by at C speed):
    marks ``ended`` when the file has none left. A row the csv reader returns after the
    mark was still open at the end of the file: it was inside a quoted field. (Not
    ``csv.reader(strict=True)``, which raises "unexpected end of data" there: it would also
    refuse rows read today, ``"a"b`` and ``"a" ,`` read as ``ab`` and ``a ``, and it
    raises without the row.)"""
    ended.append(True)
    yield from ()


def has_nul(path: Path) -> bool:
    """Whether the file holds a NUL byte (in UTF-8, only U+0000 is encoded with one):
    ~10 ms for 40 MB, against ~30 ms for testing each row's cells."""
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            if b"\x00" in block:
                return True
    return False


def csv_header(path: Path) -> list[str]:
    """The header row of a CSV file (empty if the file has none); csv.Error when a quoted
    field of the header is never closed (the whole file would be the header)."""
    ended: list[bool] = []
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        for cells in csv.reader(itertools.chain(f, _mark_end(ended))):
            if cells:
                if ended:
                    raise csv.Error("a quoted field of the header is never closed")
                return cells
    return []


def read_rows(path: Path, fmt: Format) -> Iterator[SourceRow]:
    """Every data row of the file, in order. Raises InputError where it cannot go on."""
    if fmt == "csv":
        return _csv_rows(path)
    if fmt == "ndjson":
        return _ndjson_rows(path)
    return _json_rows(path)


def csv_cells(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(row number, cells)`` of every data row of a CSV file: the header (the first
    non-empty row) and blank lines are skipped. Raises InputError where it cannot go on,
    and :class:`UnterminatedQuote` (after every row before it) for a row whose quoted
    field runs to the end of the file."""
    number = 0
    ended: list[bool] = []
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(itertools.chain(f, _mark_end(ended)))
            for cells in reader:
                if cells:
                    break  # the header
            line = reader.line_num  # the last line of the previous row
            for cells in reader:
                if cells:
                    if ended:
                        raise _unterminated(number + 1, cells, line + 1, reader.line_num)
                    number += 1
                    yield number, cells
                line = reader.line_num
    except (csv.Error, UnicodeDecodeError) as exc:
        hint = (
            " (a quoted field that is never closed reads the rest of the file into one field)"
            if "field limit" in str(exc)
            else ""
        )
        raise InputError("INVALID_CSV", f"the CSV cannot be read: {exc}{hint}", number + 1) from exc


def _unterminated(number: int, cells: list[str], first: int, last: int) -> UnterminatedQuote:
    text = _csv_line(cells)
    if len(text) > _UNTERMINATED_SHOWN:
        text = text[:_UNTERMINATED_SHOWN] + "…"
    error = RowError(
        "UNTERMINATED_QUOTE",
        f"a quoted field is never closed: the row that starts on line {first} runs to the "
        f"end of the file (line {last}), so the lines after its start cannot be read as rows",
    )
    return UnterminatedQuote(SourceRow(number, cells, failure_text(text), error), error)


def _csv_rows(path: Path) -> Iterator[SourceRow]:
    try:
        for number, cells in csv_cells(path):
            yield SourceRow(number, cells)
    except UnterminatedQuote as exc:
        yield exc.row


# JSON rows: see the module docstring for why msgspec. A Decoder is reused (no per-call set-up).
_decode = msgspec.json.Decoder().decode


def _undecodable(number: int, text: bytes, exc: Exception) -> SourceRow:
    """The SourceRow of a JSON text that does not decode (``exc`` from :data:`_decode`)."""
    raw = failure_text(text.rstrip(b"\r\n").decode("utf-8", "replace"))
    return SourceRow(number, None, raw, _decode_error(text, exc))


def _decode_error(text: bytes | str, exc: Exception) -> RowError:
    if isinstance(exc, RecursionError):
        return RowError(
            "JSON_TOO_DEEP",
            f"the JSON nests deeper than the parser goes (record data may nest at most "
            f"{MAX_JSON_DEPTH} levels of objects and arrays)",
        )
    if isinstance(exc, msgspec.ValidationError):  # a number it cannot hold: "out of range"
        return RowError("INVALID_JSON", str(exc).split(" - at ")[0])
    try:  # orjson's messages name the line and column (msgspec: "Input data was truncated")
        orjson.loads(text)
    except orjson.JSONDecodeError as other:
        return RowError("INVALID_JSON", str(other))
    return RowError("INVALID_JSON", str(exc))


def _ndjson_rows(path: Path) -> Iterator[SourceRow]:
    number = 0
    decode = _decode
    with path.open("rb") as f:
        for line in f:
            if line.isspace():
                continue
            number += 1
            try:
                value = decode(line)
            except (msgspec.DecodeError, RecursionError) as exc:
                yield _undecodable(number, line, exc)
                continue
            yield SourceRow(number, value)


def _json_rows(path: Path) -> Iterator[SourceRow]:
    with path.open("rb") as f:
        yield from _JsonArray(f)


_BLOCK = 1 << 16
_SPACE = re.compile(rb"[ \t\r\n]*")
# From inside an object or array to its next bracket: other bytes and whole strings. It
# stops at a '"' whose string does not end within the buffer (more must be read).
_TO_BRACKET = re.compile(rb'[^"\[\]{}]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"\[\]{}]*)*', re.S)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SCALAR = re.compile(rb'[^\s,\[\]{}"]*')  # a number, true, false, null (or what is not JSON)
_OPENING = b"[{"
# Where a row that is an object may end and the next begin; tried from the buffer's end.
_CUT = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")
_CUT_TAIL = 8192
_CUT_TRIES = 3


class _JsonArray:
    """The rows of one top-level JSON array (each a SourceRow), read in blocks.

    Fast path, for arrays of objects: the buffer's rows up to a ``}`` that is followed by
    ``,`` and ``{`` are decoded by msgspec at once (``[`` + them + ``]``). That is sound
    whichever such ``}`` is tried: if the text from a row's start up to it decodes as
    complete JSON values, they are the file's next rows (JSON is read left to right, and a
    ``}`` ends a value for good); a ``}`` inside a string or a nested object leaves the text
    undecodable. When the last few tried do not decode (a bad row among them, rows larger
    than the buffer), those rows take the slow path.

    Slow path, one row at a time: its end is found by the brackets (strings skipped whole,
    one regex match per bracket), then its text is decoded alone, so a bad row is that
    row's failure and the next one is read. Only the array's own structure is checked
    here: an InputError where it is broken (the file ends inside it, a missing ``,``,
    data after it). A row, however large, is read in time linear in its size (a buffer
    that must grow at least doubles).

    Measured on 200k rows of ~190 bytes: ijson (C backend) 495 ms, the slow path alone
    1.2 s, with the fast path 177 ms (indented with 2 spaces: 199 ms).
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._buf = b""
        self._base = 0  # the file offset of the buffer's first byte
        self._eof = False

    def _fill(self, keep: int) -> bool:
        """Drop the buffer before ``keep`` and append the file's next bytes (at least as
        many as are kept); False, changing nothing, at the end of the file."""
        if self._eof:
            return False
        data = self._f.read(max(_BLOCK, len(self._buf) - keep))
        if not data:
            self._eof = True
            return False
        self._buf = self._buf[keep:] + data
        self._base += keep
        return True

    def _space(self, pos: int) -> int:
        """The position of the next byte that is not JSON whitespace (the buffer's length
        at the end of the file); positions before ``pos`` may be dropped."""
        while True:
            pos = _SPACE.match(self._buf, pos).end()  # type: ignore[union-attr]
            if pos < len(self._buf) or not self._fill(pos):
                return pos
            pos = 0

    def _cuts(self, pos: int) -> list[int]:
        """Positions just after a ``}`` that ``,`` and ``{`` follow, after ``pos``: the
        last ones in the buffer, last first."""
        buf = self._buf
        tail = max(pos, len(buf) - _CUT_TAIL)
        cuts = [m.start() + 1 for m in _CUT.finditer(buf, tail)]
        if not cuts and tail > pos:
            cuts = [m.start() + 1 for m in _CUT.finditer(buf, pos)]
        return cuts[: -_CUT_TRIES - 1 : -1]

    def _item(self, start: int) -> tuple[int, int] | None:
        """``(start, end)`` of the row that starts at ``start`` (positions move when the
        buffer is refilled), or None when the file ends inside it."""
        buf = self._buf
        pos, depth = start, 0
        while True:
            first = buf[start]
            if first in _OPENING:
                to_bracket = _TO_BRACKET.match
                while True:
                    pos = to_bracket(buf, pos).end()  # type: ignore[union-attr]
                    if pos == len(buf) or buf[pos] == 0x22:  # '"': a string not ended yet
                        break
                    depth += 1 if buf[pos] in _OPENING else -1
                    pos += 1
                    if depth == 0:
                        return start, pos
            elif first == 0x22:
                string = _STRING.match(buf, start)
                if string is not None:
                    return start, string.end()
            else:
                pos = _SCALAR.match(buf, start).end()  # type: ignore[union-attr]
                if pos < len(buf) or self._eof:
                    return start, max(pos, start + 1)  # one stray byte: refused as a row
            if not self._fill(start):
                return None
            pos, start, buf = pos - start, 0, self._buf

    def __iter__(self) -> Iterator[SourceRow]:
        number = 0
        decode = _decode

        def broken(why: str) -> InputError:
            return InputError(
                "INVALID_JSON", f"the JSON array is broken after row {number}: {why}", number + 1
            )

        pos = self._space(0)
        if self._buf[pos : pos + 1] != b"[":
            raise InputError("INVALID_JSON", "a JSON import is one top-level array", 1)
        pos = self._space(pos + 1)
        if self._buf[pos : pos + 1] == b"]":
            pos += 1
        else:
            slow_until = 0  # file offset: the rows before it take the slow path
            while True:
                if self._buf[pos : pos + 1] in (b"]", b",", b"}", b""):
                    raise broken("a row is missing" if pos < len(self._buf) else "the file ends")
                cuts = self._cuts(pos) if self._base + pos >= slow_until else []
                for cut in cuts:
                    try:
                        values = decode(b"[" + self._buf[pos:cut] + b"]")
                    except (msgspec.DecodeError, RecursionError):
                        continue
                    for value in values:
                        number += 1
                        yield SourceRow(number, value)
                    pos = self._space(self._space(cut) + 1)  # past the ',' after the cut
                    break
                else:
                    if cuts:
                        slow_until = self._base + cuts[0]
                    item = self._item(pos)
                    if item is None:
                        raise broken(f"the file ends inside row {number + 1}")
                    start, end = item
                    number += 1
                    text = self._buf[start:end]
                    try:
                        value = decode(text)
                    except (msgspec.DecodeError, RecursionError) as exc:
                        yield _undecodable(number, text, exc)
                    else:
                        yield SourceRow(number, value)
                    pos = self._space(end)
                    after = self._buf[pos : pos + 1]
                    if after == b",":
                        pos = self._space(pos + 1)
                    elif after == b"]":
                        pos += 1
                        break
                    elif after:
                        raise broken("',' or ']' expected after it")
                    else:
                        raise broken("the file ends before the array's closing ']'")
        if self._space(pos) < len(self._buf):
            raise broken("there is data after the array's closing ']'")


def scan_rows(
    path: Path,
    fmt: Format,
    header: list[str],
    mapping: Mapping[str, FieldSpec] | None,
    *,
    size: int,
    check: bool,
    upsert_key: str | None = None,
) -> Iterator[tuple[int, list[tuple[SourceRow, RowError]]]]:
    """The first pass over a file, ``size`` rows at a time: how many rows each chunk has
    and, when ``check``, its bad rows with the RowError the import would record for them
    (:func:`check_rows`: conversion, the record rule, the upsert key).

    For CSV, a loop over the reader that builds a :class:`SourceRow` only for a bad row
    (strict validation reads every row once more than the import itself: measured ~3.2 →
    ~2.2 µs a row against :func:`read_rows` + :func:`check_rows`); the other formats go
    through those two.
    """
    if fmt != "csv":
        rows = read_rows(path, fmt)
        while chunk := take_rows(rows, size, 0):
            if not check:
                yield len(chunk), []
                continue
            checked = check_rows(chunk, fmt, header, mapping, upsert_key)
            yield len(chunk), [(r, e) for r, e in zip(chunk, checked, strict=True) if e]
        return
    bad_cells = csv_checker(header, mapping, upsert_key, nul=check and has_nul(path))
    count = 0
    bad: list[tuple[SourceRow, RowError]] = []
    try:
        for number, cells in csv_cells(path):
            count += 1
            if check and (error := bad_cells(cells)) is not None:
                bad.append((SourceRow(number, cells), error))
            if count == size:
                yield count, bad
                count, bad = 0, []
    except UnterminatedQuote as exc:  # the file's last row
        count += 1
        if check:
            bad.append((exc.row, exc.error))
    if count:
        yield count, bad


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


def input_text(row: SourceRow, fmt: Format) -> str:
    """The row as text, for the failures report: a CSV line, or JSON (see
    :func:`failure_text`)."""
    if row.raw is not None:
        return failure_text(row.raw)
    if fmt == "csv":
        return failure_text(_csv_line(row.value))
    try:
        return orjson.dumps(row.value).decode()  # escapes a NUL; refuses what cannot be JSON
    except TypeError:
        pass
    try:  # an integer beyond 64 bits, nesting past orjson's 254 levels
        return failure_text(msgspec.json.encode(row.value).decode())
    except (TypeError, ValueError, RecursionError):
        return f"(a {type(row.value).__name__} that cannot be shown as JSON)"


def _csv_line(cells: list[str]) -> str:
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


def data_error(data: dict[str, Any]) -> RowError | None:
    """Why ``data`` cannot be a record's data, as a RowError with the record API's code and
    message (``VALIDATION_ERROR``, ``JSON_TOO_DEEP``…), or None. The verdict is
    :func:`~batchops.server.records.schemas.encode_data`'s, the one copy of that rule."""
    try:
        encode_data(data)
    except ValidationError as exc:
        return RowError(exc.code, failure_text(exc.message))
    return None


def key_text(data: dict[str, Any], path: str) -> str | None:
    """The upsert key's value in ``data`` (``path``: a dot path) as the text the store
    looks it up by, or None when there is no scalar there."""
    value: Any = data
    for name in path.split("."):
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"  # SQLite's text of JSON true/false
    return str(value)


def missing_key(upsert_key: str) -> RowError:
    """The failure of a row without a scalar value for the upsert key."""
    return RowError(
        "MISSING_UPSERT_KEY", f"the row has no scalar value for the upsert key {upsert_key!r}"
    )


def _verdict(data: dict[str, Any], upsert_key: str | None) -> RowError | None:
    """The RowError of a converted row that the import would still refuse, or None."""
    error = data_error(data)
    if error is None and upsert_key is not None and key_text(data, upsert_key) is None:
        return missing_key(upsert_key)
    return error


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


def convert_rows(
    rows: Sequence[SourceRow],
    fmt: Format,
    header: list[str],
    mapping: Mapping[str, FieldSpec] | None,
) -> list[dict[str, Any] | RowError]:
    """:func:`convert` of each row (a RowError in place of a bad row's data). CSV rows go
    through :func:`csv_converter`: the same results, without redoing per row the work that
    depends only on the header and the mapping."""
    out: list[dict[str, Any] | RowError] = []
    append = out.append
    if fmt == "csv":
        one = csv_converter(header, mapping)
        for row in rows:
            try:
                append(one(row.value) if row.error is None else row.error)
            except RowError as exc:
                append(exc)
        return out
    for row in rows:
        try:
            append(convert(row, fmt, header, mapping))
        except RowError as exc:
            append(exc)
    return out


def checked_rows(
    rows: Sequence[SourceRow],
    fmt: Format,
    header: list[str],
    mapping: Mapping[str, FieldSpec] | None,
    upsert_key: str | None = None,
) -> list[dict[str, Any] | RowError]:
    """:func:`convert_rows`, and a RowError also in place of the data the import would
    still refuse: data against the record rule (:func:`data_error`), or without a scalar
    at ``upsert_key`` (``MISSING_UPSERT_KEY``)."""
    out = convert_rows(rows, fmt, header, mapping)
    for index, outcome in enumerate(out):
        if type(outcome) is dict and (error := _verdict(outcome, upsert_key)) is not None:
            out[index] = error
    return out


def check_rows(
    rows: Sequence[SourceRow],
    fmt: Format,
    header: list[str],
    mapping: Mapping[str, FieldSpec] | None,
    upsert_key: str | None = None,
) -> list[RowError | None]:
    """The RowError :func:`checked_rows` gives each row (None for a good row), without
    building the records where that can be skipped: for CSV, see :func:`csv_checker`
    (strict validation's first pass reads every row)."""
    if fmt != "csv":
        return [
            o if isinstance(o, RowError) else None
            for o in checked_rows(rows, fmt, header, mapping, upsert_key)
        ]
    bad_cells = csv_checker(header, mapping, upsert_key)
    return [row.error if row.error is not None else bad_cells(row.value) for row in rows]


def csv_rule(
    header: list[str], mapping: Mapping[str, FieldSpec] | None
) -> tuple[RowError | None, bool]:
    """The record rule (:func:`data_error`) for the data of a file's CSV rows, planned
    once: ``(shared, each)``. ``shared`` is the verdict on a row of empty cells, which
    every row shares unless its data is judged alone: the header and mapping give every
    row the same keys and nesting, and text cells can break the rule no other way than by
    holding a NUL (they were decoded from UTF-8, so no lone surrogate; int cells are range
    checked, float cells finite). ``each``: every row's data must be judged alone, as a
    ``json`` column may bring anything; otherwise only a row with a NUL in a cell must."""
    position = set(header)
    build = csv_converter(header, mapping)
    shared = data_error(build([""] * len(header)))  # empty cells convert without error
    each = any(
        spec.type == "json" for column, spec in (mapping or {}).items() if column in position
    )
    return shared, each


def csv_checker(
    header: list[str],
    mapping: Mapping[str, FieldSpec] | None,
    upsert_key: str | None = None,
    *,
    nul: bool = True,
) -> Callable[[list[str]], RowError | None]:
    """The RowError :func:`checked_rows` would give the cells of one CSV row, or None;
    planned once per file. Most rows build no record: the column count and the typed
    cells are checked, and the record rule's verdict comes from :func:`csv_rule`. A row's
    data is built and judged whole only when a cell holds a NUL, when a ``json`` column
    may bring anything, or to look at the upsert key. ``nul=False``: the caller knows
    that no cell holds a NUL (the file has none)."""
    width = len(header)
    position = {name: index for index, name in enumerate(header)}
    typed = [
        (position[column], _CELL[spec.type], column)
        for column, spec in (mapping or {}).items()
        if column in position and spec.type != "string"
    ]
    build = csv_converter(header, mapping)
    shared, each = csv_rule(header, mapping)
    whole = each or upsert_key is not None

    def check(cells: list[str]) -> RowError | None:
        if len(cells) != width:
            return RowError("COLUMN_COUNT", f"the row has {len(cells)} columns, the header {width}")
        try:
            for index, cell, column in typed:  # mapping order: convert()'s first error
                cell(cells[index], column)
            if whole or (nul and "\x00" in "".join(cells)):
                return _verdict(build(cells), upsert_key)
        except RowError as exc:
            return exc
        return shared

    return check


_Cell = Callable[[str, str], Any]  # (cell text, column name) -> typed value, or RowError


def csv_converter(
    header: list[str], mapping: Mapping[str, FieldSpec] | None
) -> Callable[[list[str]], dict[str, Any]]:
    """``convert`` for the cells of one CSV row, planned once per file: column positions,
    split dot paths and a converter per type are looked up here, not per row (measured
    ~8 µs → ~3 µs a row for 9 typed columns). Same results and errors as :func:`convert`
    (a repeated header name: the last column wins, as with ``dict(zip(header, cells))``)."""
    width = len(header)

    def count(cells: list[str]) -> None:
        raise RowError("COLUMN_COUNT", f"the row has {len(cells)} columns, the header {width}")

    if mapping is None:

        def plain(cells: list[str]) -> dict[str, Any]:
            if len(cells) != width:
                count(cells)
            return dict(zip(header, cells, strict=True))

        return plain
    position = {name: index for index, name in enumerate(header)}  # the last one wins
    plan: list[tuple[int, _Cell, str, tuple[str, ...], str]] = []
    for column, spec in mapping.items():
        if column not in position:
            continue
        *parents, last = spec.field.split(".")
        plan.append((position[column], _CELL[spec.type], column, tuple(parents), last))

    def nested_row(cells: list[str]) -> dict[str, Any]:
        """Field by field in mapping order, exactly as :func:`convert`."""
        if len(cells) != width:
            count(cells)
        data: dict[str, Any] = {}
        for index, cell, column, parents, last in plan:
            value = cell(cells[index], column)
            target = data
            for name in parents:
                child = target.get(name)
                if not isinstance(child, dict):
                    child = target[name] = {}
                target = child
            target[last] = value
        return data

    tree = _field_tree(plan)
    if tree is None:  # a field is also another's parent, or mapped twice: go field by field
        return nested_row

    def tree_row(cells: list[str]) -> dict[str, Any]:
        if len(cells) != width:
            count(cells)
        try:
            return _build(tree, cells)
        except RowError:
            # Several bad cells: report the one convert() reports (the first in mapping order).
            return nested_row(cells)

    return tree_row


# A record's shape as nested dict displays: (key, column index, cell converter or None for
# text kept as it is, column name, children or None for a leaf).
_Node = tuple[str, int, "_Cell | None", str, "list[_Node] | None"]


def _field_tree(plan: list[tuple[int, _Cell, str, tuple[str, ...], str]]) -> list[_Node] | None:
    """The mapped fields as a tree, or None when a path repeats or is another's prefix
    (then only the field-by-field order gives convert()'s results)."""
    root: dict[str, Any] = {}
    for index, cell, column, parents, last in plan:
        node = root
        for name in parents:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                return None
            node = child
        if last in node:
            return None
        node[last] = (index, None if cell is _cell_string else cell, column)

    def nodes(level: dict[str, Any]) -> list[_Node]:
        out: list[_Node] = []
        for key, value in level.items():
            if isinstance(value, dict):
                out.append((key, 0, None, "", nodes(value)))
            else:
                out.append((key, value[0], value[1], value[2], None))
        return out

    return nodes(root)


def _build(tree: list[_Node], cells: list[str]) -> dict[str, Any]:
    return {
        key: (cells[i] if cell is None else cell(cells[i], column))
        if sub is None
        else _build(sub, cells)
        for key, i, cell, column, sub in tree
    }


def _cell_string(value: str, column: str) -> Any:
    return value


def _cell_int(value: str, column: str) -> Any:
    if value.isdecimal() and len(value) < 19:  # ``\d``, all of which int() takes; < 10**18
        return int(value)
    if value == "":
        return None
    return _typed(value, "int", column, empty_is_null=True)


def _cell_float(value: str, column: str) -> Any:
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise _bad(column, value, "float") from None
    if not math.isfinite(number):
        raise _bad(column, value, "float")
    return number


_BOOL_TEXT = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def _cell_bool(value: str, column: str) -> Any:
    known = _BOOL_TEXT.get(value)
    if known is not None:
        return known
    if value == "":
        return None
    return _typed(value, "bool", column, empty_is_null=True)


def _cell_json(value: str, column: str) -> Any:
    return _typed(value, "json", column, empty_is_null=True)


_CELL: dict[FieldType, _Cell] = {
    "string": _cell_string,
    "int": _cell_int,
    "float": _cell_float,
    "bool": _cell_bool,
    "json": _cell_json,
}


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
    return RowError("BAD_VALUE", f"column {column!r}: {_shown(value)[:80]!r} is not a valid {kind}")


def _shown(value: Any) -> str:
    """A value as a failure message quotes it (never raising)."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        pass
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than int -> str converts
            return f"an integer of {value.bit_length()} bits"
    return f"a {type(value).__name__} that cannot be shown as JSON"


def _int_range(column: str, value: Any) -> RowError:
    return RowError(
        "BAD_VALUE",
        f"column {column!r}: {_shown(value)[:80]!r} is out of range for an int "
        "(integers must fit in 64 bits: -2**63 to 2**64-1)",
    )


def _typed(value: Any, kind: FieldType, column: str, *, empty_is_null: bool) -> Any:
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            try:
                return str(value)
            except ValueError:  # an int of more digits than int -> str converts
                raise _bad(column, value, "string") from None
        raise _bad(column, value, "string")
    if empty_is_null and value == "":
        return None
    if kind == "int":
        number: int | None = None
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _INT.fullmatch(value.strip()):
            try:
                number = int(value)
            except ValueError:  # more digits than int() reads: far beyond 64 bits
                raise _int_range(column, value) from None
        if number is None:
            raise _bad(column, value, "int")
        if not INT64_MIN <= number <= UINT64_MAX:
            raise _int_range(column, value)
        return number
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _bad(column, value, "float")
        try:
            number_f = float(value)
        except (ValueError, OverflowError):  # not a number; an int beyond a float's range
            raise _bad(column, value, "float") from None
        if not math.isfinite(number_f):
            raise _bad(column, value, "float")
        return number_f
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
    # json: text is parsed (big integers kept exact, as in JSON rows), JSON values are taken
    # as they are
    if isinstance(value, str):
        try:
            return _decode(value)
        except msgspec.DecodeError:
            raise _bad(column, value, "JSON text") from None
        except RecursionError:
            raise RowError(
                "JSON_TOO_DEEP",
                f"column {column!r}: the JSON text nests deeper than the parser goes (record "
                f"data may nest at most {MAX_JSON_DEPTH} levels of objects and arrays)",
            ) from None
    return value
