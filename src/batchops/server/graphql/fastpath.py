"""The aliased-records fast path: a document that is only aliased ``record`` reads, or only
record mutations, with literal arguments and scalar selections, answered without
graphql-core's validator and executor — the same answer, byte for byte.

Why (measured, docs/benchmarks.md "GraphQL"): graphql-core validates at ~20 µs per node
of a document (every rule walks it again) and executes at ~80 µs per aliased field
(a coroutine, a task and completion per field and per sub-field), so 100 aliased
``record`` fields cost ~50 ms to validate and ~8 ms to run, against ~1.4 ms for the same
100 reads in one ``/v1/batch``. The shape users batch with — many aliases of one field,
each a handful of scalars — is the shape this module recognises, strictly:

- one operation, no fragments, no directive but ``@atomic`` on a mutation;
- a query whose root fields are all ``record(collection: …, id: …)``, or a mutation
  whose root fields are all record mutations, every argument a literal of its type
  (no null for a required one, an ``Int`` within 32 bits) or a variable declared with
  exactly its type (``String``, ``ID``, ``Int``, ``Boolean``, ``JSON``; non-null where the
  argument is; no default), every declared variable used, each root response key once;
- each selecting scalar fields of the result type only (``__typename`` too), without
  arguments or directives, a response key naming one field.

Such a document is valid by construction (no rule of the spec can fail it: the checks
above are the ones that could), and its alias count is checked against the server's limit
as the validator's limit would; anything else — one field outside the shape — takes the
full GraphQL path. Variables are coerced by graphql-core's own ``get_variable_values``
(its errors are the answer, as the executor's would be). The reads go through the
operation's loader and the mutations through
:mod:`batchops.server.graphql.mutations` exactly as the resolvers do, and every error is
built as graphql-core builds a resolver's (message, location, path) and formatted by the
one formatter; ``tests/graphql_api/test_fastpath.py`` runs documents both ways and
compares the answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    IntValueNode,
    ListValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    ValueNode,
    VariableNode,
    get_argument_values,
    get_variable_values,
)
from graphql.execution.values import VariableValues

from batchops._exceptions import APIError
from batchops.server.graphql.context import OperationContext
from batchops.server.graphql.errors import error_entry, renamed_for_graphql
from batchops.server.graphql.mutations import (
    ATOMIC,
    RECORD_MUTATIONS,
    outcome_error,
    run_record_operations,
    wire_operation,
)

__all__ = ["SimpleOperation", "run_simple", "simple_operation"]

_INT32: Final = range(-(2**31), 2**31)

# What each root field takes: argument → (kind, required). Kinds: "string", "id", "int",
# "bool", "json" (any literal without a variable).
_ARGUMENTS: Final[dict[str, dict[str, tuple[str, bool]]]] = {
    "record": {"collection": ("string", True), "id": ("id", True)},
    "createRecord": {"collection": ("string", True), "data": ("json", True), "id": ("id", False)},
    "updateRecord": {
        "collection": ("string", True),
        "id": ("id", True),
        "data": ("json", True),
        "ifVersion": ("int", False),
    },
    "replaceRecord": {
        "collection": ("string", True),
        "id": ("id", True),
        "data": ("json", True),
        "ifVersion": ("int", False),
    },
    "deleteRecord": {
        "collection": ("string", True),
        "id": ("id", True),
        "hard": ("bool", False),
        "ifVersion": ("int", False),
    },
    "restoreRecord": {
        "collection": ("string", True),
        "id": ("id", True),
        "ifVersion": ("int", False),
    },
}

# The scalar fields of each result type: GraphQL name → the body's key.
_RECORD_FIELDS: Final = {
    "id": "id",
    "collection": "collection",
    "data": "data",
    "version": "version",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "deletedAt": "deleted_at",
}
_DELETED_FIELDS: Final = {
    "id": "id",
    "collection": "collection",
    "deleted": "deleted",
    "hard": "hard",
    "version": "version",
}
_RESULT_TYPES: Final = {
    "record": ("Record", _RECORD_FIELDS),
    "createRecord": ("Record", _RECORD_FIELDS),
    "updateRecord": ("Record", _RECORD_FIELDS),
    "replaceRecord": ("Record", _RECORD_FIELDS),
    "restoreRecord": ("Record", _RECORD_FIELDS),
    "deleteRecord": ("DeletedRecord", _DELETED_FIELDS),
}


@dataclass(frozen=True, slots=True)
class _Root:
    key: str
    node: FieldNode
    selection: tuple[tuple[str, str | None], ...]  # (response key, body key; None: typename)
    type_name: str


@dataclass(frozen=True, slots=True)
class SimpleOperation:
    """A document the fast path answers (see the module docstring)."""

    mutation: bool
    atomic: bool
    roots: tuple[_Root, ...]
    operation: OperationDefinitionNode
    variables: tuple[tuple[str, str, bool], ...]  # (name, kind, non-null), as declared


def simple_operation(
    document: DocumentNode, operation_name: str | None, max_aliases: int, max_depth: int
) -> SimpleOperation | None:
    """The fast path's plan of ``document``, or None when it is not of the shape (then
    the full GraphQL path answers it)."""
    if len(document.definitions) != 1 or max_depth < 1:
        return None
    operation = document.definitions[0]
    if not isinstance(operation, OperationDefinitionNode):
        return None
    declared = _declared_variables(operation)
    if declared is None:
        return None
    if operation_name is not None and (
        operation.name is None or operation.name.value != operation_name
    ):
        return None
    mutation = operation.operation == OperationType.MUTATION
    if not mutation and operation.operation != OperationType.QUERY:
        return None
    atomic = False
    for directive in operation.directives or ():
        if not mutation or directive.name.value != ATOMIC or directive.arguments or atomic:
            return None
        atomic = True
    roots: list[_Root] = []
    keys: set[str] = set()
    used: set[str] = set()
    aliases = 0
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return None
        name = selection.name.value
        if (name in RECORD_MUTATIONS) != mutation or name not in _ARGUMENTS:
            return None
        key = selection.alias.value if selection.alias else name
        if key in keys or not _arguments(selection, _ARGUMENTS[name], declared, used):
            return None
        keys.add(key)
        aliases += selection.alias is not None
        type_name, fields = _RESULT_TYPES[name]
        chosen = _scalar_selection(selection, fields)
        if chosen is None:
            return None
        aliases += chosen[1]
        roots.append(_Root(key, selection, chosen[0], type_name))
    if not roots or aliases > max_aliases or used != declared.keys():
        return None  # a variable declared and not used: the validator's error
    declared_variables = tuple(
        (name, kind, non_null) for name, (kind, non_null) in declared.items()
    )
    return SimpleOperation(mutation, atomic, tuple(roots), operation, declared_variables)


_VARIABLE_TYPES: Final = {
    "String": "string",
    "ID": "id",
    "Int": "int",
    "Boolean": "bool",
    "JSON": "json",
}
"""The variable types the fast path takes, and the argument kind each may feed."""


def _declared_variables(
    operation: OperationDefinitionNode,
) -> dict[str, tuple[str, bool]] | None:
    """The operation's variables: name → (kind, non-null); None when one is outside the
    shape (a default value, a directive, a list or input type, a name twice)."""
    declared: dict[str, tuple[str, bool]] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_node: Any = definition.type
        non_null = isinstance(type_node, NonNullTypeNode)
        if non_null:
            type_node = type_node.type
        if (
            name in declared
            or definition.default_value is not None
            or definition.directives
            or not isinstance(type_node, NamedTypeNode)
            or type_node.name.value not in _VARIABLE_TYPES
        ):
            return None
        declared[name] = (_VARIABLE_TYPES[type_node.name.value], non_null)
    return declared


def _arguments(
    node: FieldNode,
    spec: dict[str, tuple[str, bool]],
    declared: dict[str, tuple[str, bool]],
    used: set[str],
) -> bool:
    """Whether every argument of ``node`` is known, given once, and a literal of its type
    or a variable declared with exactly its type (non-null where the argument is)."""
    given: set[str] = set()
    for argument in node.arguments or ():
        name = argument.name.value
        if name in given or name not in spec:
            return False
        value = argument.value
        if isinstance(value, VariableNode):
            variable = declared.get(value.name.value)
            kind, required = spec[name]
            if variable is None or variable[0] != kind or (required and not variable[1]):
                return False
            used.add(value.name.value)
        elif not _literal(value, spec[name]):
            return False
        given.add(name)
    return all(name in given for name, (_, required) in spec.items() if required)


def _literal(value: ValueNode, spec: tuple[str, bool]) -> bool:
    kind, required = spec
    if isinstance(value, NullValueNode):
        return not required
    if kind == "string":
        return isinstance(value, StringValueNode)
    if kind == "id":
        return isinstance(value, StringValueNode | IntValueNode)
    if kind == "int":
        return isinstance(value, IntValueNode) and int(value.value) in _INT32
    if kind == "bool":
        return isinstance(value, BooleanValueNode)
    return _no_variable(value)  # json: any literal


def _no_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return False
    if isinstance(value, ListValueNode):
        return all(_no_variable(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return all(_no_variable(field.value) for field in value.fields)
    return True


def _scalar_selection(
    node: FieldNode, fields: dict[str, str]
) -> tuple[tuple[tuple[str, str | None], ...], int] | None:
    """((response key, body key), …) and the aliases among them, or None."""
    if node.selection_set is None:
        return None
    chosen: dict[str, str] = {}
    aliases = 0
    for selection in node.selection_set.selections:
        if (
            not isinstance(selection, FieldNode)
            or selection.directives
            or selection.arguments
            or selection.selection_set is not None
        ):
            return None
        name = selection.name.value
        if name != "__typename" and name not in fields:
            return None
        key = selection.alias.value if selection.alias else name
        if chosen.setdefault(key, name) != name:
            return None  # one response key, two fields: the validator's conflict
        aliases += selection.alias is not None
    return tuple((key, fields.get(name)) for key, name in chosen.items()), aliases


async def run_simple(
    plan: SimpleOperation,
    schema: GraphQLSchema,
    context: OperationContext,
    variables: dict[str, Any] | None,
    document: DocumentNode,
) -> dict[str, Any]:
    """The response to ``plan`` with ``variables``: ``{"data", "errors"?}`` (or, when a
    variable does not fit its type, ``{"errors"}``), as the full path gives it."""
    coerced = _coerced(plan.variables, variables or {}) or get_variable_values(
        schema, plan.operation.variable_definitions or (), variables or {}
    )
    if isinstance(coerced, list):  # graphql-core's own coercion errors, as its executor's
        return {"errors": [error_entry(error, document) for error in coerced]}
    root_type = schema.mutation_type if plan.mutation else schema.query_type
    assert root_type is not None
    args = [
        get_argument_values(root_type.fields[root.node.name.value], root.node, coerced)
        for root in plan.roots
    ]
    errors: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    if plan.mutation:
        keys = [root.key for root in plan.roots]
        operations = [
            wire_operation(root.node.name.value, given)
            for root, given in zip(plan.roots, args, strict=True)
        ]
        outcomes = await run_record_operations(context, keys, operations, atomic=plan.atomic)
        for root in plan.roots:
            outcome = outcomes[root.key]
            error = outcome_error(outcome)
            _answer(root, error if error is not None else outcome["body"], data, errors)
    else:
        tenant, loader = context.tenant, context.loader
        loads = [loader.load((tenant, given["collection"], given["id"])) for given in args]
        loaded = await asyncio.gather(*loads, return_exceptions=True)
        for root, value in zip(plan.roots, loaded, strict=True):
            _answer(root, value, data, errors)
    response: dict[str, Any] = {"data": data}
    if errors:
        response["errors"] = errors
    return response


def _coerced(
    declared: tuple[tuple[str, str, bool], ...], given: dict[str, Any]
) -> VariableValues | None:
    """The variables as graphql-core coerces them, for the values that are plainly of
    their type; None when any needs graphql-core's own judgement (a missing or null
    non-null one, a value of another type, a float for an Int…), which then coerces them
    all and words the errors. graphql-core's coercion walks each value for its nesting
    first: ~20 µs a variable, a fifth of a 100-create document's time (measured)."""
    coerced: dict[str, Any] = {}
    for name, kind, non_null in declared:
        if name not in given:
            if non_null:
                return None
            continue  # left out, as graphql-core leaves it: the argument is absent
        value = given[name]
        kind_of = type(value)
        if value is None:
            if non_null:
                return None
        elif kind == "json":
            pass  # the JSON scalar takes any value as it is
        elif kind == "id" and kind_of is int:
            value = str(value)
        elif not (
            (kind in ("string", "id") and kind_of is str)
            or (kind == "int" and kind_of is int and value in _INT32)
            or (kind == "bool" and kind_of is bool)
        ):
            return None
        coerced[name] = value
    return VariableValues({}, coerced)


def _answer(root: _Root, value: Any, data: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    if isinstance(value, BaseException):
        if not isinstance(value, Exception):
            raise value  # a cancellation: not the field's outcome
        data[root.key] = None
        errors.append(_field_error(root, value))
        return
    if value is None:
        data[root.key] = None
        return
    data[root.key] = {
        key: root.type_name if field is None else value.get(field) for key, field in root.selection
    }


def _field_error(root: _Root, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, APIError):
        exc = renamed_for_graphql(exc)
    located = GraphQLError(str(exc), nodes=[root.node], path=[root.key], original_error=exc)
    return error_entry(located, None)
