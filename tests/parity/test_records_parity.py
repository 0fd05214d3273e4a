"""One operation, five ways in, one answer: REST, ``POST /v1/batch`` in the REST dialect
and in the typed dialect, and ``POST /graphql`` with the values as variables and as
literals, on both backends.

Each :class:`Case` states an operation once, in terms of no dialect (:class:`Op`), and the
outcome it must have: the status, and for an error its code and ``details.path``; for a
success the body. The test is parametrised over the five ways and the two backends, so
every cell of (case x way x backend) asserts the same expectation; a way that answers
differently fails its own cell. Inside a batch the operation is the batch's only one and
its result (``results[0]``) is compared without the envelope.

Over GraphQL the operation is its field (``record``, ``list``, ``search``,
``createRecord``, ``updateRecord``, ``replaceRecord``, ``deleteRecord``,
``restoreRecord``), aliased ``r``, the one root field of its query or mutation.
``graphql-variables`` passes every value as a variable: graphql-core's full path
(validation, variable coercion, execution). ``graphql-literals`` writes every value inline
that a literal of its argument's type can carry — a read without ``includeDeleted`` and
the record mutations are then answered by the server's fast path
(:mod:`batchops.server.graphql.fastpath`), the rest by the full path — and passes the
others as variables (see :func:`_literal`), so that cell too asserts the outcome of the
value the case sends. The GraphQL answer is read back into the contract's terms once,
in :func:`_via_graphql`:

- An error: ``errors`` holds exactly one entry. Its ``extensions`` carry ``status`` (the
  HTTP status REST answers), ``code`` and ``details``, compared as every way's are:
  (status, code, ``details.path``), and the details whole where the case gives them.
  GraphQL names an argument as GraphQL does; the head of ``details.path`` is read back
  to its REST name through :data:`REST_NAMES` (``includeDeleted`` → ``include_deleted``,
  ``ifVersion`` → ``if_match``, ``dryRun`` → ``dry_run``). A variable GraphQL cannot
  coerce to its type (``limit: "ten"``) is such an error: ``VALIDATION_ERROR``, 422,
  naming the argument, as REST answers the same value.
- A success: no ``errors``, and the field's data in the shape of the wire's body
  (``createdAt`` → ``created_at``, ``nextCursor`` → ``next_cursor``…; a ``Record`` whose
  ``deletedAt`` is null has no ``deleted_at`` key, as REST leaves it out of a live
  record; the keys of ``data`` are the client's and stay as they are). GraphQL has no
  status for a success: its cell asserts there is none and compares the body, and the
  case's status (200, 201) is not compared.
- A ``record`` that is null without an error is GraphQL's convention for a missing
  record: it stands for exactly a 404 ``NOT_FOUND``, so the cell asserts the case expects
  that (any other case that gets null fails). Its details are not comparable: there are
  none.

The ``batch`` mutation runs the ``POST /v1/batch`` contract itself; its test sends a few
whole batches both ways and compares the results and the meta, less what the server
makes up anew on each run (times, generated ids, ``duration_ms``).

The cases are in :mod:`tests.parity.cases`; each case id reads as a sentence of the
contract.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeAlias, cast
from urllib.parse import quote, urlencode

import httpx
import pytest

from tests.parity.cases import ABSENT, CASES, NEW_ID, TIME, Case, Op
from tests.server.conftest import Service

# -- REST and the batch dialects ------------------------------------------------------------

Answer: TypeAlias = tuple[int | None, Any]
"""(status, body): a success's body, or ``{"error": {...}}``. The status is None for a
GraphQL success, which has none."""

_RECORD_OPS: Final = {
    "read": "GET",
    "update": "PATCH",
    "replace": "PUT",
    "delete": "DELETE",
    "restore": "POST",
}


@dataclass
class _Request:
    """An operation as an HTTP request (REST), or as the REST dialect's fields."""

    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = ABSENT
    headers: dict[str, str] = field(default_factory=dict)

    def url(self) -> str:
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path


def _query_text(value: Any) -> str:
    """A value as query-string text (numbers and booleans as JSON, strings as they are)."""
    return value if isinstance(value, str) else json.dumps(value)


