"""Hypothesis strategies for hostile input, built from the real request shapes.

Most examples start from a VALID body of the route under test and mutate it field by field
(a hostile value, a wrong type, a missing or unknown field, a duplicated key, an extreme
shape), so they get past the first check and reach the code behind it; the rest is JSON
text no encoder would write (``1e400``, ``NaN``, lone surrogates as ``"\\ud800"``, nesting
thousands of levels deep, truncated or non-UTF-8 bodies) and plain noise.

Bodies are trees of plain JSON values plus two markers, so that text a Python ``dict``
cannot hold can still be sent: :class:`Raw` (a JSON fragment written verbatim) and
:class:`Pairs` (an object whose keys may repeat). :func:`dumps` writes a tree as bytes.

Big values are drawn as a size and built here (``"w1 w2 …"`` for 10,000 words), not drawn
character by character: that keeps Hypothesis's own buffer small and its shrinking fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import quote

from hypothesis import strategies as st

__all__ = [
    "Pairs",
    "Raw",
    "Tree",
    "corrupted",
    "deep_text",
    "dumps",
    "extreme_like",
    "extreme_shapes",
    "hostile_body",
    "hostile_keys",
    "hostile_query_values",
    "hostile_segments",
    "hostile_strings",
    "hostile_values",
    "json_leaves",
    "mutated",
    "wrong_types",
]

Tree: TypeAlias = Any
"""A JSON value, possibly holding :class:`Raw` and :class:`Pairs` nodes."""


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written verbatim (``1e400``, ``"\\ud800"``, ``[[[[…]]]]``)."""

    text: bytes

    def __repr__(self) -> str:  # short in Hypothesis's falsifying examples
        shown = self.text if len(self.text) <= 80 else self.text[:60] + b"..." + self.text[-12:]
        return f"Raw({shown!r}, {len(self.text)} bytes)"


@dataclass(frozen=True)
class Pairs:
    """A JSON object written member by member: its keys may repeat."""

    items: tuple[tuple[str, Tree], ...]


def dumps(value: Tree, *, ascii_only: bool = True) -> bytes:
    """``value`` as JSON text. Strings are escaped with ``json.dumps`` (a lone surrogate
    becomes ``\\ud800``); non-finite floats are written ``NaN``/``Infinity`` (invalid JSON,
    on purpose). Iterative, so that no nesting depth hits Python's recursion limit."""
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):  # a literal piece of punctuation pushed below
            out.append(item)
        elif isinstance(item, Raw):
            out.append(item.text)
        elif item is None:
            out.append(b"null")
        elif item is True:
            out.append(b"true")
        elif item is False:
            out.append(b"false")
        elif isinstance(item, int):
            out.append(_int_text(item))
        elif isinstance(item, float):
            out.append(_float_text(item))
        elif isinstance(item, str):
            out.append(_str_text(item, ascii_only))
        elif isinstance(item, dict | Pairs):
            members = list(item.items) if isinstance(item, Pairs) else list(item.items())
            stack.append(b"}")
            for position in range(len(members) - 1, -1, -1):
                key, child = members[position]
                stack.append(child)
                stack.append(_str_text(str(key), ascii_only) + b":")
                if position:
                    stack.append(b",")
            stack.append(b"{")
        elif isinstance(item, list | tuple):
            stack.append(b"]")
            for position in range(len(item) - 1, -1, -1):
                stack.append(item[position])
                if position:
                    stack.append(b",")
            stack.append(b"[")
        else:
            raise TypeError(f"not a JSON tree node: {item!r}")
    return b"".join(out)


def _int_text(value: int) -> bytes:
    # Python refuses str() of ints past 4,300 digits; the fuzzer sends those as Raw anyway.
    return str(value).encode()


def _float_text(value: float) -> bytes:
    if math.isnan(value):
        return b"NaN"
    if math.isinf(value):
        return b"Infinity" if value > 0 else b"-Infinity"
    return repr(value).encode()


