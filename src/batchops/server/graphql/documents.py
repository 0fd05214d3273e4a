"""Parsed GraphQL documents, cached: the endpoint reads a document's root fields to
charge them (before anything runs) and the schema executes it, from one parse."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
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

__all__ = ["CACHED_DOCUMENT_CHARS", "is_cached", "parse_document", "root_fields"]

CACHED_DOCUMENT_CHARS: Final = 256 * 1024
"""Documents up to this long may be cached (parsed, and validated: see the schema); longer
ones are parsed and validated each time."""

_CACHED: Final = 256
_SEEN: Final = 4096

_documents: OrderedDict[tuple[str, int | None], DocumentNode] = OrderedDict()
_seen: OrderedDict[int, None] = OrderedDict()


def parse_document(query: str, max_tokens: int | None) -> DocumentNode:
    """``query`` parsed (raises GraphQLSyntaxError, past ``max_tokens`` tokens too). A
    document is never changed after parsing (graphql-core's executor and validators only
    read it), so a parsed one is shared.

    Kept only from its SECOND use, and the last 256 of those: a parsed document is ~65
    tracked objects per aliased field, and every full collection of the garbage
    collector walks all the cached ones — with 256 one-off 100-alias documents cached,
    parsing the next took 34 ms instead of 8 (measured; docs/graphql.md). A client that
    sends the same document again (variables, persisted queries) finds it; one that
    writes its ids into every document leaves nothing behind but a number."""
    key = (query, max_tokens)
    cached = _documents.get(key)
    if cached is not None:
        _documents.move_to_end(key)
        return cached
    document = parse(query, max_tokens=max_tokens)
    if len(query) <= CACHED_DOCUMENT_CHARS:
        digest = hash(key)
        if digest in _seen:
            _documents[key] = document
            if len(_documents) > _CACHED:
                _documents.popitem(last=False)
        else:
            _seen[digest] = None
            if len(_seen) > _SEEN:
                _seen.popitem(last=False)
    return document


def is_cached(query: str, max_tokens: int | None) -> bool:
    """Whether :func:`parse_document` keeps ``query``'s document (what is derived from a
    document may be kept as long: the fast path's plan)."""
    return (query, max_tokens) in _documents


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