def _as_rest(op: Op) -> _Request:
    base = f"/v1/collections/{quote(op.collection, safe='')}"
    records = f"{base}/records"
    request: _Request
    if op.type == "create":
        body: dict[str, Any] = {"data": op.data}
        if op.id is not ABSENT:
            body["id"] = op.id
        return _Request("POST", records, body=body)
    if op.type == "list":
        request = _Request("GET", records)
        if op.filters is not ABSENT:
            request.params += [(k, _query_text(v)) for k, v in op.filters.items()]
        if op.limit is not ABSENT:
            request.params.append(("limit", _query_text(op.limit)))
        if op.cursor is not ABSENT:
            request.params.append(("cursor", op.cursor))
        return request
    if op.type == "search":
        body = {"query": op.query}
        if op.filters is not ABSENT:
            body["filters"] = op.filters
        if op.limit is not ABSENT:
            body["limit"] = op.limit
        return _Request("POST", f"{base}/search", body=body)
    path = f"{records}/{quote(op.id, safe='!')}"
    request = _Request(_RECORD_OPS[op.type], path + ("/restore" if op.type == "restore" else ""))
    if op.type in ("update", "replace"):
        request.body = {"data": op.data}
    if op.hard is not ABSENT:
        request.params.append(("hard", _query_text(op.hard)))
    if op.include_deleted is not ABSENT:
        request.params.append(("include_deleted", _query_text(op.include_deleted)))
    if op.if_match is not ABSENT:
        request.headers["If-Match"] = str(op.if_match)
    return request


def _as_typed(op: Op) -> dict[str, Any]:
    typed: dict[str, Any] = {"type": op.type, "collection": op.collection}
    for name in ("id", "data", "query", "if_match"):
        value = getattr(op, name)
        if value is not ABSENT:
            typed[name] = value
    options = {
        name: getattr(op, name)
        for name in ("filters", "limit", "cursor", "hard", "include_deleted")
        if getattr(op, name) is not ABSENT
    }
    if options:
        typed["options"] = options
    return typed


def _as_rest_dialect(op: Op) -> dict[str, Any]:
    request = _as_rest(op)
    rest: dict[str, Any] = {"method": request.method, "path": request.url()}
    if request.body is not ABSENT:
        rest["body"] = request.body
    if request.headers:
        rest["headers"] = request.headers
    return rest


async def _post_batch(
    client: httpx.AsyncClient, operations: list[dict[str, Any]], options: Any = ABSENT
) -> Any:
    request: dict[str, Any] = {"operations": operations}
    if options is not ABSENT:
        request["options"] = options
    # The standard encoder: orjson cannot write an integer beyond 64 bits.
    return await client.post(
        "/v1/batch",
        content=json.dumps(request),
        headers={"Content-Type": "application/json"},
    )


async def _via_rest(client: httpx.AsyncClient, op: Op) -> Answer:
    request = _as_rest(op)
    response = await client.request(
        request.method,
        request.url(),
        content=None if request.body is ABSENT else json.dumps(request.body),
        headers={**request.headers, "Content-Type": "application/json"},
    )
    return response.status_code, response.json()


async def _via_batch(client: httpx.AsyncClient, operation: dict[str, Any]) -> Answer:
    response = await _post_batch(client, [operation])
    assert response.status_code in (200, 207), response.text
    (result,) = response.json()["results"]
    if "error" in result:
        return result["status"], {"error": result["error"]}
    return result["status"], result["body"]


async def _via_batch_rest(client: httpx.AsyncClient, op: Op) -> Answer:
    return await _via_batch(client, _as_rest_dialect(op))


async def _via_batch_typed(client: httpx.AsyncClient, op: Op) -> Answer:
    return await _via_batch(client, _as_typed(op))


# -- GraphQL: two more ways in ---------------------------------------------------------------

REST_NAMES: Final = {
    "includeDeleted": "include_deleted",
    "ifVersion": "if_match",
    "dryRun": "dry_run",
}
"""The GraphQL names of arguments whose REST name differs (every other name is the same):
the document is written with them, and an error's ``details.path`` head is read back."""

_GRAPHQL_NAMES: Final = {rest: graphql for graphql, rest in REST_NAMES.items()}

_RECORD: Final = "{ id collection data version createdAt updatedAt deletedAt }"
_DELETED: Final = "{ id collection deleted hard version }"

