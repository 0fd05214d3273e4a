"""The conversion of one import row into record data: a CSV row's cells (by the header and
the mapping: renamed, nested along dot paths, typed) or a JSON row's object.

Nothing here touches the database. For CSV the conversion is planned once per file
(:func:`csv_converter`) and gives exactly what :func:`convert` gives row by row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import orjson

from batchops.server.imports.json_rows import decode
from batchops.server.imports.rows import FieldSpec, FieldType, Format, RowError, SourceRow
from batchops.server.limits import INT64_MIN, MAX_JSON_DEPTH, UINT64_MAX

__all__ = ["CELLS", "convert", "convert_rows", "csv_converter"]

_INT = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


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
        plan.append((position[column], CELLS[spec.type], column, tuple(parents), last))

    def nested_row(cells: list[str]) -> dict[str, Any]:
        """Field by field in mapping order, exactly as :func:`convert`."""
        if len(cells) != width:
            count(cells)
        data: dict[str, Any] = {}
        for index, cell, column, parents, last in plan:
            _put(data, parents, last, cell(cells[index], column))
        return data

    tree = _field_tree(plan)
    if tree is None:  # a field is also another's parent, or mapped twice: go field by field
        return nested_row

    build = _compiled(tree)

    def tree_row(cells: list[str]) -> dict[str, Any]:
        if len(cells) != width:
            count(cells)
        try:
            return build(cells)
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


def _compiled(tree: list[_Node]) -> Callable[[list[str]], dict[str, Any]]:
    """:func:`_build` over ``tree`` as one function whose body is the record's nested dict
    display (``{"name": cells[0], "age": c1(cells[2], "age"), "address": {…}}``), made
    once per file: the same dict, key order and errors, without walking the tree per row
    (measured, 9 columns, 3 typed and one nested: 1.16 -> 0.60 µs a row; an import
    converts every row, in its worker process). Keys and column names enter the source
    only as ``repr()`` literals; converters are passed in, by name ``c0``, ``c1``… (Paths
    nested deeper than Python's parser takes fall back to :func:`_build`.)"""
    converters: dict[str, _Cell] = {}

    def display(nodes: list[_Node]) -> str:
        items = []
        for key, index, cell, column, sub in nodes:
            if sub is not None:
                value = display(sub)
            elif cell is None:
                value = f"cells[{index}]"
            else:
                name = f"c{len(converters)}"
                converters[name] = cell
                value = f"{name}(cells[{index}], {column!r})"
            items.append(f"{key!r}: {value}")
        return "{" + ", ".join(items) + "}"

    namespace: dict[str, Any] = {}
    try:
        source = f"def row(cells):\n    return {display(tree)}\n"
        namespace.update(converters)
        exec(compile(source, "<csv_converter>", "exec"), namespace)
    except (SyntaxError, RecursionError, MemoryError):  # paths nested beyond the parser
        return lambda cells: _build(tree, cells)
    built: Callable[[list[str]], dict[str, Any]] = namespace["row"]
    return built


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


CELLS: dict[FieldType, _Cell] = {
    "string": _cell_string,
    "int": _cell_int,
    "float": _cell_float,
    "bool": _cell_bool,
    "json": _cell_json,
}


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    _put(data, parents, last, value)


def _put(data: dict[str, Any], parents: Sequence[str], last: str, value: Any) -> None:
    """``value`` at ``parents`` + ``last`` in ``data``, making (or replacing non-object)
    parents as objects."""
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
            return decode(value)
        except msgspec.DecodeError:
            raise _bad(column, value, "JSON text") from None
        except RecursionError:
            raise RowError(
                "JSON_TOO_DEEP",
                f"column {column!r}: the JSON text nests deeper than the parser goes (record "
                f"data may nest at most {MAX_JSON_DEPTH} levels of objects and arrays)",
            ) from None
    return value