def _str_text(value: str, ascii_only: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


# -- leaves --------------------------------------------------------------------------------

EDGE_INTS = (
    0,
    -1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**30,
    -(10**30),
    10**4000,
)
"""Integers at and just past every boundary a backend has (int32, float mantissa, int64,
uint64) and far past them."""

EDGE_FLOATS = (-0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 1e-300, 0.1)

RAW_NUMBERS = (
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"-0.0",
    b"0e0",
    b"1E+99999",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1" * 5000,
    b"-" + b"9" * 400,
    b"0." + b"0" * 3000 + b"1",
    b"18446744073709551616",
    b"-9223372036854775809",
)
"""Numbers as text: past float range, past 4,300 digits, negative zero, and the
non-JSON spellings some encoders write."""

RAW_INVALID = (
    b"0x1F",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"1e",
    b"'single'",
    b'"\\x"',
    b'"\\uZZZZ"',
    b'"\x01"',
    b'"a\x00b"',
    b'"\xff\xfe"',
    b'"\xc3"',
    b'"unterminated',
    b"tru",
    b"None",
    b"undefined",
)
"""Fragments that make the whole body invalid JSON."""

RAW_STRINGS = (
    b'"\\ud800"',
    b'"\\udfff"',
    b'"a\\ud800b"',
    b'"\\udc00\\ud800"',
    b'"\\ud800\\u0041"',
    b'"\\u0000"',
    b'"\\u0000\\u0000"',
    b'"\xed\xa0\x80"',  # a surrogate as (invalid) UTF-8 bytes
    b'"\xc0\x80"',  # an overlong NUL
)
"""Strings JSON can spell but Unicode text cannot hold, or that hide a NUL."""

UNICODE_EDGES = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202eevil",  # right-to-left override
    "\u200b",  # zero-width space
    "\ufeff",  # BOM as a character
    "\uffff",
    "\U0010ffff",
    "e\u0301",  # combining acute accent
    "\u0301" * 300,
    "😀" * 50,
    "İ",  # lower() is two code points
    "ß",
    "ﬁ",
    "Ⅻ",
    "²",
    "١٢٣",
    "\u2028\u2029",
    "\r\n",
    "\t",
    "${a.body.id}",
    "$${x}",
    "${",
    "${}",
    "${a.}",
    "../../etc/passwd",
    "%00",
    "%",
    "'; DROP TABLE records; --",
    '"',
    "\\",
    "null",
    "NaN",
    "__proto__",
    "constructor",
)
"""Text that trips normalisation, case folding, escaping, references or SQL."""


