"""Parsed GraphQL documents, cached: the endpoint reads a document's root fields to
charge them (before anything runs) and the schema executes it, from one parse."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)

__all__ = ["CACHED_DOCUMENT_CHARS", "parse_document", "root_fields"]

CACHED_DOCUMENT_CHARS: Final = 256 * 1024
"""Documents up to this long are cached (parsed, and validated: see the schema); longer
ones are parsed and validated each time, so the caches' memory stays bounded (256 entries
each) whatever clients send."""


def parse_document(query: str, max_tokens: int | None) -> DocumentNode:
    """``query`` parsed (raises GraphQLSyntaxError, past ``max_tokens`` tokens too); the
    last 256 documents of at most :data:`CACHED_DOCUMENT_CHARS` are kept. A document is
    never changed after parsing (graphql-core's executor and validators only read it)."""
    if len(query) > CACHED_DOCUMENT_CHARS:
        return parse(query, max_tokens=max_tokens)
    return _cached_parse(query, max_tokens)


@lru_cache(maxsize=256)
def _cached_parse(query: str, max_tokens: int | None) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def root_fields(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    included: Callable[[Any], bool],
) -> list[tuple[str, FieldNode]]:
    """The operation's root fields as GraphQL runs them: (response key, node) in document
    order, fragments expanded (each once), a response key once; a selection that
    ``included`` refuses (``@skip``/``@include``) with what it holds left out. One walk
    for the endpoint (what an operation is charged, before it runs) and the mutation runs
    (which fields a batch takes)."""
    found: dict[str, FieldNode] = {}
    visited: set[str] = set()

    def walk(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if not included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                found.setdefault(key, selection)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if name not in visited and fragment is not None:
                    visited.add(name)
                    walk(fragment.selection_set)

    walk(operation.selection_set)
    return list(found.items())
