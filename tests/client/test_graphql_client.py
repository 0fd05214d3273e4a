"""``client.graphql()`` / ``graphql_batch()`` against a scripted server (POST /graphql).

The scripted server (tests/client/scripted_server.py) stands in for the server's
``/graphql``: these tests pin the SDK's half of the contract — the exact bodies sent, how
answers are read, which HTTP failures raise what, and when a request is sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from batchops import (
    APIError,
    AuthenticationError,
    BatchTooLargeError,
    ConnectionFailedError,
    GraphQLResponseError,
    InternalServerError,
    RateLimitedError,
    RequestTimeoutError,
    RetryPolicy,
    ServiceUnavailableError,
)
from batchops.client import AsyncClient, Client, GraphQLError, GraphQLRequest, GraphQLResponse
from batchops.client._graphql import is_query_only, may_send_again
from tests.client.conftest import free_port
from tests.client.scripted_server import Answer, ScriptedServer

KEY = "bo_test_key"
FAST_RETRY = RetryPolicy(attempts=4, initial_backoff=0.01, max_backoff=0.05, jitter=False)

PERSON = "query Person($id: ID!) { person(id: $id) { name } }"
CREATE = 'mutation { createPerson(data: {name: "Ada"}) { id } }'
PEOPLE = "{ people { name } }"

OK = Answer(body={"data": {"people": [{"name": "Ada"}]}})
RATE_LIMITED = Answer(
    429,
    {"error": {"code": "RATE_LIMITED", "message": "slow down", "details": {}}},
    {"retry-after": "0"},
)
DROP = Answer(drop=True)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    """A scripted /graphql; each test sets ``server.script``."""
    s = ScriptedServer([OK])
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def client_of(server: ScriptedServer, **options: Any) -> AsyncClient:
    options.setdefault("retry", FAST_RETRY)
    return AsyncClient(server.url, KEY, **options)


# -- what is sent ---------------------------------------------------------------------------


async def test_a_request_is_one_post_to_graphql_with_query_variables_and_operation_name(
    server: ScriptedServer,
) -> None:
    async with client_of(server) as client:
        await client.graphql(PERSON, {"id": "ada"}, operation_name="Person")

    [request] = server.seen
    assert (request.method, request.path) == ("POST", "/graphql")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert server.bodies() == [
        {"query": PERSON, "variables": {"id": "ada"}, "operationName": "Person"}
    ]


async def test_a_request_without_variables_or_operation_name_sends_the_query_alone(
    server: ScriptedServer,
) -> None:
    async with client_of(server) as client:
        await client.graphql(PEOPLE)

    assert server.bodies() == [{"query": PEOPLE}]


async def test_a_batch_is_one_post_of_a_json_array_in_request_order(
    server: ScriptedServer,
) -> None:
    server.script = [Answer(body=[{"data": {"people": []}}, {"data": {"person": None}}])]
    async with client_of(server) as client:
        await client.graphql_batch([PEOPLE, GraphQLRequest(PERSON, {"id": "ada"}, "Person")])

    assert server.bodies() == [
        [
            {"query": PEOPLE},
            {"query": PERSON, "variables": {"id": "ada"}, "operationName": "Person"},
        ]
    ]


async def test_a_batch_of_nothing_sends_nothing_and_answers_nothing(
    server: ScriptedServer,
) -> None:
    async with client_of(server) as client:
        answers = await client.graphql_batch([])

    assert answers == []
    assert server.seen == []


# -- how answers are read -------------------------------------------------------------------


async def test_a_batch_answers_one_response_per_request_in_order(
    server: ScriptedServer,
) -> None:
    server.script = [Answer(body=[{"data": {"n": 1}}, {"data": {"n": 2}}, {"data": {"n": 3}}])]
    async with client_of(server) as client:
        answers = await client.graphql_batch([PEOPLE, PEOPLE, PEOPLE])

    assert [a.data for a in answers] == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_partial_data_is_kept_alongside_the_errors(server: ScriptedServer) -> None:
    server.script = [
        Answer(
            body={
                "data": {"ada": {"name": "Ada"}, "bo": None},
                "errors": [{"message": "record 'bo' not found", "path": ["bo"]}],
            }
        )
    ]
    async with client_of(server) as client:
        answer = await client.graphql("{ ada: person(id: 1) { name } bo: person(id: 2) { name } }")

    assert answer.data == {"ada": {"name": "Ada"}, "bo": None}
    assert [e.message for e in answer.errors] == ["record 'bo' not found"]
    assert answer.ok is False


async def test_an_errors_extensions_become_its_code_status_and_details(
    server: ScriptedServer,
) -> None:
    extensions = {
        "code": "VERSION_MISMATCH",
        "status": 409,
        "details": {"id": "ada", "expected": 3, "actual": 4},
        "trace": "t-1",
    }
    error = {
        "message": "version 3 is not the current one",
        "path": ["updatePerson", 0, "version"],
        "locations": [{"line": 1, "column": 12}],
        "extensions": extensions,
    }
    server.script = [Answer(body={"data": None, "errors": [error]})]
    async with client_of(server) as client:
        answer = await client.graphql("mutation { updatePerson { version } }")

    assert answer.errors == [
        GraphQLError(
            message="version 3 is not the current one",
            path=["updatePerson", 0, "version"],
            locations=[{"line": 1, "column": 12}],
            code="VERSION_MISMATCH",
            status=409,
            details={"id": "ada", "expected": 3, "actual": 4},
            extensions=extensions,
        )
    ]


async def test_a_graphql_level_error_has_a_code_but_no_status_path_or_data(
    server: ScriptedServer,
) -> None:
    error = {
        "message": "Cannot query field 'nme' on type 'Person'.",
        "locations": [{"line": 1, "column": 22}],
        "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
    }
    server.script = [Answer(body={"data": None, "errors": [error]})]
    async with client_of(server) as client:
        answer = await client.graphql("{ person(id: 1) { nme } }")

    [only] = answer.errors
    assert (only.code, only.status, only.path, only.details) == (
        "GRAPHQL_VALIDATION_FAILED",
        None,
        None,
        {},
    )
    assert answer.data is None


async def test_an_answer_that_is_not_graphql_raises_a_502_api_error(
    server: ScriptedServer,
) -> None:
    server.script = [Answer(body={"people": []})]
    async with client_of(server, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(APIError) as caught:
            await client.graphql(PEOPLE)

    assert (caught.value.status_code, caught.value.code) == (502, "INVALID_GRAPHQL_RESPONSE")


async def test_a_batch_answered_with_fewer_responses_than_requests_raises_a_502_api_error(
    server: ScriptedServer,
) -> None:
    server.script = [Answer(body=[{"data": {"n": 1}}])]
    async with client_of(server, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(APIError) as caught:
            await client.graphql_batch([PEOPLE, PEOPLE])

    assert caught.value.status_code == 502


# -- raise_for_errors ---------------------------------------------------------------------


def test_raise_for_errors_raises_one_error_carrying_every_error_and_the_partial_data() -> None:
    errors = [
        GraphQLError("record 'bo' not found", path=["bo"], code="NOT_FOUND", status=404),
        GraphQLError("name is required", path=["cy", "name"], code="VALIDATION_ERROR", status=422),
    ]
    answer = GraphQLResponse({"ada": {"name": "Ada"}, "bo": None, "cy": None}, errors)

    with pytest.raises(GraphQLResponseError) as caught:
        answer.raise_for_errors()

    assert caught.value.errors == errors
    assert caught.value.data == {"ada": {"name": "Ada"}, "bo": None, "cy": None}
    assert "NOT_FOUND (404) at bo: record 'bo' not found" in str(caught.value)
    assert "VALIDATION_ERROR (422) at cy.name: name is required" in str(caught.value)


def test_the_raised_error_is_an_api_error_of_status_200_that_no_retry_policy_resends() -> None:
    answer = GraphQLResponse(None, [GraphQLError("busy", code="STORE_BUSY", status=503)])

    with pytest.raises(APIError) as caught:
        answer.raise_for_errors()

    assert (caught.value.status_code, caught.value.code) == (200, "GRAPHQL_ERRORS")
    assert FAST_RETRY.should_retry(caught.value) is False


def test_raise_for_errors_returns_the_response_when_it_has_no_error() -> None:
    answer = GraphQLResponse({"people": []})

    assert answer.raise_for_errors() is answer
    assert answer.ok is True


# -- HTTP failures of the whole request ------------------------------------------------------


async def test_a_batch_over_the_servers_limit_raises_batch_too_large(
    server: ScriptedServer,
) -> None:
    envelope = {
        "error": {
            "code": "BATCH_TOO_LARGE",
            "message": "at most 2 operations per request",
            "details": {"limit": 2, "actual": 3, "unit": "operations"},
        }
    }
    server.script = [Answer(413, envelope)]
    async with client_of(server) as client:
        with pytest.raises(BatchTooLargeError) as caught:
            await client.graphql_batch([PEOPLE, PEOPLE, PEOPLE])

    assert caught.value.details == {"limit": 2, "actual": 3, "unit": "operations"}
    assert len(server.seen) == 1


async def test_a_request_with_a_bad_key_raises_authentication_error(
    server: ScriptedServer,
) -> None:
    envelope = {"error": {"code": "UNAUTHENTICATED", "message": "unknown key", "details": {}}}
    server.script = [Answer(401, envelope)]
    async with client_of(server) as client:
        with pytest.raises(AuthenticationError):
            await client.graphql(PEOPLE)

    assert len(server.seen) == 1


# -- retries ------------------------------------------------------------------------------


async def test_a_mutation_answered_429_is_sent_again_and_its_answer_returned(
    server: ScriptedServer,
) -> None:
    server.script = [RATE_LIMITED, Answer(body={"data": {"createPerson": {"id": "p1"}}})]
    async with client_of(server) as client:
        answer = await client.graphql(CREATE)

    assert answer.data == {"createPerson": {"id": "p1"}}
    assert server.bodies() == [{"query": CREATE}, {"query": CREATE}]


async def test_a_mutation_whose_connection_dropped_after_sending_is_not_sent_again(
    server: ScriptedServer,
) -> None:
    server.script = [DROP, OK]
    async with client_of(server) as client:
        with pytest.raises(ConnectionFailedError) as caught:
            await client.graphql(CREATE)

    assert caught.value.before_sending is False
    assert len(server.seen) == 1


async def test_a_mutation_that_timed_out_is_not_sent_again(server: ScriptedServer) -> None:
    server.script = [Answer(body={"data": {}}, delay=5.0)]
    async with client_of(server, timeout=0.3) as client:
        with pytest.raises(ConnectionFailedError):
            await client.graphql(CREATE)

    assert len(server.seen) == 1


async def test_a_batch_holding_one_mutation_is_not_sent_again_after_a_dropped_connection(
    server: ScriptedServer,
) -> None:
    server.script = [DROP, Answer(body=[{"data": {}}, {"data": {}}])]
    async with client_of(server) as client:
        with pytest.raises(ConnectionFailedError):
            await client.graphql_batch([PEOPLE, CREATE])

    assert len(server.seen) == 1


async def test_a_query_whose_connection_dropped_is_sent_again(server: ScriptedServer) -> None:
    server.script = [DROP, OK]
    async with client_of(server) as client:
        answer = await client.graphql(PEOPLE)

    assert answer.data == {"people": [{"name": "Ada"}]}
    assert server.bodies() == [{"query": PEOPLE}, {"query": PEOPLE}]


async def test_a_connection_refused_is_a_connection_failure_before_sending() -> None:
    async with AsyncClient(
        f"http://127.0.0.1:{free_port()}", KEY, retry=RetryPolicy(attempts=1)
    ) as client:
        with pytest.raises(ConnectionFailedError) as caught:
            await client.graphql(CREATE)

    assert caught.value.before_sending is True


async def test_a_mutation_refused_before_sending_is_sent_once_the_server_listens() -> None:
    late = ScriptedServer([Answer(body={"data": {"createPerson": {"id": "p1"}}})], free_port())
    retry = RetryPolicy(attempts=3, initial_backoff=0.5, jitter=False)
    async with AsyncClient(f"http://127.0.0.1:{late.port}", KEY, retry=retry) as client:
        call = asyncio.create_task(client.graphql(CREATE))
        await asyncio.sleep(0.1)  # the first attempt was refused; the retry is 0.5 s away
        await late.start()
        try:
            answer = await call
        finally:
            await late.stop()

    assert answer.data == {"createPerson": {"id": "p1"}}
    assert late.bodies() == [{"query": CREATE}]


# -- the rules on their own ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "may_resend"),
    [
        (RateLimitedError("slow down", retry_after=1.0), True),
        (ServiceUnavailableError("overloaded"), True),
        (RequestTimeoutError("body stalled"), True),
        (ConnectionFailedError("refused", before_sending=True), True),
        (ConnectionFailedError("dropped after sending"), False),
        (APIError("bad gateway", status=502), False),
        (APIError("gateway timeout", status=504), False),
        (InternalServerError("bug"), False),
        (TimeoutError(), False),
    ],
    ids=repr,
)
def test_a_mutation_may_be_sent_again_only_when_nothing_of_it_can_have_run(
    failure: BaseException, may_resend: bool
) -> None:
    assert may_send_again(failure, query_only=False) is may_resend


@pytest.mark.parametrize(
    "failure",
    [ConnectionFailedError("dropped"), TimeoutError(), APIError("gateway", status=504)],
    ids=repr,
)
def test_a_document_of_queries_only_may_always_be_sent_again(failure: BaseException) -> None:
    assert may_send_again(failure, query_only=True) is True


QUERY_ONLY = [
    "{ people { name } }",
    "query { people { name } }",
    'query People($team: String = "mutation") { people(team: $team) { name } }',
    'query Q($f: Filter = {kind: "x", nested: {a: [1, 2]}}) { people(filter: $f) { id } }',
    "query mutation { mutation { id } }  # an operation and a field named mutation",
    '{ people(note: """a block string with mutation { and "quotes" """) { id } }',
    "fragment mutation on Person { name }\nquery { people { ...mutation } }",
    "# mutation { deleteAll }\n{ people { name } }",
    '{ people(note: "escaped \\" mutation { x }") { id } }',
    "query A { a } query B @include(if: true) { b }",
]
NOT_QUERY_ONLY = [
    'mutation { createPerson(data: {name: "Ada"}) { id } }',
    "query A { a } mutation B { deleteAll }",
    "subscription { changes { id } }",
    "fragment F on Person { name }\nmutation M { createPerson { ...F } }",
    '{ people(note: "never closed) { id } }',
    "{ people { name } ",
    "type Person { name: String }",
    "",
]


@pytest.mark.parametrize("document", QUERY_ONLY)
def test_a_document_whose_operations_are_all_queries_is_query_only(document: str) -> None:
    assert is_query_only(document) is True


@pytest.mark.parametrize("document", NOT_QUERY_ONLY)
def test_a_document_with_a_mutation_or_that_cannot_be_read_is_not_query_only(
    document: str,
) -> None:
    assert is_query_only(document) is False


@pytest.mark.parametrize("document", QUERY_ONLY + NOT_QUERY_ONLY[:4])
def test_query_only_agrees_with_a_real_graphql_parser(document: str) -> None:
    language = pytest.importorskip("graphql.language")
    parsed = language.parse(document)
    kinds = {
        d.operation.value
        for d in parsed.definitions
        if isinstance(d, language.OperationDefinitionNode)
    }

    assert is_query_only(document) is (kinds == {"query"})


# -- the blocking client ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (lambda c: c.graphql(PERSON, {"id": "ada"}), Answer(body={"data": {"person": None}})),
        (lambda c: c.graphql_batch([PEOPLE]), Answer(body=[{"data": {"people": []}}])),
    ],
    ids=["graphql", "graphql_batch"],
)
async def test_the_blocking_client_sends_and_returns_what_the_async_one_does(
    server: ScriptedServer, call: Callable[[Any], Any], answer: Answer
) -> None:
    server.script = [answer]
    async with client_of(server) as client:
        expected = await call(client)

    def blocking() -> Any:
        with Client(server.url, KEY, retry=FAST_RETRY) as client:
            return call(client)

    # In a thread: the scripted server runs on this test's loop, which must keep running.
    got = await asyncio.to_thread(blocking)

    assert got == expected
    assert server.bodies()[0] == server.bodies()[1]
