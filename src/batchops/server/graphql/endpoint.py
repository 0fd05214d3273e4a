"""``POST /graphql`` and ``GET /graphql``: GraphQL over HTTP, one operation or an array.

Strawberry's schema, DataLoader and limits, but not its HTTP view, for four measured or
stated reasons: its view runs the operations of an array *concurrently*
(``asyncio.gather``), so the writes of two operations would interleave, where batchops
runs them one after another; it answers a too-large array with a bare 400, where the
batch limit is a 413 ``BATCH_TOO_LARGE`` envelope as on ``/v1/batch``; its HTTP errors are
plain text, not the error envelope every other route answers; and it has no request body
limit. This endpoint is the few lines those need, in the shape of ``/v1/batch``'s:

1. authenticate (401) and charge the request budget, as every route;
2. read the body within ``max_batch_bytes`` (413) and decode it (400 with the path);
3. check its shape: one ``{query, variables?, operationName?, extensions?}`` object or a
   non-empty array of them, at most ``max_batch_operations`` (413);
4. charge the key's operations budget one operation per root field of every operation,
   aliases included (429 before anything runs; a ``batch`` field also charges its
   operations when it runs);
5. run each operation in order, each with its own context and loader, and answer 200 with
   the response (or the array of responses, in order).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import orjson
import strawberry
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    VariableNode,
)
from graphql.error import GraphQLSyntaxError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from batchops._exceptions import (
    BatchTooLargeError,
    InvalidRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
)
from batchops.server.batch.endpoint import request_batch_id
from batchops.server.deps import Services, authenticated
from batchops.server.graphql import graphiql
from batchops.server.graphql.context import OperationContext
from batchops.server.graphql.documents import is_cached, parse_document, root_fields
from batchops.server.graphql.errors import GRAPHQL_VALIDATION_FAILED, error_entry
from batchops.server.graphql.fastpath import SimpleOperation, run_simple, simple_operation
from batchops.server.http import parse_json, read_body, require_json
from batchops.server.openapi_routes import AUTH, BODY, STORE, json_answer, param, responses
from batchops.server.settings import Settings

__all__ = ["OPENAPI_PATHS", "GraphQLRequest", "count_root_fields", "routes"]

_ITEM_KEYS: Final = frozenset({"query", "variables", "operationName", "extensions"})


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    """One operation of a request: its document, variables and operation name."""

    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None


def _item(value: Any, at: str) -> GraphQLRequest:
    """A request object, or a 400 naming the field (``at`` is its place in an array)."""
    if not isinstance(value, dict):
        raise InvalidRequestError(
            "a GraphQL request is an object with a 'query' string", details={"path": at}
        )
    prefix = f"{at}." if at else ""
    for name in value:
        if name not in _ITEM_KEYS:
            raise InvalidRequestError(
                f"unknown field {name!r}; allowed: {', '.join(sorted(_ITEM_KEYS))}",
                details={"path": prefix + name},
            )
    query = value.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequestError(
            "'query' must be a GraphQL document (a non-empty string)",
            details={"path": prefix + "query"},
        )
    variables = value.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise InvalidRequestError(
            "'variables' must be an object", details={"path": prefix + "variables"}
        )
    name = value.get("operationName")
    if name is not None and not isinstance(name, str):
        raise InvalidRequestError(
            "'operationName' must be a string", details={"path": prefix + "operationName"}
        )
    extensions = value.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise InvalidRequestError(
            "'extensions' must be an object", details={"path": prefix + "extensions"}
        )
    return GraphQLRequest(query, variables, name)


def read_requests(data: Any, max_operations: int) -> tuple[list[GraphQLRequest], bool]:
    """The operations of a decoded body, and whether it was an array."""
    if isinstance(data, list):
        if not data:
            raise InvalidRequestError(
                "the array holds no operation: send at least one", details={"path": ""}
            )
        if len(data) > max_operations:
            raise BatchTooLargeError(
                f"the array has {len(data)} operations; the limit is {max_operations}: "
                "split it into several requests",
                details={"limit": max_operations, "actual": len(data), "unit": "operations"},
            )
        return [_item(value, f"[{index}]") for index, value in enumerate(data)], True
    return [_item(data, "")], False


# -- charging -------------------------------------------------------------------------------


def count_root_fields(
    document: DocumentNode | None, operation_name: str | None, variables: dict[str, Any] | None
) -> int:
    """How many root fields the operation ``operation_name`` of ``query`` runs (aliases
    each count): what the key's operations budget is charged. ``@skip``/``@include`` are
    honoured for literal booleans and variables sent as booleans (a variable left to its
    default counts the field). A document that does not parse (None), or names no such
    operation, runs nothing and costs nothing."""
    if document is None:
        return 0
    operation = _operation(document, operation_name)
    if operation is None:
        return 0
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    fields = root_fields(operation, fragments, lambda node: _included(node, variables or {}))
    # __typename costs nothing: it reads no record.
    return sum(not node.name.value.startswith("__") for _, node in fields)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def _included(node: Any, variables: dict[str, Any]) -> bool:
    for directive in node.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        value: Any = None
        for argument in directive.arguments:
            if argument.name.value == "if":
                raw = argument.value
                if isinstance(raw, VariableNode):
                    value = variables.get(raw.name.value)
                else:
                    value = getattr(raw, "value", None)
        if (name == "skip" and value is True) or (name == "include" and value is False):
            return False
    return True


# -- running --------------------------------------------------------------------------------


async def _execute(
    request: Request,
    svc: Services,
    items: list[GraphQLRequest],
    *,
    allowed: set[OperationType] | None = None,
) -> list[dict[str, Any]]:
    """Charge, then run each operation in order; the responses in order."""
    caller = request.state.caller
    settings = svc.settings
    batch_id = request_batch_id(request)  # names the batches record mutations run as
    # Each document parsed once here (None: it does not parse), for the charge, the fast
    # path and Strawberry's execution alike (the parse cache counts one use per request).
    documents = [_document(item, settings.graphql_max_tokens) for item in items]
    cost = sum(
        count_root_fields(document, item.operation_name, item.variables)
        for document, item in zip(documents, items, strict=True)
    )
    charged = getattr(request.state, "rate_headers", None) or {}
    request.state.rate_headers = await svc.limiter.hit_operations(caller.key_id, cost, charged)
    schema: strawberry.Schema = request.app.state.graphql_schema
    responses = []
    # Tests turn the fast path off to compare both paths' answers.
    fast = getattr(request.app.state, "graphql_fast_path", True)
    for item, document in zip(items, documents, strict=True):
        context = OperationContext.new(svc, caller, batch_id, document)
        if document is not None and _operation(document, item.operation_name) is None:
            responses.append({"errors": [error_entry(_no_operation(document, item), None)]})
            continue
        simple = _simple(document, item, settings) if fast and document is not None else None
        if simple is not None and (allowed is None or not simple.mutation):
            assert document is not None
            responses.append(
                await run_simple(simple, schema._schema, context, item.variables, document)
            )
            continue
        try:
            result = await schema.execute(
                item.query,
                variable_values=item.variables,
                context_value=context,
                operation_name=item.operation_name,
                allowed_operation_types=allowed,
            )
        except InvalidOperationTypeError:
            raise MethodNotAllowedError(
                "a GET runs queries only: send mutations with POST", details={"path": "query"}
            ) from None
        except CannotGetOperationTypeError as exc:  # several operations and none named…
            error = GraphQLError(
                exc.as_http_error_reason(), extensions={"code": GRAPHQL_VALIDATION_FAILED}
            )
            responses.append({"errors": [error_entry(error, None)]})
            continue
        response: dict[str, Any] = {"data": result.data}
        if result.errors:
            response["errors"] = [error_entry(error, document) for error in result.errors]
            if result.data is None and not any(e.path for e in result.errors):
                del response["data"]  # nothing ran: a request error, per the spec
        responses.append(response)
    return responses


def _no_operation(document: DocumentNode, item: GraphQLRequest) -> GraphQLError:
    """The error of a document without the operation to run (the spec's GetOperation:
    several and none named, or none of that name)."""
    if item.operation_name is not None:
        message = f"no operation named {item.operation_name!r} in the document"
    elif any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        message = "the document has several operations: name the one to run (operationName)"
    else:
        message = "the document has no operation to run"
    return GraphQLError(message, extensions={"code": GRAPHQL_VALIDATION_FAILED})


def _simple(
    document: DocumentNode, item: GraphQLRequest, settings: Settings
) -> SimpleOperation | None:
    """The fast path's plan of the operation (batchops.server.graphql.fastpath), if it
    has that shape; kept beside a document the parse cache keeps (building it again
    was ~5 µs an aliased field)."""
    key = (
        item.query,
        item.operation_name,
        settings.graphql_max_aliases,
        settings.graphql_max_depth,
        settings.graphql_max_tokens,
    )
    if key in _plans:
        _plans.move_to_end(key)
        return _plans[key]
    plan = simple_operation(
        document, item.operation_name, settings.graphql_max_aliases, settings.graphql_max_depth
    )
    if is_cached(item.query, settings.graphql_max_tokens):
        _plans[key] = plan
        if len(_plans) > _PLANS:
            _plans.popitem(last=False)
    return plan


_PLANS: Final = 256
_plans: OrderedDict[tuple[str, str | None, int, int, int], SimpleOperation | None] = OrderedDict()


def _document(item: GraphQLRequest, max_tokens: int) -> DocumentNode | None:
    try:
        return parse_document(item.query, max_tokens)
    except GraphQLSyntaxError:
        return None


def _answer(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def post_graphql(request: Request) -> Response:
    """``POST /graphql``: one operation, or an array run one after another."""
    svc: Services = request.app.state.services
    await authenticated(request, svc)
    require_json(request)
    try:
        body = await read_body(
            request, max_bytes=svc.settings.max_batch_bytes, what="GraphQL request"
        )
    except PayloadTooLargeError as exc:
        raise BatchTooLargeError(exc.message, details=exc.details) from exc
    items, is_array = read_requests(parse_json(body), svc.settings.max_batch_operations)
    responses = await _execute(request, svc, items)
    return _answer(responses if is_array else responses[0])


async def get_graphql(request: Request) -> Response:
    """``GET /graphql``: GraphiQL for a browser; ``?query=`` runs a query (never a
    mutation: 405)."""
    if graphiql.wants_ide(request):
        return graphiql.graphiql_response()
    svc: Services = request.app.state.services
    await authenticated(request, svc)
    params = request.query_params
    raw: dict[str, Any] = {"query": params.get("query")}
    # An empty parameter is an absent one (forms and URL builders send them).
    if params.get("variables"):
        raw["variables"] = _json_param(params["variables"], "variables")
    if params.get("operationName"):
        raw["operationName"] = params["operationName"]
    item = _item(raw, "")
    responses = await _execute(request, svc, [item], allowed={OperationType.QUERY})
    return _answer(responses[0])


def _json_param(text: str, name: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"'{name}' must be JSON", details={"path": name}) from None


async def graphql_endpoint(request: Request) -> Response:
    """``/graphql``: one route for both methods, so any other method is ONE 405 whose
    ``Allow`` names both."""
    if request.method == "POST":
        return await post_graphql(request)
    return await get_graphql(request)


routes = [
    Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
    *graphiql.routes,
]
"""Mounted by ``create_app`` before the FastAPI routes: the endpoint, GraphiQL's assets."""