# Op type → (operation type, root field, {Op field: GraphQL type of its argument}, selection)
_FIELDS: Final[dict[str, tuple[str, str, dict[str, str], str]]] = {
    "create": (
        "mutation",
        "createRecord",
        {"collection": "String!", "data": "JSON!", "id": "ID"},
        _RECORD,
    ),
    "read": (
        "query",
        "record",
        {"collection": "String!", "id": "ID!", "include_deleted": "Boolean"},
        _RECORD,
    ),
    "update": (
        "mutation",
        "updateRecord",
        {"collection": "String!", "id": "ID!", "data": "JSON!", "if_match": "Int"},
        _RECORD,
    ),
    "replace": (
        "mutation",
        "replaceRecord",
        {"collection": "String!", "id": "ID!", "data": "JSON!", "if_match": "Int"},
        _RECORD,
    ),
    "delete": (
        "mutation",
        "deleteRecord",
        {"collection": "String!", "id": "ID!", "hard": "Boolean", "if_match": "Int"},
        _DELETED,
    ),
    "restore": (
        "mutation",
        "restoreRecord",
        {"collection": "String!", "id": "ID!", "if_match": "Int"},
        _RECORD,
    ),
    "list": (
        "query",
        "list",
        {"collection": "String!", "filters": "JSON", "limit": "Int", "cursor": "String"},
        f"{{ records {_RECORD} nextCursor }}",
    ),
    "search": (
        "query",
        "search",
        {"collection": "String!", "query": "String!", "filters": "JSON", "limit": "Int"},
        f"{{ results {{ record {_RECORD} score }} total }}",
    ),
}

_INT32: Final = range(-(2**31), 2**31)
_NAME_RE: Final = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def _literal(value: Any, graphql_type: str) -> str | None:
    """``value`` as a GraphQL literal of ``graphql_type``, or None where no literal of that
    type carries it: a string or a float where the argument is ``Int``, an integer past 32
    bits (``Int`` is 32 bits), anything but a boolean for a ``Boolean``, null for a
    required argument, an object key that is not a GraphQL name (``"a..b"``) — a literal
    of such a value is a document the validator refuses before anything runs."""
    if value is None:
        return None if graphql_type.endswith("!") else "null"
    kind = graphql_type.rstrip("!")
    if kind == "JSON":
        return _json_literal(value)
    if kind in ("String", "ID"):
        return json.dumps(value) if isinstance(value, str) else None
    if kind == "Int":
        return str(value) if type(value) is int and value in _INT32 else None
    assert kind == "Boolean", graphql_type
    return json.dumps(value) if isinstance(value, bool) else None


def _json_literal(value: Any) -> str | None:
    """A JSON value as a GraphQL literal of the ``JSON`` scalar (objects and lists as
    GraphQL object and list literals). An integer of any size is written as it is:
    Strawberry's JSON scalar reads an IntValue with graphql-core's
    ``value_from_ast_untyped`` (``int(text)``), so one beyond 64 bits arrives exact and
    the records service judges it, as it judges it from a JSON body."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, list):
        items = [_json_literal(item) for item in value]
        return None if None in items else f"[{', '.join(cast(list[str], items))}]"
    if isinstance(value, dict):
        members = {key: _json_literal(item) for key, item in value.items()}
        if None in members.values() or not all(_NAME_RE.fullmatch(key) for key in members):
            return None
        return "{" + ", ".join(f"{key}: {text}" for key, text in members.items()) + "}"
    return None


def _as_graphql(op: Op, *, literals: bool) -> dict[str, Any]:
    """The GraphQL request for ``op``: its field aliased ``r``, each value a variable, or
    (``literals``) inline where a literal of the argument's type can carry it and a
    variable where none can (see :func:`_literal`), so the cell still asserts the
    outcome of the value the case sends."""
    operation, root, arguments, selection = _FIELDS[op.type]
    given = {
        f.name: getattr(op, f.name)
        for f in fields(Op)
        if f.name != "type" and getattr(op, f.name) is not ABSENT
    }
    assert given.keys() <= arguments.keys(), f"{root} takes no {given.keys() - arguments.keys()}"
    declared: list[str] = []
    passed: list[str] = []
    variables: dict[str, Any] = {}
    for name, value in given.items():
        graphql_name = _GRAPHQL_NAMES.get(name, name)
        text = _literal(value, arguments[name]) if literals else None
        if text is None:
            declared.append(f"${graphql_name}: {arguments[name]}")
            variables[graphql_name] = value
            text = f"${graphql_name}"
        passed.append(f"{graphql_name}: {text}")
    head = f"{operation}({', '.join(declared)})" if declared else operation
    request: dict[str, Any] = {"query": f"{head} {{ r: {root}({', '.join(passed)}) {selection} }}"}
    if variables:
        request["variables"] = variables
    return request


MISSING: Final[Any] = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""A GraphQL ``record`` that answered null without an error: a missing record."""

