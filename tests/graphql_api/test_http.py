"""GraphQL over HTTP: one operation or an array run one after another, the batch limit on
arrays, the error envelope for whatever is not a GraphQL request, the key, and the
operations budget charged one operation per root field."""

from __future__ import annotations

import gzip

import httpx
import pytest

from tests.graphql_api.conftest import gql, seed
from tests.server.conftest import Service

READ = '{ record(collection: "people", id: "p1") { id version } }'


def _envelope(response: httpx.Response, status: int, code: str, path: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if path is not None:
        assert error["details"]["path"] == path


async def test_an_array_of_operations_is_answered_with_an_array_in_order(
    service: Service,
) -> None:
    await seed(service, "people", {"p1": {}})
    response = await service.client.post(
        "/graphql",
        json=[
            {"query": READ},
            {"query": 'query Two { two: record(collection: "people", id: "zz") { id } }'},
            {"query": "{ nope }"},
        ],
    )
    assert response.status_code == 200
    first, second, third = response.json()
    assert first == {"data": {"record": {"id": "p1", "version": 1}}}
    assert second == {"data": {"two": None}}
    assert third["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "data" not in third


async def test_the_operations_of_an_array_run_one_after_another(service: Service) -> None:
    writes = [
        {
            "query": 'mutation($v: Int!) { updateRecord(collection: "people", id: "p1", '
            "data: {step: $v}, ifVersion: $v) { version } }",
            "variables": {"v": v},
        }
        for v in range(1, 6)
    ]
    await seed(service, "people", {"p1": {}})
    response = await service.client.post("/graphql", json=[*writes, {"query": READ}])
    answers = response.json()
    # Each update expects the version the previous one left: interleaved, some would fail.
    assert [a["data"]["updateRecord"]["version"] for a in answers[:5]] == [2, 3, 4, 5, 6]
    assert answers[5]["data"]["record"]["version"] == 6


@pytest.mark.limits(max_batch_operations=3)
async def test_an_array_over_the_batch_limit_is_413_and_runs_nothing(service: Service) -> None:
    create = 'mutation { createRecord(collection: "people", data: {}) { id } }'
    response = await service.client.post("/graphql", json=[{"query": create}] * 4)
    _envelope(response, 413, "BATCH_TOO_LARGE")
    assert response.json()["error"]["details"] == {"limit": 3, "actual": 4, "unit": "operations"}
    page = await service.client.get("/v1/collections/people/records")
    assert page.json()["records"] == []


async def test_an_empty_array_is_400(service: Service) -> None:
    _envelope(await service.client.post("/graphql", json=[]), 400, "INVALID_REQUEST", "")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"variables": {}}, "query"),
        ({"query": ""}, "query"),
        ({"query": 7}, "query"),
        ({"query": READ, "variables": [1]}, "variables"),
        ({"query": READ, "operationName": 3}, "operationName"),
        ({"query": READ, "extra": 1}, "extra"),
        ([{"query": READ}, "not an object"], "[1]"),
        ([{"query": READ}, {"query": READ, "variables": 3}], "[1].variables"),
        ("a string", ""),
    ],
    ids=[
        "no query",
        "an empty query",
        "a query that is not a string",
        "variables that are not an object",
        "an operation name that is not a string",
        "an unknown member",
        "an array item that is not an object",
        "an array item with bad variables",
        "a body that is neither an object nor an array",
    ],
)
async def test_a_body_that_is_not_a_graphql_request_is_400_naming_the_fault(
    service: Service, body: object, path: str
) -> None:
    _envelope(await service.client.post("/graphql", json=body), 400, "INVALID_REQUEST", path)


async def test_a_body_that_is_not_json_is_400(service: Service) -> None:
    response = await service.client.post(
        "/graphql", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    _envelope(response, 400, "INVALID_REQUEST")


async def test_a_body_that_is_not_declared_json_is_415(service: Service) -> None:
    response = await service.client.post(
        "/graphql", content=READ.encode(), headers={"Content-Type": "application/graphql"}
    )
    _envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.limits(max_batch_bytes=2048)
async def test_a_body_over_the_batch_byte_limit_is_413(service: Service) -> None:
    query = "{ " + " ".join(f"a{i}: __typename" for i in range(400)) + " }"
    response = await service.client.post("/graphql", json={"query": query})
    _envelope(response, 413, "BATCH_TOO_LARGE")


async def test_a_gzip_body_is_read(service: Service) -> None:
    await seed(service, "people", {"p1": {}})
    response = await service.client.post(
        "/graphql",
        content=gzip.compress(
            b'{"query": "{ record(collection: \\"people\\", id: \\"p1\\") { id } }"}'
        ),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.json() == {"data": {"record": {"id": "p1"}}}


async def test_without_a_key_it_is_401_and_runs_nothing(service: Service) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app), base_url="http://test"
    ) as anonymous:
        response = await anonymous.post(
            "/graphql",
            json={"query": 'mutation { createRecord(collection: "p", data: {}) { id } }'},
        )
    _envelope(response, 401, "MISSING_API_KEY")
    page = await service.client.get("/v1/collections/p/records")
    assert page.json()["records"] == []


