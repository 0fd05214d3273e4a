"""plan_batch: normalisation, names, dependencies, references, options and cost."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchops._exceptions import (
    APIError,
    BatchTooLargeError,
    InvalidBatchRequestError,
    InvalidRequestError,
    MethodNotAllowedError,
)
from batchops.server.batch.model import BatchOptions, BatchPlan, PlannedOp
from batchops.server.batch.planner import plan_batch

RECORDS = "/v1/collections/people/records"


def plan(operations: list[dict[str, Any]], **extra: Any) -> BatchPlan:
    return plan_batch(orjson.dumps({"operations": operations, **extra}))


def planned(operations: list[dict[str, Any]], index: int = 0) -> PlannedOp:
    op = plan(operations).ops[index]
    assert isinstance(op, PlannedOp)
    return op


def rejected(operations: list[dict[str, Any]], **extra: Any) -> InvalidBatchRequestError:
    with pytest.raises(InvalidBatchRequestError) as info:
        plan(operations, **extra)
    return info.value


CREATE_A = {"id": "a", "method": "POST", "path": RECORDS, "body": {"data": {"name": "Ada"}}}


@pytest.mark.parametrize(
    ("rest", "typed"),
    [
        (
            {"id": "n", "method": "POST", "path": RECORDS, "body": {"id": "r1", "data": {"x": 1}}},
            {"ref": "n", "type": "create", "collection": "people", "id": "r1", "data": {"x": 1}},
        ),
        (
            {"method": "GET", "path": f"{RECORDS}/r1"},
            {"type": "read", "collection": "people", "id": "r1"},
        ),
        (
            {
                "method": "PATCH",
                "path": f"{RECORDS}/r1",
                "body": {"data": {"x": 2}},
                "headers": {"If-Match": "4"},
            },
            {"type": "update", "collection": "people", "id": "r1", "data": {"x": 2}, "if_match": 4},
        ),
        (
            {"method": "PUT", "path": f"{RECORDS}/r1", "body": {"data": {"x": 3}}},
            {"type": "replace", "collection": "people", "id": "r1", "data": {"x": 3}},
        ),
        (
            {"method": "DELETE", "path": f"{RECORDS}/r1?hard=true"},
            {"type": "delete", "collection": "people", "id": "r1", "options": {"hard": True}},
        ),
        (
            {"method": "GET", "path": f"{RECORDS}?team=core&limit=5"},
            {
                "type": "list",
                "collection": "people",
                "options": {"filters": {"team": "core"}, "limit": 5},
            },
        ),
        (
            {
                "method": "POST",
                "path": "/v1/collections/people/search",
                "body": {"query": "ada", "filters": {"team": "core"}, "limit": 5},
            },
            {
                "type": "search",
                "collection": "people",
                "query": "ada",
                "options": {"filters": {"team": "core"}, "limit": 5},
            },
        ),
    ],
)
def test_both_dialects_normalise_to_the_same_planned_op(
    rest: dict[str, Any], typed: dict[str, Any]
) -> None:
    assert planned([rest]) == planned([typed])


def test_too_many_operations_is_a_413_with_limit_and_actual() -> None:
    read = {"type": "read", "collection": "people", "id": "r1"}
    with pytest.raises(BatchTooLargeError) as info:
        plan_batch(orjson.dumps({"operations": [read] * 3}), max_operations=2)
    assert info.value.status_code == 413
    assert info.value.details == {"limit": 2, "actual": 3, "unit": "operations"}


def test_an_empty_batch_is_a_400() -> None:
    assert rejected([]).details["path"] == "operations"


def test_a_nested_batch_rejects_the_whole_batch_naming_the_operation_path() -> None:
    err = rejected([CREATE_A, {"method": "POST", "path": "/v1/batch", "body": {}}])
    assert err.details["path"] == "operations[1].path"
    assert err.details["index"] == 1


def test_an_unknown_path_is_a_per_operation_error_and_the_rest_still_plans() -> None:
    result = plan([CREATE_A, {"method": "GET", "path": "/v1/jobs/j1"}, CREATE_A | {"id": "c"}])
    first, bad, last = result.ops
    assert isinstance(first, PlannedOp)
    assert isinstance(last, PlannedOp)
    assert isinstance(bad, InvalidRequestError)
    assert (bad.status_code, bad.code) == (400, "UNSUPPORTED_OPERATION")
    assert bad.details["path"] == "operations[1].path"


def test_a_wrong_method_is_a_per_operation_405() -> None:
    bad = plan([{"method": "PUT", "path": RECORDS, "body": {"data": {}}}]).ops[0]
    assert isinstance(bad, MethodNotAllowedError)
    assert bad.details["path"] == "operations[0].method"


def test_a_structural_fault_is_a_per_operation_400_with_the_full_path() -> None:
    bad = plan([{"type": "list", "collection": "people", "options": {"limt": 50}}]).ops[0]
    assert isinstance(bad, APIError)
    assert bad.details["path"] == "operations[0].options.limt"


def test_a_reference_to_a_later_operation_is_rejected_naming_it() -> None:
    later_ref = {"method": "GET", "path": f"{RECORDS}/${{b.body.id}}"}
    err = rejected([later_ref, CREATE_A | {"id": "b"}])
    assert err.details == {
        "index": 0,
        "path": "operations[0].path",
        "name": "b",
        "reference": "b.body.id",
    }
    assert "later" in err.message


def test_a_reference_to_an_unknown_operation_is_rejected() -> None:
    op = {"type": "create", "collection": "people", "data": {"boss": "${nobody.body.id}"}}
    err = rejected([CREATE_A, op])
    assert (err.details["path"], err.details["name"]) == ("operations[1].data.boss", "nobody")


def test_a_depends_on_an_unknown_name_is_rejected_at_its_position() -> None:
    err = rejected(
        [CREATE_A, {"type": "read", "collection": "p", "id": "r", "depends_on": ["a", "x"]}]
    )
    assert err.details["path"] == "operations[1].depends_on[1]"


def test_an_operation_cannot_depend_on_itself() -> None:
    err = rejected([CREATE_A | {"depends_on": ["a"]}])
    assert "itself" in err.message


def test_duplicate_names_are_rejected_naming_both_indexes() -> None:
    read = {"ref": "a", "type": "read", "collection": "people", "id": "r1"}
    err = rejected([CREATE_A, read])
    assert err.details["indexes"] == [0, 1]
    assert err.details["path"] == "operations[1].ref"


def test_a_name_that_cannot_be_referenced_is_rejected() -> None:
    err = rejected([CREATE_A | {"id": "a.b"}])
    assert err.details["path"] == "operations[0].id"


def test_a_malformed_reference_rejects_the_batch_with_its_path() -> None:
    err = rejected([CREATE_A | {"body": {"data": {"x": "${a"}}}])
    assert err.details["path"] == "operations[0].body.data.x"


def test_depends_on_is_folded_with_references() -> None:
    ops: list[dict[str, Any]] = [
        CREATE_A,
        CREATE_A | {"id": "b"},
        {"ref": "c0", "type": "read", "collection": "p", "id": "r"},
        {
            "type": "update",
            "collection": "people",
            "id": "${b.body.id}",
            "data": {"n": "${a.body.n}"},
            "depends_on": ["c0"],
        },
    ]
    op = planned(ops, index=3)
    assert op.depends_on == (0, 1, 2)
    assert op.references == (0, 1)
    assert op.has_references is True


def test_an_operation_with_only_escapes_still_needs_resolving() -> None:
    op = planned([{"type": "create", "collection": "p", "data": {"t": "$${literal}"}}])
    assert (op.has_references, op.references) == (True, ())


def test_an_operation_without_templates_skips_resolving() -> None:
    assert planned([CREATE_A]).has_references is False


def test_default_options_are_the_wire_defaults() -> None:
    assert plan([CREATE_A]).options == BatchOptions()


def test_options_are_carried_into_batch_options() -> None:
    options = {"parallel": 4, "timeout_ms": 500, "max_retries": 2, "suppress_success": True}
    assert plan([CREATE_A], options=options).options == BatchOptions(
        parallel=4, timeout_ms=500, max_retries=2, suppress_success=True
    )


def test_an_atomic_batch_does_not_continue_on_error() -> None:
    assert plan([CREATE_A], options={"atomic": True}).options.continue_on_error is False


def test_atomic_with_continue_on_error_true_is_rejected() -> None:
    err = rejected([CREATE_A], options={"atomic": True, "continue_on_error": True})
    assert err.details["path"] == "options.continue_on_error"


def test_atomic_with_atomicity_groups_is_allowed() -> None:
    result = plan([CREATE_A | {"atomicity_group": "g1"}], options={"atomic": True})
    op = result.ops[0]
    assert isinstance(op, PlannedOp)
    assert (result.options.atomic, op.atomicity_group) == (True, "g1")


def test_names_map_to_indexes() -> None:
    assert plan([CREATE_A, CREATE_A | {"id": "b"}]).names == {"a": 0, "b": 1}


def test_cost_weighs_reads_one_writes_two_searches_five() -> None:
    result = plan(
        [
            CREATE_A,
            {"type": "read", "collection": "p", "id": "r"},
            {"type": "list", "collection": "p"},
            {"type": "search", "collection": "p", "query": "q"},
            {"type": "delete", "collection": "p", "id": "r"},
            {"method": "GET", "path": "/v1/nope"},
        ]
    )
    assert result.cost == {
        "operations": 6,
        "reads": 2,
        "writes": 2,
        "searches": 1,
        "invalid": 1,
        "units": 1 + 1 + 2 + 2 + 5,
    }