_SNAKE: Final = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "deletedAt": "deleted_at",
    "nextCursor": "next_cursor",
}


def _wire_record(record: dict[str, Any]) -> dict[str, Any]:
    """A ``Record`` as the wire carries it: snake_case names, no ``deleted_at`` on a live
    record (the keys of ``data`` are the client's and stay as they are)."""
    return {
        _SNAKE.get(name, name): value
        for name, value in record.items()
        if not (name == "deletedAt" and value is None)
    }


def _wire(op_type: str, value: dict[str, Any]) -> dict[str, Any]:
    """The data of an operation's field as the wire carries the operation's body."""
    if op_type == "delete":
        return value
    if op_type == "list":
        return {
            "records": [_wire_record(record) for record in value["records"]],
            "next_cursor": value["nextCursor"],
        }
    if op_type == "search":
        return {
            "results": [
                {"record": _wire_record(hit["record"]), "score": hit["score"]}
                for hit in value["results"]
            ],
            "total": value["total"],
        }
    return _wire_record(value)


def _rest_path(path: str) -> str:
    """A GraphQL error's ``details.path`` with its head as REST names it."""
    head = path.split(".", 1)[0].split("[", 1)[0]
    return REST_NAMES.get(head, head) + path[len(head) :]


async def _via_graphql(client: httpx.AsyncClient, op: Op, *, literals: bool) -> Answer:
    response = await client.post(
        "/graphql",
        content=json.dumps(_as_graphql(op, literals=literals)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    if "errors" in answer:
        (error,) = answer["errors"]
        extensions = error["extensions"]
        details = dict(extensions["details"])
        if isinstance(details.get("path"), str):
            details["path"] = _rest_path(details["path"])
        envelope = {"code": extensions["code"], "message": error["message"], "details": details}
        return extensions["status"], {"error": envelope}
    value = answer["data"]["r"]
    if value is None:
        assert op.type == "read", answer  # only `record` answers null (a missing record)
        return None, MISSING
    return None, _wire(op.type, value)


async def _via_graphql_variables(client: httpx.AsyncClient, op: Op) -> Answer:
    return await _via_graphql(client, op, literals=False)


async def _via_graphql_literals(client: httpx.AsyncClient, op: Op) -> Answer:
    return await _via_graphql(client, op, literals=True)


PATHS: Final[dict[str, Callable[[httpx.AsyncClient, Op], Awaitable[Answer]]]] = {
    "rest": _via_rest,
    "batch-rest-dialect": _via_batch_rest,
    "batch-typed-dialect": _via_batch_typed,
    "graphql-variables": _via_graphql_variables,
    "graphql-literals": _via_graphql_literals,
}
GRAPHQL: Final = frozenset({"graphql-variables", "graphql-literals"})


# -- the test ------------------------------------------------------------------------------


@pytest.mark.parametrize("way", list(PATHS))
@pytest.mark.parametrize("case", CASES, ids=[case.sentence for case in CASES])
async def test_every_way_in_answers_an_operation_alike(
    service: Service, case: Case, way: str
) -> None:
    if case.setup:
        seeded = await _post_batch(service.client, list(case.setup))
        assert seeded.status_code == 200, seeded.text
    status, body = await PATHS[way](service.client, case.op)
    if body is MISSING:  # GraphQL's null record: exactly a 404 NOT_FOUND
        assert (case.status, case.code) == (404, "NOT_FOUND"), "a null record"
        return
    if case.code is None:
        assert status == (None if way in GRAPHQL else case.status), body
        if case.body is not ABSENT:
            assert body == case.body
        if case.check is not None:
            case.check(body)
        return
    assert set(body) == {"error"}, body
    error = body["error"]
    assert (status, error["code"], error["details"].get("path")) == (
        case.status,
        case.code,
        case.path,
    ), error
    if case.details is not None:
        assert error["details"] == case.details


def test_the_cases_have_unique_sentences() -> None:
    sentences = [case.sentence for case in CASES]
    assert len(sentences) == len(set(sentences))


# -- the batch mutation --------------------------------------------------------------------

_PEOPLE: Final = "/v1/collections/people/records"


def _new(record_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "create", "collection": "people", "id": record_id, "data": {}, **extra}


@dataclass(frozen=True)
class _Batch:
    sentence: str
    operations: list[dict[str, Any]]
    options: Any  # ABSENT: none sent
    statuses: list[int]  # of its results: what makes it the batch its sentence says


BATCHES: Final = [
    _Batch(
        "a reference carries a generated id into the operations after it",
        [
            {"id": "a", "method": "POST", "path": _PEOPLE, "body": {"data": {"name": "Ada"}}},
            {
                "type": "update",
                "collection": "people",
                "id": "${a.body.id}",
                "data": {"self": "${a.body.id}", "v": "${a.body.version}"},
            },
            {"method": "GET", "path": _PEOPLE + "/${a.body.id}"},
        ],
        ABSENT,
        [201, 200, 200],
    ),
    _Batch(
        "an operation that depends on a failed one is not run",
        [
            {"ref": "r", "type": "read", "collection": "people", "id": "missing"},
            _new("p1", depends_on=["r"]),
            _new("p2"),
        ],
        ABSENT,
        [404, 424, 201],
    ),
    _Batch(
        "an atomic batch with a failure rolls every operation back",
        [_new("p1"), _new("p2"), _new("p1")],
        {"atomic": True},
        [424, 424, 409],
    ),
    _Batch(
        "validate_only checks each operation and runs none",
        [_new("p1"), {"type": "create", "collection": "people", "data": [1]}],
        {"validate_only": True},
        [200, 422],
    ),
]


def _made_up(value: Any) -> Any:
    """``value`` with what the server makes up anew each run in its place: a time as
    ``<time>``, a generated id as ``<uuid7>``, no ``duration_ms``."""
    if isinstance(value, dict):
        return {k: _made_up(v) for k, v in value.items() if k != "duration_ms"}
    if isinstance(value, list):
        return [_made_up(item) for item in value]
    if value == TIME:
        return "<time>"
    if value == NEW_ID:
        return "<uuid7>"
    return value


def _as_graphql_batch(
    operations: list[dict[str, Any]], options: Any, *, literals: bool
) -> dict[str, Any]:
    selection = "{ status committed results meta }"
    if literals:
        arguments = {"operations": _json_literal(operations)}
        if options is not ABSENT:
            arguments["options"] = _json_literal(options)
        assert None not in arguments.values(), "every batch here is written as literals"
        written = ", ".join(f"{name}: {text}" for name, text in arguments.items())
        return {"query": f"mutation {{ b: batch({written}) {selection} }}"}
    variables: dict[str, Any] = {"operations": operations}
    if options is not ABSENT:
        variables["options"] = options
    return {
        "query": "mutation($operations: [JSON!]!, $options: JSON) "
        f"{{ b: batch(operations: $operations, options: $options) {selection} }}",
        "variables": variables,
    }


@pytest.mark.parametrize("literals", [False, True], ids=["graphql-variables", "graphql-literals"])
@pytest.mark.parametrize("batch", BATCHES, ids=[batch.sentence for batch in BATCHES])
async def test_the_batch_mutation_answers_as_post_v1_batch(
    service: Service, batch: _Batch, literals: bool
) -> None:
    # Each in a tenant of its own: both start from nothing.
    graphql_client = await service.client_for(f"{service.tenant}_graphql")
    rest = await _post_batch(service.client, batch.operations, batch.options)
    expected = rest.json()
    assert [result["status"] for result in expected["results"]] == batch.statuses
    response = await graphql_client.post(
        "/graphql", json=_as_graphql_batch(batch.operations, batch.options, literals=literals)
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert "errors" not in answer, answer
    got = answer["data"]["b"]
    assert (got["status"], got["committed"]) == (rest.status_code, expected["committed"])
    assert _made_up(got["results"]) == _made_up(expected["results"])
    assert _made_up(got["meta"]) == _made_up(expected["meta"])