async def test_a_get_runs_a_query(service: Service) -> None:
    await seed(service, "people", {"p1": {}})
    response = await service.client.get(
        "/graphql",
        params={
            "query": 'query($id: ID!) { record(collection: "people", id: $id) { id } }',
            "variables": '{"id": "p1"}',
        },
    )
    assert response.json() == {"data": {"record": {"id": "p1"}}}


async def test_a_get_never_runs_a_mutation(service: Service) -> None:
    response = await service.client.get(
        "/graphql", params={"query": 'mutation { createRecord(collection: "p", data: {}) { id } }'}
    )
    _envelope(response, 405, "METHOD_NOT_ALLOWED")
    page = await service.client.get("/v1/collections/p/records")
    assert page.json()["records"] == []


async def test_a_browser_gets_graphiql_without_a_key(service: Service) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app), base_url="http://test"
    ) as browser:
        response = await browser.get("/graphql", headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/graphql/static/graphiql.min.js" in response.text


async def test_several_operations_and_no_operation_name_is_an_error_not_a_500(
    service: Service,
) -> None:
    answer = await gql(service.client, "query A { __typename } query B { __typename }")
    assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    named = await gql(
        service.client, "query A { a: __typename } query B { b: __typename }", operationName="B"
    )
    assert named == {"data": {"b": "Query"}}


async def test_the_request_budget_headers_come_back(service: Service) -> None:
    response = await service.client.post("/graphql", json={"query": READ})
    assert "RateLimit" in response.headers
    assert '"operations"' in response.headers["RateLimit-Policy"]


@pytest.mark.limits(rate_limit_operations_per_minute=10)
async def test_each_root_field_costs_one_operation_aliases_included(service: Service) -> None:
    six = (
        "{ "
        + " ".join(f'a{i}: record(collection: "p", id: "x{i}") {{ id }}' for i in range(6))
        + " }"
    )
    first = await service.client.post("/graphql", json={"query": six})
    assert first.status_code == 200
    second = await service.client.post("/graphql", json={"query": six})
    _envelope(second, 429, "RATE_LIMITED")
    assert "Retry-After" in second.headers


@pytest.mark.limits(rate_limit_operations_per_minute=10)
async def test_an_array_is_charged_for_every_root_field_of_every_operation_before_any_runs(
    service: Service,
) -> None:
    create = (
        'mutation { a: createRecord(collection: "p", data: {}) { id } '
        'b: createRecord(collection: "p", data: {}) { id } }'
    )
    response = await service.client.post("/graphql", json=[{"query": create}] * 6)
    _envelope(response, 429, "RATE_LIMITED")
    page = await service.client.get("/v1/collections/p/records")
    assert page.json()["records"] == []


@pytest.mark.limits(rate_limit_operations_per_minute=10)
async def test_skipped_fields_and_typename_cost_nothing(service: Service) -> None:
    query = (
        "query($no: Boolean!) { "
        + " ".join(
            f'a{i}: record(collection: "p", id: "x{i}") @include(if: $no) {{ id }}'
            for i in range(20)
        )
        + " __typename }"
    )
    response = await service.client.post(
        "/graphql", json={"query": query, "variables": {"no": False}}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.limits(rate_limit_operations_per_minute=10)
async def test_a_batch_field_is_charged_its_operations_when_it_runs(service: Service) -> None:
    operations = ", ".join('{type: "create", collection: "p", data: {}}' for _ in range(12))
    answer = await gql(
        service.client, f"mutation {{ batch(operations: [{operations}]) {{ status }} }}"
    )
    assert answer["data"] == {"batch": None}
    assert answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    page = await service.client.get("/v1/collections/p/records")
    assert page.json()["records"] == []


async def test_another_method_is_one_405_naming_both(service: Service) -> None:
    response = await service.client.put("/graphql", json={"query": READ})
    _envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert {"GET", "POST"} <= set(response.headers["Allow"].replace(" ", "").split(","))


async def test_a_get_with_empty_variables_and_operation_name_runs_the_query(
    service: Service,
) -> None:
    response = await service.client.get(
        "/graphql", params={"query": "{ __typename }", "variables": "", "operationName": ""}
    )
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_a_get_whose_variables_are_not_json_is_400_naming_them(service: Service) -> None:
    response = await service.client.get(
        "/graphql", params={"query": "{ __typename }", "variables": "{nope"}
    )
    _envelope(response, 400, "INVALID_REQUEST", "variables")
