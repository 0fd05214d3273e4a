"""Parsed GraphQL documents, cached: the endpoint reads a document's root fields to
charge them (before anything runs) and the schema executes it, from one parse."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from graphql import DocumentNode, parse

__all__ = ["CACHED_DOCUMENT_CHARS", "parse_document"]

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
