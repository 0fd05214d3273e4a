"""Record mutations read their arguments and ``@skip``/``@include`` from the operation's
variables (batchops.server.graphql.mutations), on both backends.

A record mutation reads the arguments of every field of its run with graphql-core's
``get_argument_values`` and ``get_directive_values``, which read variables as graphql-core's
``VariableValues``; Strawberry hands a resolver the coerced dict alone. Without the
conversion every record mutation passed a variable answered ``INTERNAL_ERROR``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.server.conftest import Service


async def graphql(service: Service, query: str, variables: dict[str, Any]) -> Any:
    response = await service.client.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": variables}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_record_mutation_takes_its_arguments_from_variables(service: Service) -> None:
    answer = await graphql(
        service,
        "mutation($collection: String!, $id: ID!, $data: JSON!, $ifVersion: Int) {"
        " a: createRecord(collection: $collection, id: $id, data: $data) { id version }"
        " b: updateRecord(collection: $collection, id: $id, data: {team: null},"
        " ifVersion: $ifVersion) { data version } }",
        {
            "collection": "people",
            "id": "p1",
            "data": {"name": "Ada", "team": "core"},
            "ifVersion": 1,
        },
    )
    assert answer == {
        "data": {"a": {"id": "p1", "version": 1}, "b": {"data": {"name": "Ada"}, "version": 2}}
    }


async def test_a_variable_inside_a_json_literal_is_its_value(service: Service) -> None:
    answer = await graphql(
        service,
        'mutation($name: String) { r: createRecord(collection: "people", id: "p1",'
        " data: {name: $name, tags: [$name]}) { data } }",
        {"name": "Ada"},
    )
    assert answer == {"data": {"r": {"data": {"name": "Ada", "tags": ["Ada"]}}}}


async def test_a_record_mutation_skipped_by_a_variable_is_not_run(service: Service) -> None:
    answer = await graphql(
        service,
        "mutation($skip: Boolean!) {"
        ' a: createRecord(collection: "people", id: "p1", data: {}) @skip(if: $skip) { id }'
        ' b: createRecord(collection: "people", id: "p2", data: {}) { id } }',
        {"skip": True},
    )
    assert answer == {"data": {"b": {"id": "p2"}}}
    read = await service.client.get("/v1/collections/people/records/p1")
    assert read.status_code == 404
