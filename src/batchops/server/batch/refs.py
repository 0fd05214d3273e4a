"""References between the operations of a batch: ``${name.path.to.field}``.

Grammar (inside any JSON *string value*; object keys are never templates)::

    reference := "${" name ("." segment)* "}"
    escape    := "$${"            -> a literal "${"

- ``name`` is an earlier operation's name (REST ``id`` / typed ``ref``); it may not contain
  ``.``, ``$``, ``{``, ``}`` or whitespace (:data:`NAME_RE`, which the planner also applies to
  operation names so every name can be referenced).
- The segments walk the operation's result, which starts as ``{"status": int, "body": ...}``:
  ``${a.body.id}``, ``${a.status}``. A segment indexes an object by key, or an array by a
  decimal index (``${s.body.items.0.id}``). Keys containing ``.`` cannot be addressed.
- A string that is exactly one reference is replaced by the referenced value with its JSON
  type (number, object, null...). References embedded in a longer string are replaced by
  the value as text: strings as they are, numbers/``true``/``false``/``null`` as JSON text.
  Embedding an object or array is an error (400 ``REFERENCE_NOT_SCALAR``) rather than JSON
  text: it is almost always a mistake (``${a.body}`` for ``${a.body.id}``) and would
  otherwise build a nonsense record id or path silently.
- ``$${`` always means a literal ``${``. A consequence: a literal ``$`` cannot directly
  precede a reference (``$${a.body.price}`` is the literal text ``${a.body.price}``).
- A ``${`` that does not start a well-formed reference (``${}``, ``${a..b}``, no closing
  ``}``) is an error (400 ``INVALID_REFERENCE``), never left as text: write ``$${`` for a
  literal.

Strings without ``${`` take a fast path (a substring test, no regex), so batches without
references pay almost nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import msgspec
import orjson

from batchops._exceptions import InvalidRequestError, ValidationError

__all__ = [
    "NAME_RE",
    "Found",
    "find_references",
    "has_templates",
    "iter_templates",
    "may_hold_templates",
    "resolve",
]

NAME_RE: Final = re.compile(r"[^.${}\s]{1,128}")

# "${" written with JSON escapes needs "\u0024" (the "$") or "\u007b" (the "{").
_ESCAPED_TEMPLATE_RE: Final = re.compile(rb"\\u00(?:24|7[bB])")


def may_hold_templates(body: bytes) -> bool:
    """Whether a JSON ``body`` may hold a ``${...}`` template in one of its strings: one
    scan of the raw bytes, so a body without any (the common case) skips the per-field
    template walk. Never False for a body that holds one; may be True for one that does
    not (a ``${`` in a key, an escaped backslash before ``u0024``).

    >>> may_hold_templates(b'{"a": "x\\u0001y"}'), may_hold_templates(b'{"a": "\\u0024{b}"}')
    (False, True)
    """
    if b"${" in body:
        return True
    # memmem first: the regex costs ~20 µs on a 16 KB body, the byte search ~1 µs.
    return b"\\u" in body and _ESCAPED_TEMPLATE_RE.search(body) is not None


# Alternatives in priority order: escape, well-formed-looking token, stray "${".
_TOKEN_RE: Final = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
# The same alternatives with groups for findall(): (escape, inner); a stray "${" gives an
# empty inner, which _split() rejects like "${}".
_SCAN_RE: Final = re.compile(r"(\$\$\{)|\$\{([^{}]*)\}|\$\{")
_WHOLE_RE: Final = re.compile(r"\$\{([^{}]*)\}")


class Found(NamedTuple):
    """A template found in a value: where, and which operation it names.

    ``name`` is None for a ``$${`` escape (which still needs :func:`resolve` to unescape).
    ``path`` is the location under the scanned value (``body.data.owner``, ``items[2]``),
    prefixed with the ``path`` given to :func:`iter_templates`.
    """

    path: str
    name: str | None
    reference: str


def find_references(value: Any) -> set[str]:
    """The names of the operations referenced anywhere in ``value``.

    Raises :class:`InvalidRequestError` (``INVALID_REFERENCE``) for a malformed ``${``.

    >>> sorted(find_references({"a": "${x.body.id}", "b": ["/r/${y.status}", "$${z}"]}))
    ['x', 'y']
    """
    return {f.name for f in iter_templates(value) if f.name is not None}


def has_templates(value: Any) -> bool:
    """Whether any string in ``value`` contains ``${`` (a reference or a ``$${`` escape).

    Containers are checked by encoding them to JSON once and searching the bytes in C: far
    cheaper than a Python walk for the common case of data without references (``$`` and
    ``{`` are never escaped by JSON, so the test has no false negatives; a ``${`` in an
    object key is a false positive, which only costs a walk).
    """
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict | list):
        # msgspec rather than orjson: it also encodes ints beyond 64 bits.
        return b"${" in msgspec.json.encode(value)
    return False


def iter_templates(value: Any, path: str = "") -> list[Found]:
    """Every reference and ``$${`` escape in the string values of ``value``, in order.

    ``path`` prefixes the reported locations. Values without ``${`` are answered by
    :func:`has_templates` without a walk. Raises :class:`InvalidRequestError`
    (``INVALID_REFERENCE``, ``details["path"]`` = location) for a malformed ``${``.
    """
    found: list[Found] = []
    if has_templates(value):
        _walk(value, path, found)
    return found


def _walk(value: Any, path: str, found: list[Found]) -> None:
    # A plain recursive function, not nested generators; strings are tested inline so
    # plain strings cost no call and no path string.
    if isinstance(value, str):
        found.extend(_scan_string(value, path))
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, str):
            if "${" not in item:
                continue
        elif not isinstance(item, dict | list) or not item:
            continue
        if isinstance(key, int):
            _walk(item, f"{path}[{key}]", found)
        else:
            _walk(item, f"{path}.{key}" if path else str(key), found)


def _scan_string(text: str, path: str) -> list[Found]:
    found: list[Found] = []
    for escape, inner in _SCAN_RE.findall(text):
        if escape:
            found.append(Found(path, None, "$${"))
            continue
        parts = _split(inner)
        if parts is None:
            raise _malformed(text, path)
        found.append(Found(path, parts[0], inner))
    return found


def _split(inner: str) -> list[str] | None:
    parts = inner.split(".")
    if not NAME_RE.fullmatch(parts[0]) or not all(parts[1:]):
        return None
    return parts


def _malformed(text: str, path: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"malformed reference in {text!r}: write ${{name.path.to.field}}, "
        "or $${ for a literal ${",
        code="INVALID_REFERENCE",
        details={"path": path, "text": text},
    )


def resolve(value: Any, results: Mapping[str, Mapping[str, Any]]) -> Any:
    """Return ``value`` with every reference replaced and every ``$${`` unescaped.

    ``results`` maps an operation name to its result ``{"status": int, "body": Any}``; the
    reference path after the name starts at that mapping. New containers are built where
    values are walked (the input is not mutated); a whole-string reference returns the
    referenced object itself, not a copy.

    Raises :class:`ValidationError` (422 ``UNRESOLVED_REFERENCE``, ``details`` =
    ``{"reference", "path", "reason"}`` where ``path`` is the part of the reference that could
    not be followed), :class:`InvalidRequestError` (400 ``REFERENCE_NOT_SCALAR``) for an
    object or array embedded in a longer string, or (400 ``INVALID_REFERENCE``) for a
    malformed ``${``.

    >>> results = {"a": {"status": 200, "body": {"n": 7}}}
    >>> resolve({"n": "${a.body.n}", "s": "id-${a.body.n}"}, results)
    {'n': 7, 's': 'id-7'}
    """
    if isinstance(value, str):
        # The fast path: no regex for strings that cannot hold a template.
        return _resolve_string(value, results) if "${" in value else value
    if isinstance(value, dict):
        return {key: resolve(item, results) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, results) for item in value]
    return value


def _resolve_string(text: str, results: Mapping[str, Mapping[str, Any]]) -> Any:
    whole = _WHOLE_RE.fullmatch(text)
    if whole is not None:
        return _lookup(whole.group(1), text, results)

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        inner = match.group(1)
        if inner is None:
            raise _malformed(text, "")
        return _as_text(_lookup(inner, text, results), inner)

    return _TOKEN_RE.sub(substitute, text)


def _lookup(inner: str, text: str, results: Mapping[str, Mapping[str, Any]]) -> Any:
    parts = _split(inner)
    if parts is None:
        raise _malformed(text, "")
    name = parts[0]
    if name not in results:
        raise _unresolved(inner, name, f"operation {name!r} has no result")
    current: Any = results[name]
    for depth, segment in enumerate(parts[1:], start=2):
        if isinstance(current, Mapping):
            if segment in current:
                current = current[segment]
                continue
            reason = f"no key {segment!r}"
        elif isinstance(current, list):
            if segment.isascii() and segment.isdigit() and int(segment) < len(current):
                current = current[int(segment)]
                continue
            reason = f"no index {segment!r} in an array of length {len(current)}"
        else:
            reason = f"cannot look up {segment!r} in a {_json_type(current)}"
        raise _unresolved(inner, ".".join(parts[:depth]), reason)
    return current


def _unresolved(reference: str, path: str, reason: str) -> ValidationError:
    return ValidationError(
        f"reference ${{{reference}}} cannot be resolved: {reason} at {path}",
        code="UNRESOLVED_REFERENCE",
        details={"reference": reference, "path": path, "reason": reason},
    )


def _as_text(value: Any, reference: str) -> str:
    if isinstance(value, str):
        return value
    # bool before int: bool is an int subclass; JSON spells it true/false.
    if value is None or isinstance(value, bool | float):
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return str(value)  # str(), not orjson: ints beyond 64 bits stay exact
    raise InvalidRequestError(
        f"reference ${{{reference}}} is a {_json_type(value)} and cannot be embedded in a "
        "string: reference a scalar field, or make the whole string the reference",
        code="REFERENCE_NOT_SCALAR",
        details={"reference": reference, "type": _json_type(value)},
    )


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__
