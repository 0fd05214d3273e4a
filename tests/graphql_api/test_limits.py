"""The GraphQL limits: depth, aliases, tokens and introspection, each configurable, each a
GraphQL error with its own ``extensions.code`` (400) before anything runs — never a 500.
Introspection is on by default."""

from __future__ import annotations

import pytest

from tests.graphql_api.conftest import gql
from tests.server.conftest import Service


def _code(answer: dict[str, object]) -> str:
    errors = answer["errors"]
    assert isinstance(errors, list)
    assert "data" not in answer
    code: str = errors[0]["extensions"]["code"]
    assert errors[0]["extensions"]["status"] == 400
    return code


@pytest.mark.limits(graphql_max_depth=2)
async def test_a_document_deeper_than_the_limit_is_refused(service: Service) -> None:
    deep = '{ search(collection: "p", query: "x") { results { record { id } } } }'
    answer = await gql(service.client, deep)
    assert _code(answer) == "QUERY_TOO_DEEP"
    assert answer["errors"][0]["extensions"]["details"] == {"limit": 2}


@pytest.mark.limits(graphql_max_depth=2)
async def test_a_document_at_the_depth_limit_runs(service: Service) -> None:
    answer = await gql(service.client, '{ list(collection: "p") { records { id } } }')
    assert answer == {"data": {"list": {"records": []}}}


@pytest.mark.limits(graphql_max_aliases=3)
@pytest.mark.parametrize("variables", [False, True], ids=["literals", "variables"])
async def test_more_aliases_than_the_limit_are_refused_on_either_path(
    service: Service, variables: bool
) -> None:
    args = "collection: $c" if variables else 'collection: "p"'
    fields = " ".join(f'a{i}: record({args}, id: "x") {{ id }}' for i in range(4))
    query = f"query($c: String!) {{ {fields} }}" if variables else f"{{ {fields} }}"
    answer = await gql(service.client, query, {"c": "p"} if variables else None)
    assert _code(answer) == "TOO_MANY_ALIASES"


@pytest.mark.limits(graphql_max_aliases=3)
async def test_aliases_up_to_the_limit_run(service: Service) -> None:
    fields = " ".join(f'a{i}: record(collection: "p", id: "x") {{ id }}' for i in range(3))
    answer = await gql(service.client, f"{{ {fields} }}")
    assert answer == {"data": {"a0": None, "a1": None, "a2": None}}


@pytest.mark.limits(graphql_max_tokens=50)
async def test_a_document_of_more_tokens_than_the_limit_is_refused(service: Service) -> None:
    fields = " ".join(f'a{i}: record(collection: "p", id: "x") {{ id }}' for i in range(10))
    answer = await gql(service.client, f"{{ {fields} }}")
    assert _code(answer) == "TOO_MANY_TOKENS"


async def test_a_document_that_does_not_parse_is_a_parse_error(service: Service) -> None:
    assert _code(await gql(service.client, "{ record(")) == "GRAPHQL_PARSE_FAILED"


async def test_introspection_answers_by_default(service: Service) -> None:
    answer = await gql(service.client, "{ __schema { mutationType { name } } }")
    assert answer == {"data": {"__schema": {"mutationType": {"name": "Mutation"}}}}


@pytest.mark.limits(graphql_introspection=False)
async def test_introspection_can_be_turned_off(service: Service) -> None:
    answer = await gql(service.client, "{ __schema { queryType { name } } }")
    assert _code(answer) == "INTROSPECTION_DISABLED"
    typename = await gql(service.client, "{ __typename }")
    assert typename == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    ("query", "variables", "path"),
    [
        (
            'query($l: Int) { list(collection: "p", limit: $l) { records { id } } }',
            {"l": "ten"},
            "limit",
        ),
        (
            'query($l: Int) { list(collection: "p", limit: $l) { records { id } } }',
            {"l": 2**40},
            "limit",
        ),
        ('query($i: ID!) { record(collection: "p", id: $i) { id } }', {}, "id"),
        ('query($i: ID!) { record(collection: "p", id: $i) { id } }', {"i": {"a": 1}}, "id"),
        (
            'query($d: Boolean) { record(collection: "p", id: "x", includeDeleted: $d) { id } }',
            {"d": "yes"},
            "includeDeleted",
        ),
    ],
    ids=[
        "a string for an Int",
        "an Int past 32 bits",
        "a required variable missing",
        "an object for an ID",
        "a string for a Boolean",
    ],
)
async def test_a_variable_of_the_wrong_type_is_a_validation_error_naming_its_argument(
    service: Service, query: str, variables: dict[str, object], path: str
) -> None:
    answer = await gql(service.client, query, variables)
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert error["extensions"]["status"] == 422
    assert error["extensions"]["details"]["path"] == path
    assert "data" not in answer
