"""Record mutations run as batches: the aliased ``createRecord``/``updateRecord``/… fields
of one mutation are planned and run by the batch service, never one transaction each.

GraphQL runs a mutation's root fields one after another, in document order. The first
record-mutation field reached takes the whole run of record-mutation fields that starts
with it (up to the next field of another kind: ``bulkUpdate``, ``batch``…) and runs them
as ONE batch through :func:`~batchops.server.batch.service.run_whole` — the same planner,
executor and records service as ``POST /v1/batch`` (a run of plain creates is one
multi-row insert), in document order, each operation in its own savepoint. Each field of
the run then answers its own operation's outcome, in turn; nothing else runs between
them, so the order is the document's, as the GraphQL spec asks.

``mutation @atomic { … }`` makes the whole operation one atomic batch: every field is
applied or none is (the failing field answers its error, every other field
``ROLLED_BACK``). It covers record mutations only; an ``@atomic`` operation with any
other field answers ``INVALID_REQUEST`` for every field and writes nothing.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import orjson
from graphql import (
    FieldNode,
    GraphQLIncludeDirective,
    GraphQLResolveInfo,
    GraphQLSkipDirective,
    get_argument_values,
    get_directive_values,
)
from graphql.execution.values import VariableValues

from batchops._exceptions import APIError, InvalidRequestError, StoreError, api_error_from_envelope
from batchops.server.batch import service as batches
from batchops.server.batch.executor import options_deadline
from batchops.server.batch.planner import plan_request
from batchops.server.batch.wire import (
    BatchRequest,
    MalformedOperation,
    WireOperation,
    WireOptions,
)
from batchops.server.graphql.context import OperationContext
from batchops.server.graphql.documents import root_fields
from batchops.server.graphql.errors import renamed_for_graphql

__all__ = [
    "ATOMIC",
    "RECORD_MUTATIONS",
    "is_atomic",
    "outcome_error",
    "record_mutation",
    "refuse_if_atomic",
    "run_record_operations",
    "wire_operation",
]

RECORD_MUTATIONS: Final = {
    "createRecord": "create",
    "updateRecord": "update",
    "replaceRecord": "replace",
    "deleteRecord": "delete",
    "restoreRecord": "restore",
}
"""The mutation fields that are one record operation each, and that operation's type."""

ATOMIC: Final = "atomic"
"""The operation directive that makes a mutation all-or-nothing."""


def is_atomic(info: GraphQLResolveInfo[Any]) -> bool:
    """Whether the operation says ``@atomic``."""
    return any(directive.name.value == ATOMIC for directive in info.operation.directives or ())


def refuse_if_atomic(info: GraphQLResolveInfo[Any]) -> None:
    """A mutation field that is not a record operation, in an ``@atomic`` operation: its
    422-free refusal (nothing of the operation runs, see the module docstring)."""
    if is_atomic(info):
        raise _atomic_refused(info.field_name)


def _atomic_refused(field_name: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"@atomic covers record mutations only ({', '.join(RECORD_MUTATIONS)}); "
        f"{field_name!r} cannot be part of an atomic mutation: send it in its own operation",
        details={"path": field_name},
    )


async def record_mutation(info: GraphQLResolveInfo[Any]) -> Any:
    """The body of this field's record operation (raises its APIError): run, with the
    fields of its run, the first time one of them is reached."""
    context: OperationContext = info.context
    key = str(info.path.key)
    outcome = context.mutation_outcomes.pop(key, None)
    if outcome is None:
        context.mutation_outcomes.update(await _run_from(info, context, key))
        outcome = context.mutation_outcomes.pop(key)
    error = outcome_error(outcome)
    if error is not None:
        raise error
    return outcome["body"]


def outcome_error(outcome: dict[str, Any]) -> APIError | None:
    """The APIError of a failed operation's outcome (its ``details.path`` naming the
    GraphQL argument), None for a success."""
    error = outcome.get("error")
    if error is None:
        return None
    return renamed_for_graphql(api_error_from_envelope(outcome["status"], {"error": error}))


