"""Typed-dialect operation builders, and what the splitter needs to know about an op.

The SDK speaks the *typed* dialect of ``POST /v1/batch`` (docs/batch.md); users may pass
either dialect to ``client.batch()``. This module is pure: it builds wire dicts and reads
an op's name, its references and its atomicity group without any I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["op_links", "op_name", "typed_op"]

# `${name.` or `${name}` not preceded by `$` (`$${` is the escape for a literal `${`).
_REFERENCE = re.compile(r"(?<!\$)\$\{([^.}\s${]+)")


def typed_op(kind: str, collection: str, **fields: Any) -> dict[str, Any]:
    """A typed-dialect operation, leaving out fields that are ``None``.

    >>> typed_op("read", "people", id="r1", data=None)
    {'type': 'read', 'collection': 'people', 'id': 'r1'}
    """
    op: dict[str, Any] = {"type": kind, "collection": collection}
    op.update({k: v for k, v in fields.items() if v is not None})
    return op


def op_name(op: Mapping[str, Any]) -> str | None:
    """The name other operations use for ``op``: REST ``id``, typed ``ref``."""
    name = op.get("id") if "method" in op else op.get("ref")
    return name if isinstance(name, str) else None


def op_links(op: Mapping[str, Any], encoded: bytes) -> tuple[frozenset[str], str | None]:
    """The names ``op`` needs in its own request (``depends_on`` + references), and its
    ``atomicity_group``.

    ``encoded`` is the op's JSON: most ops carry no ``${`` at all, and checking the bytes
    once is much cheaper than walking every string.
    """
    names: set[str] = set()
    depends = op.get("depends_on")
    if isinstance(depends, list):
        names.update(d for d in depends if isinstance(d, str))
    if b"${" in encoded:
        _collect_references(op, names)
    group = op.get("atomicity_group")
    return frozenset(names), group if isinstance(group, str) else None


def _collect_references(value: Any, names: set[str]) -> None:
    # Object keys are never references (docs/batch.md), only values are walked.
    if isinstance(value, str):
        names.update(_REFERENCE.findall(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect_references(item, names)
    elif isinstance(value, list):
        for item in value:
            _collect_references(item, names)
