"""The schema as published: docs/schema.graphql is the server's schema, and every root
field is nullable (a field that fails is null with its error; its neighbours keep their
data)."""

from __future__ import annotations

from pathlib import Path

from graphql import GraphQLNonNull

from batchops.server.graphql.schema import build_schema, schema_sdl
from batchops.server.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.graphql"


def test_docs_schema_graphql_is_the_servers_schema() -> None:
    assert DOC.read_text() == schema_sdl(), (
        'docs/schema.graphql is stale: regenerate it with python -c "from '
        "batchops.server.graphql.schema import schema_sdl; print(schema_sdl(), end='')\" "
        "> docs/schema.graphql"
    )


def test_every_root_field_is_nullable() -> None:
    schema = build_schema(Settings())._schema
    assert schema.query_type is not None
    assert schema.mutation_type is not None
    roots = {**schema.query_type.fields, **schema.mutation_type.fields}
    assert (
        sorted(name for name, field in roots.items() if isinstance(field.type, GraphQLNonNull))
        == []
    )


def test_the_atomic_directive_is_declared_for_mutations() -> None:
    schema = build_schema(Settings())._schema
    atomic = schema.get_directive("atomic")
    assert atomic is not None
    assert [location.name for location in atomic.locations] == ["MUTATION"]