async def _run_from(
    info: GraphQLResolveInfo[Any], context: OperationContext, key: str
) -> dict[str, dict[str, Any]]:
    """The outcomes of the run of record mutations that starts at the field ``key``."""
    fields = _root_fields(info)
    atomic = is_atomic(info)
    if atomic:
        run = fields
        other = next((n for _, n in run if n.name.value not in RECORD_MUTATIONS), None)
        if other is not None:
            return _settled([k for k, _ in run], _atomic_refused(other.name.value))
    else:
        keys = [k for k, _ in fields]
        start = keys.index(key)
        end = start
        while end < len(fields) and fields[end][1].name.value in RECORD_MUTATIONS:
            end += 1
        run = fields[start:end]
    operations = []
    variables = _variables(info)
    for _, node in run:
        field = info.parent_type.fields[node.name.value]
        args = get_argument_values(field, node, variables)
        operations.append(wire_operation(node.name.value, args))
    return await run_record_operations(context, [k for k, _ in run], operations, atomic=atomic)


async def run_record_operations(
    context: OperationContext,
    keys: list[str],
    operations: list[WireOperation],
    *,
    atomic: bool,
) -> dict[str, dict[str, Any]]:
    """Run ``operations`` as ONE batch (see the module docstring): each one's outcome as
    ``/v1/batch`` answers it (``{"status", "body"}`` or ``{"status", "error"}``), by the
    response key of its field."""
    try:
        plan = plan_request(
            BatchRequest(
                list[WireOperation | MalformedOperation](operations), WireOptions(atomic=atomic)
            ),
            # Values are the client's, never ${…} references: a string holding "${" is
            # stored as it is.
            may_have_templates=False,
        )
        settings = context.services.settings
        answer = await batches.run_whole(
            context.services.store,
            context.tenant,
            plan,
            batch_id=context.batch_id,
            started=context.started,
            deadline=options_deadline(plan.options, settings.batch_timeout_ms),
        )
    except (APIError, StoreError) as exc:  # nothing of the run was written
        return _settled(keys, exc if isinstance(exc, APIError) else exc.to_api_error())
    # The answer's JSON, as /v1/batch sends it: runs of creates are spliced from the
    # stored texts, so reading it back is the one way to every outcome alike.
    return {keys[result["index"]]: result for result in orjson.loads(answer.data)["results"]}


def _settled(keys: list[str], error: APIError) -> dict[str, dict[str, Any]]:
    wire = {"status": error.status_code, "error": error.to_envelope()["error"]}
    return dict.fromkeys(keys, wire)


def wire_operation(field_name: str, args: dict[str, Any]) -> WireOperation:
    """The typed batch operation a record-mutation field with its (coerced) arguments
    stands for."""
    record_id = args.get("id")
    hard = args.get("hard")
    return WireOperation(
        type=RECORD_MUTATIONS[field_name],  # type: ignore[arg-type]
        collection=args["collection"],
        id=msgspec.UNSET if record_id is None else record_id,
        data=args.get("data", msgspec.UNSET),
        options={"hard": hard} if hard is not None else None,
        if_match=args.get("ifVersion"),
    )


def _variables(info: GraphQLResolveInfo[Any]) -> VariableValues:
    """The operation's coerced variables as graphql-core's helpers take them (Strawberry
    hands resolvers the plain dict; the values are already coerced, so their sources are
    not needed)."""
    values: Any = info.variable_values
    return values if isinstance(values, VariableValues) else VariableValues({}, values)


def _root_fields(info: GraphQLResolveInfo[Any]) -> list[tuple[str, FieldNode]]:
    """The operation's root fields as GraphQL runs them, ``@skip``/``@include`` judged on
    the coerced variables."""
    variables = _variables(info)
    return root_fields(info.operation, info.fragments, lambda node: _included(variables, node))


def _included(variables: VariableValues, node: Any) -> bool:
    if not node.directives:
        return True
    skip = get_directive_values(GraphQLSkipDirective, node, variables)
    if skip is not None and skip.get("if") is True:
        return False
    include = get_directive_values(GraphQLIncludeDirective, node, variables)
    return not (include is not None and include.get("if") is False)
