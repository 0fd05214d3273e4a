"""Plan a ``POST /v1/batch`` body: decode, validate, normalise, order. Pure, no I/O.

:func:`plan_batch` turns the request body into a :class:`BatchPlan`:

1. decode and check the shape (:func:`batchops.server.batch.wire.decode_batch`): a body
   that is not a batch is rejected whole (400 ``INVALID_BATCH_REQUEST`` with the JSON
   path; 413 ``BATCH_TOO_LARGE`` past ``max_operations``; 400 for an empty list); a
   malformed operation fails alone unless the batch is atomic;
2. names (REST ``id`` / typed ``ref``) must be unique and referenceable
   (:data:`batchops.server.batch.refs.NAME_RE`);
3. ``depends_on`` names and ``${name...}`` references must name an *earlier* operation, so
   the dependency graph is acyclic by construction; ``PlannedOp.depends_on`` is the union of
   both (sorted indexes), ``references`` the referenced ones only;
4. each operation is routed (:mod:`batchops.server.batch.routing`). A routing error (unknown
   path, wrong method, missing data...) does not reject the batch: it takes the operation's
   place in ``BatchPlan.ops`` and the rest still runs (dependents get 424 from the executor).
   A ``/v1/batch`` path is the exception: the whole batch is rejected.

``atomic: true`` together with ``atomicity_group`` on operations is allowed: the whole batch
is one transaction and the groups add nothing ("atomic wins"). An operation may depend on
an operation of another atomicity group.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import msgspec

from batchops._exceptions import APIError, InvalidBatchRequestError, InvalidRequestError
from batchops.server.batch.model import BatchOptions, BatchPlan, PlannedOp
from batchops.server.batch.refs import NAME_RE, has_templates, iter_templates, may_hold_templates
from batchops.server.batch.routing import Route, route_rest, route_typed
from batchops.server.batch.wire import (
    DEFAULT_MAX_OPERATIONS,
    BatchRequest,
    MalformedOperation,
    WireOperation,
    WireOptions,
    decode_batch,
    op_path,
)
from batchops.server.limits import whole_number
from batchops.server.records import service
from batchops.server.records.service import PreparedCreates

__all__ = ["COST_WEIGHTS", "plan_batch", "plan_options", "plan_request"]

COST_WEIGHTS: Final[Mapping[str, int]] = {
    "read": 1,
    "list": 1,
    "create": 2,
    "update": 2,
    "replace": 2,
    "delete": 2,
    "restore": 2,
    "search": 5,
}
"""Cost units per operation type: read/list 1, writes (restore too) 2, search 5; an
invalid op costs 0."""

_COST_KIND: Final[Mapping[str, str]] = {
    "read": "reads",
    "list": "reads",
    "create": "writes",
    "update": "writes",
    "replace": "writes",
    "delete": "writes",
    "restore": "writes",
    "search": "searches",
}


def plan_batch(
    body: bytes, *, max_operations: int = DEFAULT_MAX_OPERATIONS, runs: bool = True
) -> BatchPlan:
    """Decode and plan a ``POST /v1/batch`` body (see the module docstring for the steps).

    ``BatchPlan.cost`` is ``{"operations", "reads", "writes", "searches", "invalid",
    "units"}``: counts by kind (list counts as a read) and weighted units per
    :data:`COST_WEIGHTS` (read/list 1, create/update/replace/delete 2, search 5; operations
    that failed planning cost nothing), e.g. for rate limiting or ``meta.cost``.

    Raises :class:`InvalidBatchRequestError` (400) or :class:`BatchTooLargeError` (413) when
    the batch as a whole is rejected; per-operation problems are in ``BatchPlan.ops``.

    ``runs``: plan a batch of plain creates as runs (see :class:`BatchPlan`); False for a
    caller that needs the operations one by one anyway (a stream).
    """
    return plan_request(
        decode_batch(body, max_operations=max_operations),
        may_have_templates=may_hold_templates(body),
        runs=runs,
    )


def plan_request(
    request: BatchRequest, *, may_have_templates: bool = True, runs: bool = True
) -> BatchPlan:
    """Plan an already decoded request, as returned by :func:`decode_batch`.

    ``may_have_templates=False`` promises that no string holds ``${`` (the caller checked
    the raw body), which skips the template scan; only then can a batch of plain creates
    be planned as runs (``runs``).
    """
    options = plan_options(request.options)
    operations = request.operations
    if runs and not may_have_templates and not options.validate_only:
        planned = _create_runs(operations, plain=request.plain_creates)
        if planned is not None:
            create_runs, names = planned
            n = len(operations)
            cost = {"operations": n, "reads": 0, "writes": n, "searches": 0, "invalid": 0}
            cost["units"] = COST_WEIGHTS["create"] * n
            return BatchPlan(
                None, options, names, cost, request.notification_webhook, runs=create_runs
            )
    names = _collect_names(operations)
    ops: list[PlannedOp | APIError] = [
        _plan_op(index, op, names, may_have_templates) for index, op in enumerate(operations)
    ]
    return BatchPlan(
        ops=ops,
        options=options,
        names=names,
        cost=_cost(ops),
        notification_webhook=request.notification_webhook,
    )


def plan_options(options: WireOptions) -> BatchOptions:
    """Turn wire options into :class:`BatchOptions`, rejecting contradictory combinations.

    An atomic batch stops at the first failure and rolls back, so ``continue_on_error`` is
    set to False for it, and an explicit ``continue_on_error: true`` is rejected (400) rather
    than silently ignored.
    """
    if options.atomic and options.continue_on_error is True:
        raise InvalidBatchRequestError(
            "options.continue_on_error cannot be true when options.atomic is true: an atomic "
            "batch rolls back at the first failure; drop one of the two",
            details={"path": "options.continue_on_error"},
        )
    continue_on_error = False if options.atomic else options.continue_on_error is not False
    return BatchOptions(
        atomic=options.atomic,
        continue_on_error=continue_on_error,
        parallel=_whole(options.parallel, "options.parallel"),
        timeout_ms=(
            None if options.timeout_ms is None else _whole(options.timeout_ms, "options.timeout_ms")
        ),
        suppress_success=options.suppress_success,
        validate_only=options.validate_only,
        max_retries=_whole(options.max_retries, "options.max_retries"),
    )


def _whole(value: float, path: str) -> int:
    """An option that counts, as an int: ``2.0`` is 2 (JSON has one number type), ``2.5``
    is refused (its bounds were checked as it was decoded)."""
    number = whole_number(value)
    if number is None:
        raise InvalidBatchRequestError(f"{path} must be an integer", details={"path": path})
    return number


def _collect_names(operations: list[WireOperation | MalformedOperation]) -> dict[str, int]:
    names: dict[str, int] = {}
    for index, op in enumerate(operations):
        name = op.name
        if name is None:
            continue
        if isinstance(op, MalformedOperation):  # its name was checked as it was read
            first = names.setdefault(name, index)
            if first != index:
                raise InvalidBatchRequestError(
                    f"operations {first} and {index} are both named {name!r}: names must be unique",
                    details={"path": op_path(index), "name": name, "indexes": [first, index]},
                )
            continue
        field = "id" if op.is_rest else "ref"
        if not NAME_RE.fullmatch(name):
            raise InvalidBatchRequestError(
                f"operation {index}: name {name!r} must be 1-128 characters without '.', '$', "
                "'{', '}' or whitespace, so that ${name.field} can refer to it",
                details={"path": op_path(index, field), "index": index, "name": name},
            )
        first = names.setdefault(name, index)
        if first != index:
            raise InvalidBatchRequestError(
                f"operations {first} and {index} are both named {name!r}: names must be unique",
                details={"path": op_path(index, field), "name": name, "indexes": [first, index]},
            )
    return names


# The one REST path a run takes. A collection name needs no percent-decoding (its
# alphabet is URL-safe); any other spelling (escapes, a query string) is planned one by
# one, which routes it the same way or answers its error.
_RECORDS_PATH_RE: Final = re.compile(
    r"/v1/collections/([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})/records/?"
)
_CREATE_BODY_KEYS: Final = frozenset({"data", "id"})


def _create_runs(
    operations: list[WireOperation | MalformedOperation], *, plain: bool
) -> tuple[list[PreparedCreates], dict[str, int]] | None:
    """The batch as runs of creates (checked and encoded by the records service) and its
    names, when every operation is a plain create with valid data, ids and names, else
    None: then each operation is planned, and answered, on its own (and a bad name is
    :func:`_collect_names`' 400). ``plain``: every operation is a
    :class:`~batchops.server.batch.wire.PlainCreate` (msgspec checked their shape)."""
    items: list[tuple[str, str | None, Any]]
    named: list[tuple[str, int]]
    unset = msgspec.UNSET
    if plain:
        creates: list[Any] = operations
        items = [(op.collection, None if op.id is unset else op.id, op.data) for op in creates]
        named = [(op.ref, index) for index, op in enumerate(creates) if op.ref is not None]
    else:
        items, named = [], []
        if not _creates_of_either_dialect(operations, items, named):
            return None
    names = dict(named)
    if len(names) != len(named) or not all(NAME_RE.fullmatch(name) for name in names):
        return None
    runs: list[PreparedCreates] = []
    start, n = 0, len(items)
    try:
        while start < n:
            collection = items[start][0]
            end = start + 1
            while end < n and items[end][0] == collection:
                end += 1
            runs.append(
                service.prepare_creates(
                    collection, [(record_id, data) for _, record_id, data in items[start:end]]
                )
            )
            start = end
    except APIError:
        return None  # the operations planned one by one answer it, each its own
    return runs, names


def _creates_of_either_dialect(
    operations: list[WireOperation | MalformedOperation],
    items: list[tuple[str, str | None, Any]],
    named: list[tuple[str, int]],
) -> bool:
    """Fill ``items`` (collection, id, data) and ``named`` (name, index) when every
    operation is a plain create of either dialect; False at the first that is not."""
    append = items.append
    unset = msgspec.UNSET
    for index, op in enumerate(operations):
        if (
            type(op) is not WireOperation
            or op.depends_on is not None
            or op.atomicity_group is not None
        ):
            return False
        if op.method is None:  # typed: decode_batch saw type and collection
            record_id = op.id
            if (
                op.type != "create"
                or type(op.data) is not dict
                or op.options is not None
                or op.query is not None
                or op.if_match is not None
                or record_id is None  # "id": null is routing's 400
            ):
                return False
            if op.ref is not None:
                named.append((op.ref, index))
            collection: Any = op.collection
            append((collection, None if record_id is unset else record_id, op.data))
            continue
        body = op.body
        if op.method != "POST" or op.headers is not None or type(body) is not dict:
            return False
        path: Any = op.path  # decode_batch saw it
        match = _RECORDS_PATH_RE.fullmatch(path)
        record_id = body.get("id")
        if (
            match is None
            or not body.keys() <= _CREATE_BODY_KEYS
            or type(body.get("data")) is not dict
            or not (record_id is None or type(record_id) is str)
            or ("id" in body and record_id is None)
        ):
            return False
        if type(op.id) is str:
            named.append((op.id, index))
        append((match[1], record_id, body["data"]))
    return True


def _plan_op(
    index: int,
    op: WireOperation | MalformedOperation,
    names: dict[str, int],
    may_have_templates: bool = True,
) -> PlannedOp | APIError:
    if isinstance(op, MalformedOperation):
        return op.error  # answered as this operation's result; dependents get 424
    if op.atomicity_group == "":
        raise InvalidBatchRequestError(
            f"operation {index}: atomicity_group must be a non-empty string",
            details={"path": op_path(index, "atomicity_group"), "index": index},
        )
    depends_on: set[int] = set()
    for position, name in enumerate(op.depends_on) if op.depends_on else ():
        target = names.get(name)
        if target is None or target >= index:
            path = op_path(index, f"depends_on[{position}]")
            raise _not_earlier(index, name, target, path, "depends on")
        depends_on.add(target)

    references: set[int] = set()
    has_references = False
    for field, value in _template_fields(op) if may_have_templates else ():
        if not has_templates(value):  # the common case: no walk, no path strings
            continue
        has_references = True  # escapes too: resolve() must unescape them
        try:
            found = iter_templates(value, op_path(index, field))
        except InvalidRequestError as exc:  # a malformed ${...}: the batch cannot be planned
            raise InvalidBatchRequestError(
                f"operation {index}: {exc.message}", details=exc.details
            ) from None
        for item in found:
            if item.name is None:
                continue
            target = names.get(item.name)
            if target is None or target >= index:
                raise _not_earlier(index, item.name, target, item.path, "refers to", item.reference)
            references.add(target)

    try:
        route = _route(op)
    except InvalidBatchRequestError as exc:
        exc.details["path"] = op_path(index, exc.details.get("path", ""))
        exc.details["index"] = index
        raise
    except APIError as exc:
        # A per-operation error: it becomes this operation's result; the batch goes on.
        exc.details["path"] = op_path(index, exc.details.get("path", ""))
        return exc

    # Positional: this runs once per operation, and most have no dependencies at all.
    return PlannedOp(
        index,
        route.type,
        route.collection,
        op.name,
        route.record_id,
        route.data,
        route.query,
        route.params,
        route.if_match,
        tuple(sorted(depends_on | references)) if depends_on or references else (),
        tuple(sorted(references)) if references else (),
        op.atomicity_group,
        has_references,
    )


def _route(op: WireOperation) -> Route:
    if op.method is not None:
        assert op.path is not None  # decode_batch guarantees it
        return route_rest(op.method, op.path, op.body, op.headers)
    # decode_batch guarantees both for a typed operation
    assert op.type is not None
    assert op.collection is not None
    return route_typed(
        op.type,
        op.collection,
        record_id=op.id,  # UNSET when absent, None when an explicit null
        data=op.data,
        query=op.query,
        options=op.options,
        if_match=op.if_match,
    )


def _template_fields(op: WireOperation) -> Iterator[tuple[str, Any]]:
    """The wire fields that may hold ``${...}`` templates (what routing copies into the op)."""
    if op.method is not None:
        yield "path", op.path
        if op.body is not msgspec.UNSET:
            yield "body", op.body
        return
    yield "collection", op.collection
    if isinstance(op.id, str):
        yield "id", op.id
    if op.data is not msgspec.UNSET:
        yield "data", op.data
    if op.query is not None:
        yield "query", op.query
    if op.options is not None:
        yield "options", op.options


def _not_earlier(
    index: int,
    name: str,
    target: int | None,
    path: str,
    kind: str,
    reference: str | None = None,
) -> InvalidBatchRequestError:
    if target is None:
        why = f"no operation is named {name!r}"
    elif target == index:
        why = "an operation cannot depend on itself"
    else:
        why = f"{name!r} is operation {target}, which comes later"
    details: dict[str, Any] = {"index": index, "path": path, "name": name}
    if reference is not None:
        details["reference"] = reference
    return InvalidBatchRequestError(
        f"operation {index} {kind} {name!r} at {path}: {why}; an operation may only depend "
        "on earlier operations",
        details=details,
    )


def _cost(ops: list[PlannedOp | APIError]) -> dict[str, int]:
    cost = {"operations": len(ops), "reads": 0, "writes": 0, "searches": 0, "invalid": 0}
    units = 0
    for op in ops:
        if isinstance(op, PlannedOp):
            cost[_COST_KIND[op.type]] += 1
            units += COST_WEIGHTS[op.type]
        else:
            cost["invalid"] += 1
    cost["units"] = units
    return cost