@st.composite
def long_strings(draw: st.DrawFn) -> str:
    """Very long text: up to 300,000 characters, of one repeated character or word."""
    size = draw(st.sampled_from((129, 513, 4097, 65_536, 300_000)))
    unit = draw(st.sampled_from(("a", "é", "😀", "a ", "\x00", "word ")))
    return (unit * (size // len(unit) + 1))[:size]


def hostile_strings() -> st.SearchStrategy[str]:
    """Edge-case text, long text and arbitrary (surrogate-free) text."""
    return st.one_of(
        st.sampled_from(UNICODE_EDGES),
        long_strings(),
        st.text(max_size=40),
    )


def json_leaves() -> st.SearchStrategy[Tree]:
    """Scalars JSON can hold, with the edge cases weighted in."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(EDGE_INTS),
        st.integers(),
        st.sampled_from(EDGE_FLOATS),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_strings(),
    )


@st.composite
def deep_text(draw: st.DrawFn) -> Raw:
    """Objects and arrays nested up to 3,000 levels, as text (around every depth limit:
    128 of record data, 254 of orjson, ~990 of msgspec)."""
    depth = draw(st.sampled_from((127, 128, 129, 200, 254, 255, 256, 500, 989, 990, 991, 3000)))
    kind = draw(st.sampled_from(("object", "array", "mixed")))
    if kind == "object":
        return Raw(b'{"a":' * depth + b"1" + b"}" * depth)
    if kind == "array":
        return Raw(b"[" * depth + b"]" * depth)
    half = depth // 2
    return Raw((b'[{"a":' * half) + b"[]" + (b"}]" * half))


@st.composite
def extreme_shapes(draw: st.DrawFn) -> Tree:
    """Valid JSON of extreme size: wide objects, long arrays, long keys, many words."""
    size = draw(st.sampled_from((65, 1000, 10_001)))
    kind = draw(st.sampled_from(("wide", "long", "long_key", "words", "strings", "dotted_keys")))
    if kind == "wide":
        return {f"k{i}": i for i in range(size)}
    if kind == "long":
        return list(range(size))
    if kind == "long_key":
        return {"k" * size: 1}
    if kind == "words":
        return " ".join(f"w{i}" for i in range(size))
    if kind == "strings":
        return [f"id{i}" for i in range(size)]
    return {".".join(["a"] * 300) + str(i): i for i in range(min(size, 1000))}


def hostile_values() -> st.SearchStrategy[Tree]:
    """Any value a field may be handed: edge scalars, raw number and string text, deep
    nesting, extreme shapes, small containers of hostile leaves."""
    leaves = json_leaves()
    return st.one_of(
        leaves,
        st.sampled_from(RAW_NUMBERS).map(Raw),
        st.sampled_from(RAW_STRINGS).map(Raw),
        deep_text(),
        extreme_shapes(),
        st.lists(leaves, max_size=4),
        st.dictionaries(st.text(max_size=8), leaves, max_size=4),
    )


def extreme_like(node: Tree) -> st.SearchStrategy[Tree]:
    """A value of the same kind as ``node`` at its extremes: an integer at or past every
    boundary (or as text no decoder holds), a string of edge-case or very long text, a
    container nested thousands of levels or thousands of items wide. This is how a field
    that takes a number meets ``2**64`` often enough to matter."""
    if isinstance(node, bool):
        return st.sampled_from((0, 1, "true", "false", None, [], {}))
    if isinstance(node, int | float):
        return st.one_of(
            st.sampled_from(EDGE_INTS + EDGE_FLOATS),
            st.sampled_from(RAW_NUMBERS).map(Raw),
        )
    if isinstance(node, str):
        return st.one_of(
            st.sampled_from(UNICODE_EDGES),
            long_strings(),
            st.sampled_from(RAW_STRINGS).map(Raw),
        )
    return st.one_of(deep_text(), extreme_shapes())


def wrong_types() -> st.SearchStrategy[Tree]:
    """One value of each JSON type: whatever a field expects, most of these are wrong."""
    return st.sampled_from((None, True, False, 0, -1, 1.5, "", "x", [], [1], {}, {"a": 1}))


def hostile_keys() -> st.SearchStrategy[str]:
    """Names for unknown or duplicated members."""
    return st.one_of(
        st.sampled_from(
            (
                "",
                "\x00",
                "a\x00",
                "k" * 1000,
                "__proto__",
                "DATA",
                "data ",
                " id",
                "id\n",
                "$ref",
                "${a.b}",
                "a.b",
                ".",
                "😀",
                "\ud800",
            )
        ),
        st.text(max_size=12),
    )


# -- mutating valid bodies ---------------------------------------------------------------------

Path: TypeAlias = tuple[str | int, ...]


def _paths(tree: Tree, prefix: Path = ()) -> list[Path]:
    """Every path to a node of ``tree`` (the root is ``()``), through dicts and lists."""
    found = [prefix]
    if isinstance(tree, dict):
        for key, child in tree.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(tree, list):
        for index, child in enumerate(tree):
            found.extend(_paths(child, (*prefix, index)))
    return found


def _get(tree: Tree, path: Path) -> Tree:
    for step in path:
        tree = tree[step]
    return tree


def _set(tree: Tree, path: Path, change: Callable[[Tree], Tree]) -> Tree:
    """A copy of ``tree`` whose node at ``path`` is ``change(node)`` (copies along the
    path only)."""
    if not path:
        return change(tree)
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        copy = dict(tree)
        copy[head] = _set(tree[head], rest, change)
        return copy
    assert isinstance(tree, list)
    assert isinstance(head, int)
    items = list(tree)
    items[head] = _set(tree[head], rest, change)
    return items


def _drop(tree: Tree, path: Path) -> Tree:
    """A copy of ``tree`` without the member or item at ``path`` (not the root)."""
    parent_path, last = path[:-1], path[-1]

    def without(parent: Tree) -> Tree:
        if isinstance(parent, dict):
            return {k: v for k, v in parent.items() if k != last}
        return [v for i, v in enumerate(parent) if i != last]

    return _set(tree, parent_path, without)


@st.composite
def _mutation(draw: st.DrawFn, tree: Tree, values: st.SearchStrategy[Tree]) -> Tree:
    # Deepest first: Hypothesis favours early choices (and shrinks toward them), and a
    # leaf is where a hostile value gets furthest; the root last and rarely, since
    # replacing the whole body stops the example at the first check.
    paths = sorted(_paths(tree), key=len, reverse=True)
    path = draw(st.sampled_from(paths[:-1] if len(paths) > 1 and draw(_mostly()) else paths))
    node = _get(tree, path)
    # Weighted by repetition (sampled_from draws each entry alike): mostly a hostile
    # value where a valid one was, which is what reaches the code behind the shape check.
    kinds = ["replace"] * 3 + ["extreme"] * 4 + ["wrong_type"] * 2 + ["wrap"]
    if path:
        kinds.append("delete")
    if isinstance(node, dict):
        kinds += ["unknown", "duplicate", "duplicate"] if node else ["unknown"]
    kind = draw(st.sampled_from(kinds))
    if kind == "replace":
        value = draw(values)
        return _set(tree, path, lambda _: value)
    if kind == "extreme":
        value = draw(extreme_like(node))
        return _set(tree, path, lambda _: value)
    if kind == "wrong_type":
        value = draw(wrong_types())
        return _set(tree, path, lambda _: value)
    if kind == "wrap":
        how = draw(st.sampled_from(("list", "object", "string")))
        if how == "list":
            return _set(tree, path, lambda n: [n])
        if how == "object":
            return _set(tree, path, lambda n: {"value": n})
        return _set(tree, path, lambda n: dumps(n).decode("utf-8", "replace"))
    if kind == "delete":
        return _drop(tree, path)
    if kind == "unknown":
        key = draw(hostile_keys())
        value = draw(values)
        return _set(tree, path, lambda n: {**n, key: value})
    # duplicate: the same key again, with another value, before or after the first
    key = draw(st.sampled_from(sorted(node)))
    value = draw(values)
    first = draw(st.booleans())

    def duplicated(n: dict[str, Tree]) -> Pairs:
        items = list(n.items())
        extra = (key, value)
        return Pairs(tuple([extra, *items] if first else [*items, extra]))

    return _set(tree, path, duplicated)


def _mostly() -> st.SearchStrategy[bool]:
    """True nine times in ten."""
    return st.integers(0, 9).map(lambda n: n > 0)


@st.composite
def mutated(
    draw: st.DrawFn,
    template: Tree,
    values: st.SearchStrategy[Tree] | None = None,
    max_mutations: int = 2,
) -> Tree:
    """``template`` (a valid body) with 1 to ``max_mutations`` mutations: a member
    replaced by a hostile value or a wrong type, wrapped, deleted, an unknown member
    added, a key duplicated. ``values`` are the replacements (default
    :func:`hostile_values`)."""
    values = values if values is not None else hostile_values()
    tree = template
    for _ in range(draw(st.integers(1, max_mutations))):
        tree = draw(_mutation(tree, values))
    return tree


# -- corrupting text ---------------------------------------------------------------------------

_NOT_JSON = (
    b"",
    b" ",
    b"null",
    b"[]",
    b'"a string"',
    b"1",
    b"true",
    b"{",
    b"}",
    b"<xml/>",
    b"data=1&id=2",
    b"\x00" * 16,
    b"\xff\xfe{\x00}\x00",
    b"\x1f\x8b\x08\x00",  # the start of a gzip member, sent without Content-Encoding
    b"\xef\xbb\xbf{}",
)


@st.composite
def corrupted(draw: st.DrawFn, text: bytes) -> bytes:
    """``text`` damaged: cut short, prefixed with a BOM, with bytes that are not UTF-8
    spliced in, with data after its end, or replaced by something that is not JSON."""
    kind = draw(st.sampled_from(("truncate", "bom", "bad_utf8", "trailing", "not_json")))
    if kind == "truncate" and len(text) > 1:
        return text[: draw(st.integers(0, len(text) - 1))]
    if kind == "bom":
        return b"\xef\xbb\xbf" + text
    if kind == "bad_utf8" and text:
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from((b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80", b"\xf8\x88")))
        return text[:at] + junk + text[at:]
    if kind == "trailing":
        return text + draw(st.sampled_from((b"x", b"}", b"\x00", b"\n{}", b",", b"]")))
    return draw(st.sampled_from(_NOT_JSON) | st.binary(max_size=64))


def hostile_body(
    template: Tree,
    values: st.SearchStrategy[Tree] | None = None,
) -> st.SearchStrategy[bytes]:
    """The body of a JSON route: mostly ``template`` mutated field by field (as ASCII
    JSON, or as UTF-8); sometimes that body's text corrupted; rarely a hostile value in
    place of the whole body."""
    tree = mutated(template, values)

    def shape(n: int) -> st.SearchStrategy[bytes]:
        if n < 12:
            return tree.map(dumps)
        if n < 15:
            return tree.map(lambda t: dumps(t, ascii_only=False))
        if n < 18:
            return tree.map(dumps).flatmap(corrupted)
        return hostile_values().map(dumps)

    return st.integers(0, 19).flatmap(shape)


# -- URL parts ---------------------------------------------------------------------------------

_SEGMENTS = (
    "%00",
    "a%00b",
    "x" * 129,
    "x" * 8000,
    "%ED%A0%80",  # a surrogate, percent-encoded
    "%FF%FE",
    "%C0%80",
    "%",
    "%zz",
    "..",
    ".",
    "%2E%2E",
    "%2F",
    "a%2Fb",
    "%20",
    "+",
    "-1",
    "0",
    "99999999999999999999999",
    "null",
    "%24%7Ba.b%7D",  # ${a.b}
    "'",
    "%22",
    "%5C",
    "%0A",
    "%E2%80%AE",  # U+202E
    "%F0%9F%98%80",
    "%EF%BB%BF",
    "_",
    "A" * 128,
)


def hostile_segments() -> st.SearchStrategy[str]:
    """A path segment (already percent-encoded where needed): NUL, encoded surrogates and
    invalid UTF-8, very long ids, dot segments, encoded slashes, numbers, references."""
    return st.one_of(
        st.sampled_from(_SEGMENTS),
        st.text(max_size=20).map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe="")),
    )


_QUERY_VALUES = (
    "",
    "²",
    "%C2%B2",
    "%EF%BC%91",  # a fullwidth digit one
    "%D9%A3",  # an Arabic-Indic digit three
    "0",
    "-1",
    "1001",
    "1e3",
    "1.5",
    " 1",
    "1%20",
    "0x10",
    "9" * 40,
    "%00",
    "1%00",
    "true",
    "NaN",
    "Infinity",
    "null",
    "%ED%A0%80",
    "%FF",
    "x" * 5000,
    "%22%22",
    "%22" + "a" * 10,
    "%5B1%5D",
    "%7B%7D",
)


def hostile_query_values() -> st.SearchStrategy[str]:
    """A query-string value, already percent-encoded where needed (``²`` for a limit,
    ``%00``, digits beyond 64 bits, ``NaN``…)."""
    return st.one_of(
        st.sampled_from(_QUERY_VALUES),
        st.integers().map(str),
        st.text(max_size=12).map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe="")),
    )


def pick(options: Sequence[str]) -> st.SearchStrategy[str]:
    """One of ``options`` or a hostile query value."""
    return st.sampled_from(tuple(options)) | hostile_query_values()