_OPERATION_SCHEMA: Final = {
    "type": "object",
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "minLength": 1, "pattern": "\\S"},
        "variables": {"type": ["object", "null"]},
        "operationName": {"type": ["string", "null"]},
        "extensions": {"type": ["object", "null"]},
    },
    "additionalProperties": False,
}
_RESPONSE_SCHEMA: Final = {
    "type": "object",
    "description": "A GraphQL response: `data` (null or absent when nothing ran) and "
    "`errors`, each with `extensions` {code, status, details} (docs/graphql.md).",
    "properties": {
        "data": {"type": ["object", "null"]},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_ANSWERS: Final = (*AUTH, *STORE, *BODY)


def _str_keys(success: Any, errors: Any, *, notes: Any) -> dict[str, Any]:
    """:func:`responses` keyed by status text, as a path of the document holds them."""
    return {str(code): answer for code, answer in responses(success, errors, notes=notes).items()}


OPENAPI_PATHS: dict[str, Any] = {
    "/graphql": {
        "post": {
            "tags": ["graphql"],
            "summary": "Run a GraphQL operation, or an array of them one after another",
            "description": "See docs/graphql.md and docs/schema.graphql. Aliased reads are "
            "one store call; aliased record mutations one batch, in document order. Each "
            "root field costs one operation of the key's budget.",
            "operationId": "post_graphql",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                _OPERATION_SCHEMA,
                                {"type": "array", "minItems": 1, "items": _OPERATION_SCHEMA},
                            ]
                        },
                        "example": {
                            "query": '{ a: record(collection: "people", id: "p1") { id data } '
                            'b: record(collection: "people", id: "p2") { id data } }'
                        },
                    }
                },
            },
            "responses": _str_keys(
                {
                    200: json_answer(
                        {"oneOf": [_RESPONSE_SCHEMA, {"type": "array", "items": _RESPONSE_SCHEMA}]},
                        "The response (or, for an array, the responses in order); a field that "
                        "failed is null with its entry in `errors`.",
                    )
                },
                _ANSWERS,
                notes={
                    413: "BATCH_TOO_LARGE: an array of more operations than the batch limit, "
                    "or a body past the batch byte limit; nothing ran.",
                },
            ),
        },
        "get": {
            "tags": ["graphql"],
            "summary": "Run a GraphQL query (never a mutation); GraphiQL for a browser",
            "operationId": "get_graphql",
            "parameters": [
                param(
                    "query",
                    **{"in": "query"},
                    required=True,
                    schema={"type": "string", "minLength": 1, "pattern": "\\S"},
                ),
                param(
                    "variables",
                    **{"in": "query"},
                    description="The variables: a JSON object (400 when it is not JSON).",
                    content={"application/json": {"schema": {"type": "object"}}},
                ),
                param("operationName", **{"in": "query"}, schema={"type": "string"}),
            ],
            "responses": _str_keys(
                {200: json_answer(_RESPONSE_SCHEMA, "The response.")},
                (*AUTH, *STORE, 400, 405),
                notes={405: "METHOD_NOT_ALLOWED: a mutation sent with GET."},
            ),
        },
    }
}
"""How ``/graphql`` appears in the OpenAPI document (plain Starlette routes)."""
