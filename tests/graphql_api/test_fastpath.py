"""The aliased-records fast path answers exactly what graphql-core's full path answers,
and takes only documents of its shape (batchops.server.graphql.fastpath)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphql import parse, validate

from batchops.server.graphql.fastpath import simple_operation
from batchops.server.graphql.schema import build_schema
from batchops.server.settings import Settings
from tests.graphql_api.conftest import gql, seed
from tests.server.conftest import Service

READS = [
    '{ a: record(collection: "people", id: "p1") { id collection data version createdAt '
    'updatedAt deletedAt __typename } b: record(collection: "people", id: "nope") { id } }',
    '{ a: record(collection: "people", id: "bad!id") { id } b: record(collection: "-x", '
    'id: "p1") { id } c: record(collection: "people", id: "p2") { k: id v: version id } }',
    '{ record(collection: "people", id: 7) { id } }',
    'query Named { x: record(collection: "people", id: "p2") { data } }',
]

MUTATIONS = [
    'mutation { a: createRecord(collection: "{c}", id: "n1", data: {x: [1, 2.5, "s", null, '
    'true]}) { id data version __typename } b: createRecord(collection: "{c}", id: "p1", '
    'data: {}) { id } c: updateRecord(collection: "{c}", id: "p2", data: {y: 1}, '
    'ifVersion: 9) { id } d: deleteRecord(collection: "{c}", id: "p2", hard: true) '
    '{ id deleted hard version collection } e: restoreRecord(collection: "{c}", id: "p1") '
    "{ id } }",
    'mutation @atomic { a: replaceRecord(collection: "{c}", id: "p1", data: {z: 1}) '
    '{ data version } b: updateRecord(collection: "{c}", id: "missing", data: {}) { id } }',
    'mutation @atomic { a: replaceRecord(collection: "{c}", id: "p1", data: {z: 1}) '
    '{ data version } b: deleteRecord(collection: "{c}", id: "p2") { version } }',
    'mutation { a: updateRecord(collection: "{c}", id: "p1", data: {n: null, m: {deep: 1}}) '
    '{ data } b: createRecord(collection: "{c}", id: "bad!", data: {}) { id } }',
]


async def _both(service: Service, query: str) -> tuple[dict[str, Any], dict[str, Any]]:
    state = service.app.state
    state.graphql_fast_path = True
    fast = await gql(service.client, query.replace("{c}", "fast"))
    state.graphql_fast_path = False
    try:
        full = await gql(service.client, query.replace("{c}", "full"))
    finally:
        state.graphql_fast_path = True
    return fast, full


@pytest.mark.parametrize("query", READS, ids=[f"reads {i}" for i in range(len(READS))])
async def test_the_fast_path_reads_exactly_as_the_full_path(service: Service, query: str) -> None:
    await seed(service, "people", {"p1": {"a": 1}, "p2": {"b": [1, {"c": None}]}})
    fast, full = await _both(service, query)
    assert fast == full


VARIABLE_READS = {
    "ids as variables": {"a": "p1", "b": "nope", "c": 7},
    "a bad id as a variable": {"a": "bad!id", "b": "p2", "c": "p1"},
    "a variable of the wrong type": {"a": {"x": 1}, "b": "p2", "c": "p1"},
    "a required variable missing": {"a": "p1", "c": "p1"},
    "a null for a non-null variable": {"a": "p1", "b": None, "c": "p1"},
}


@pytest.mark.parametrize("values", list(VARIABLE_READS.values()), ids=list(VARIABLE_READS))
async def test_the_fast_path_takes_variables_exactly_as_the_full_path(
    service: Service, values: dict[str, Any]
) -> None:
    await seed(service, "people", {"p1": {"a": 1}, "p2": {"b": 2}})
    query = (
        "query($c: String!, $a: ID!, $b: ID!, $d: ID!) { "
        "x: record(collection: $c, id: $a) { id data } "
        "y: record(collection: $c, id: $b) { id } "
        'z: record(collection: "people", id: $d) { version } }'
    )
    variables = {"c": "people", "a": values.get("a")}
    if "b" in values:
        variables["b"] = values["b"]
    variables["d"] = values.get("c")
    assert simple_operation(parse(query), None, 1000, 12) is not None  # the fast path's
    state = service.app.state
    fast = await gql(service.client, query, variables)
    state.graphql_fast_path = False
    try:
        full = await gql(service.client, query, variables)
    finally:
        state.graphql_fast_path = True
    assert fast == full


@pytest.mark.parametrize("query", MUTATIONS, ids=[f"mutations {i}" for i in range(len(MUTATIONS))])
async def test_the_fast_path_writes_exactly_as_the_full_path(service: Service, query: str) -> None:
    for collection in ("fast", "full"):
        await seed(service, collection, {"p1": {"a": 1}, "p2": {"b": 2}})
    fast, full = await _both(service, query)
    # The same answer but for the collection's name ("fast" and "full": same length, so
    # the locations agree too).
    assert json.dumps(fast).replace('"fast', '"C').replace("'fast'", "'C'") == json.dumps(
        full
    ).replace('"full', '"C').replace("'full'", "'C'")
    pages = [
        (await service.client.get(f"/v1/collections/{c}/records")).json()["records"]
        for c in ("fast", "full")
    ]
    assert [(r["id"], r["data"], r["version"]) for r in pages[0]] == [
        (r["id"], r["data"], r["version"]) for r in pages[1]
    ]


SETTINGS = Settings()
SCHEMA = build_schema(SETTINGS)

TAKEN = [
    '{ record(collection: "p", id: "x") { id } }',
    "query($c: String!, $i: ID!) { record(collection: $c, id: $i) { id } }",
    'mutation($d: JSON!, $v: Int, $h: Boolean!) { a: updateRecord(collection: "p", id: "x", '
    'data: $d, ifVersion: $v) { id } b: deleteRecord(collection: "p", id: "y", hard: $h) '
    "{ id } }",
    '{ a: record(collection: "p", id: "x") { id } b: record(collection: "p", id: 12) { data } }',
    'mutation { createRecord(collection: "p", data: {a: [1, {b: null}]}) { id __typename } }',
    'mutation M @atomic { a: deleteRecord(collection: "p", id: "x", hard: false, '
    "ifVersion: 2147483647) { id deleted } }",
    'mutation { updateRecord(collection: "p", id: "x", data: {}, ifVersion: null) { id } }',
]

NOT_TAKEN = {
    "a variable with a default": 'query($c: String! = "p") { record(collection: $c, '
    'id: "x") { id } }',
    "a nullable variable for a required argument": "query($c: String) { record(collection: "
    '$c, id: "x") { id } }',
    "a variable of another type": 'query($c: ID!) { record(collection: $c, id: "x") { id } }',
    "a variable declared and not used": 'query($c: String!) { record(collection: "p", '
    'id: "x") { id } }',
    "a variable not declared": '{ record(collection: $c, id: "x") { id } }',
    "a list variable": 'query($c: [String!]!) { record(collection: $c, id: "x") { id } }',
    "a variable inside a JSON literal": 'mutation($n: Int) { createRecord(collection: "p", '
    "data: {n: $n}) { id } }",
    "a fragment": '{ record(collection: "p", id: "x") { ...F } } fragment F on Record { id }',
    "an inline fragment": '{ record(collection: "p", id: "x") { ... on Record { id } } }',
    "a directive on a field": '{ record(collection: "p", id: "x") @skip(if: false) { id } }',
    "a directive on the query": 'query @atomic { record(collection: "p", id: "x") { id } }',
    "two root fields under one key": '{ a: record(collection: "p", id: "x") { id } '
    'a: record(collection: "p", id: "y") { id } }',
    "one key for two sub-fields": '{ record(collection: "p", id: "x") { a: id a: data } }',
    "an unknown sub-field": '{ record(collection: "p", id: "x") { nope } }',
    "an Int past 32 bits": 'mutation { restoreRecord(collection: "p", id: "x", '
    "ifVersion: 2147483648) { id } }",
    "a null for a required argument": '{ record(collection: null, id: "x") { id } }',
    "a missing required argument": '{ record(collection: "p") { id } }',
    "an unknown argument": '{ record(collection: "p", id: "x", extra: 1) { id } }',
    "a string where an Int goes": 'mutation { deleteRecord(collection: "p", id: "x", '
    'ifVersion: "1") { id } }',
    "a sub-selection on a scalar": '{ record(collection: "p", id: "x") { data { a } } }',
    "no sub-selection": 'mutation { deleteRecord(collection: "p", id: "x") }',
    "includeDeleted": '{ record(collection: "p", id: "x", includeDeleted: true) { id } }',
    "another query field": '{ a: record(collection: "p", id: "x") { id } '
    'b: list(collection: "p") { nextCursor } }',
    "a bulk mutation": 'mutation { a: createRecord(collection: "p", data: {}) { id } '
    'b: bulkUpdate(collection: "p", filter: {}, update: {}) { ids } }',
    "a read in a mutation": 'mutation { record(collection: "p", id: "x") { id } }',
    "two operations": '{ a: record(collection: "p", id: "x") { id } } '
    '{ b: record(collection: "p", id: "x") { id } }',
    "introspection": '{ __schema { queryType { name } } record(collection: "p", id: "x") { id } }',
}


@pytest.mark.parametrize("query", TAKEN)
def test_a_document_of_the_shape_is_taken_and_graphql_finds_it_valid(query: str) -> None:
    document = parse(query)
    assert simple_operation(document, None, 1000, 12) is not None
    assert validate(SCHEMA._schema, document) == []


@pytest.mark.parametrize("query", list(NOT_TAKEN.values()), ids=list(NOT_TAKEN))
def test_a_document_outside_the_shape_takes_the_full_path(query: str) -> None:
    assert simple_operation(parse(query), None, 1000, 12) is None


def test_an_operation_name_that_is_not_the_documents_takes_the_full_path() -> None:
    document = parse('query A { record(collection: "p", id: "x") { id } }')
    assert simple_operation(document, "A", 1000, 12) is not None
    assert simple_operation(document, "B", 1000, 12) is None


def test_more_aliases_than_the_limit_take_the_full_path_which_refuses_them() -> None:
    document = parse('{ a: record(collection: "p", id: "x") { b: id c: data } }')
    assert simple_operation(document, None, 3, 12) is not None
    assert simple_operation(document, None, 2, 12) is None


@pytest.mark.parametrize(
    "variables",
    [
        {"d": {"n": "${a.body.id}", "deep": [1, {"x": None}]}, "v": 1, "h": True},
        {"d": {"n": 2**70}, "v": 1, "h": False},
        {"d": {}, "v": "one", "h": True},
    ],
    ids=["values", "an integer past 64 bits in data", "a string for an Int"],
)
async def test_the_fast_path_writes_with_variables_exactly_as_the_full_path(
    service: Service, variables: dict[str, Any]
) -> None:
    query = (
        "mutation($d: JSON!, $v: Int, $h: Boolean!) { "
        'a: updateRecord(collection: "{c}", id: "p1", data: $d, ifVersion: $v) { data version } '
        'b: deleteRecord(collection: "{c}", id: "p2", hard: $h) { hard version } }'
    )
    assert simple_operation(parse(query), None, 1000, 12) is not None
    answers = []
    for collection, fast in (("fast", True), ("full", False)):
        await seed(service, collection, {"p1": {"a": 1}, "p2": {"b": 2}})
        service.app.state.graphql_fast_path = fast
        try:
            body = {"query": query.replace("{c}", collection), "variables": variables}
            response = await service.client.post(
                "/graphql", content=json.dumps(body), headers={"Content-Type": "application/json"}
            )
        finally:
            service.app.state.graphql_fast_path = True
        answers.append(response.text.replace(collection, "C"))
    assert answers[0] == answers[1]


COERCIONS = [
    ({"s": "x", "i": "id", "n": 5, "b": True, "j": {"a": [1, None]}}, True),
    ({"s": "x", "i": 42, "n": -(2**31), "b": False, "j": "text"}, True),
    ({"s": "x", "i": "id", "j": [1]}, True),  # nullable ones missing
    ({"s": "x", "i": "id", "n": None, "b": None, "j": 2**70}, True),  # nullable ones null
    ({"s": "x", "i": "id", "n": 2.0, "j": 1}, False),  # a whole float: graphql-core's call
    ({"s": "x", "i": 1.5, "j": 1}, False),
    ({"s": 3, "i": "id", "j": 1}, False),
    ({"s": "x", "i": True, "j": 1}, False),
    ({"s": "x", "i": "id", "n": 2**31, "j": 1}, False),
    ({"s": "x", "i": "id", "n": True, "j": 1}, False),
    ({"s": "x", "i": "id", "b": "true", "j": 1}, False),
    ({"i": "id", "j": 1}, False),  # a non-null one missing
    ({"s": None, "i": "id", "j": 1}, False),  # a non-null one null
    ({"s": "x", "i": "id", "j": None}, False),  # a non-null JSON null
]


@pytest.mark.parametrize(("given", "taken"), COERCIONS, ids=[str(i) for i in range(len(COERCIONS))])
def test_the_fast_coercion_of_variables_is_graphql_cores_or_leaves_it_to_graphql_core(
    given: dict[str, Any], taken: bool
) -> None:
    from graphql import get_variable_values

    from batchops.server.graphql.fastpath import _coerced

    query = (
        "mutation($s: String!, $i: ID!, $n: Int, $b: Boolean, $j: JSON!) { "
        "deleteRecord(collection: $s, id: $i, ifVersion: $n, hard: $b) { id } "
        'createRecord(collection: "p", data: $j) { id } }'
    )
    plan = simple_operation(parse(query), None, 1000, 12)
    assert plan is not None
    ours = _coerced(plan.variables, given)
    core = get_variable_values(SCHEMA._schema, plan.operation.variable_definitions or (), given)
    assert (ours is not None) is taken
    if ours is not None:
        assert not isinstance(core, list), core
        assert ours.coerced == core.coerced
