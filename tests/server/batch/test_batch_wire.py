"""The /v1/batch wire model: every decode fault is a 400 naming its JSON path — of the whole
batch when the body is not a batch (or the batch is atomic), of the one operation when
that operation alone is malformed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchops._exceptions import BatchTooLargeError, InvalidBatchRequestError, InvalidRequestError
from batchops.server.batch.wire import (
    MalformedOperation,
    PlainCreate,
    WireOperation,
    decode_batch,
)


def body(operations: Any, **extra: Any) -> bytes:
    return orjson.dumps({"operations": operations, **extra})


READ = {"method": "GET", "path": "/v1/collections/people/records/r1"}


def decode_error(raw: bytes) -> InvalidBatchRequestError:
    with pytest.raises(InvalidBatchRequestError) as info:
        decode_batch(raw)
    assert info.value.status_code == 400
    assert info.value.code == "INVALID_BATCH_REQUEST"
    return info.value


def op_error(operations: list[Any], index: int) -> InvalidRequestError:
    """The 400 of malformed operation ``index`` in a non-atomic batch, after checking that
    the same operations make an atomic batch a whole-batch 400 at the same path."""
    request = decode_batch(body(operations))
    malformed = request.operations[index]
    assert isinstance(malformed, MalformedOperation)
    assert malformed.error.status_code == 400
    assert all(
        isinstance(op, WireOperation) for i, op in enumerate(request.operations) if i != index
    )
    atomic = decode_error(body(operations, options={"atomic": True}))
    assert atomic.details["path"] == malformed.error.details["path"]
    return malformed.error


def test_a_method_of_the_wrong_type_is_reported_at_its_json_path() -> None:
    err = op_error([READ, READ, {"method": 5, "path": "/v1/x"}], 2)
    assert err.details["path"] == "operations[2].method"


def test_an_unknown_method_is_reported_at_its_json_path() -> None:
    err = op_error([{"method": "HEAD", "path": "/v1/x"}], 0)
    assert err.details["path"] == "operations[0].method"


def test_a_rest_operation_without_path_is_rejected_at_that_path() -> None:
    err = op_error([READ, {"method": "GET"}], 1)
    assert err.details["path"] == "operations[1].path"


def test_a_typed_operation_without_collection_is_rejected_at_that_path() -> None:
    err = op_error([{"type": "read", "id": "r1"}], 0)
    assert err.details["path"] == "operations[0].collection"


def test_an_unknown_option_key_is_rejected_at_the_key() -> None:
    err = decode_error(body([READ], options={"paralel": 4}))
    assert err.details["path"] == "options.paralel"


def test_an_unknown_top_level_key_is_rejected() -> None:
    err = decode_error(body([READ], operation=[]))
    assert err.details["path"] == "operation"


def test_an_unknown_operation_field_is_rejected_at_the_field() -> None:
    err = op_error([{**READ, "bdy": {}}], 0)
    assert err.details["path"] == "operations[0].bdy"


def test_a_body_that_is_not_json_is_a_400_with_the_byte_offset() -> None:
    err = decode_error(b"{not json")
    assert err.details["path"] == ""
    assert err.details["byte"] == 1


def test_operations_that_is_not_a_list_is_rejected_at_operations() -> None:
    err = decode_error(orjson.dumps({"operations": {"a": READ}}))
    assert err.details["path"] == "operations"


def test_a_missing_operations_key_is_rejected_at_operations() -> None:
    err = decode_error(b"{}")
    assert err.details["path"] == "operations"


def test_a_body_that_is_not_an_object_is_rejected_at_the_root() -> None:
    err = decode_error(b"[]")
    assert err.details["path"] == ""


def test_parallel_below_one_is_rejected_with_a_teaching_message() -> None:
    err = decode_error(body([READ], options={"parallel": 0}))
    assert err.details["path"] == "options.parallel"
    assert ">= 1" in err.message


def test_max_retries_above_ten_is_rejected() -> None:
    err = decode_error(body([READ], options={"max_retries": 11}))
    assert err.details["path"] == "options.max_retries"


def test_an_operation_with_both_method_and_type_is_rejected_at_the_operation() -> None:
    err = op_error([READ, {**READ, "type": "read", "collection": "people"}], 1)
    assert err.details["path"] == "operations[1]"


def test_an_operation_with_neither_method_nor_type_is_rejected_at_the_operation() -> None:
    err = op_error([{"path": "/v1/collections/people/records"}], 0)
    assert err.details["path"] == "operations[0]"


def test_a_typed_field_on_a_rest_operation_is_rejected_rather_than_ignored() -> None:
    err = op_error([{**READ, "data": {"x": 1}}], 0)
    assert err.details["path"] == "operations[0].data"


def test_a_rest_field_on_a_typed_operation_is_rejected_rather_than_ignored() -> None:
    err = op_error([{"type": "create", "collection": "c", "body": {"data": {}}}], 0)
    assert err.details["path"] == "operations[0].body"


def test_an_empty_operations_list_is_a_400() -> None:
    err = decode_error(body([]))
    assert err.details["path"] == "operations"


def test_too_many_operations_is_a_413_with_limit_and_actual() -> None:
    with pytest.raises(BatchTooLargeError) as info:
        decode_batch(body([READ] * 4), max_operations=3)
    assert info.value.status_code == 413
    assert info.value.code == "BATCH_TOO_LARGE"
    assert info.value.details == {"limit": 3, "actual": 4, "unit": "operations"}


def test_the_size_limit_is_checked_before_the_operations_are_inspected() -> None:
    with pytest.raises(BatchTooLargeError):
        decode_batch(body([{"path": "/v1/x"}] * 4), max_operations=3)


def test_body_absent_and_body_null_stay_distinguishable() -> None:
    request = decode_batch(body([READ, {**READ, "body": None}]))
    absent, null = request.operations
    assert isinstance(absent, WireOperation)
    assert isinstance(null, WireOperation)
    assert absent.body is not None
    assert null.body is None


def test_an_operation_that_is_not_an_object_fails_alone() -> None:
    err = op_error([READ, [1, 2]], 1)
    assert err.details["path"] == "operations[1]"


def test_a_malformed_operation_keeps_its_readable_name() -> None:
    request = decode_batch(body([{**READ, "id": "a", "colour": "red"}]))
    malformed = request.operations[0]
    assert isinstance(malformed, MalformedOperation)
    assert malformed.name == "a"


@pytest.mark.parametrize("atomic", [False, True])
def test_text_that_is_not_utf8_inside_an_operation_is_a_400_at_that_operation(
    atomic: bool,
) -> None:
    # Found by tests/fuzz: the envelope passes operations through undecoded, and the
    # operation's own decode raised msgspec.DecodeError, which escaped as a 500.
    raw = (
        b'{"operations": [' + orjson.dumps(READ) + b","
        b'{"type": "create", "collection": "people", "data": {"name": "\xff"}}], '
        b'"options": {"atomic": ' + (b"true" if atomic else b"false") + b"}}"
    )
    if atomic:
        assert decode_error(raw).details["path"] == "operations[1]"
        return
    request = decode_batch(raw)
    assert isinstance(request.operations[0], WireOperation)
    malformed = request.operations[1]
    assert isinstance(malformed, MalformedOperation)
    assert malformed.error.status_code == 400
    assert malformed.error.details["path"] == "operations[1]"


CREATE = {"type": "create", "collection": "people", "data": {"a": 1}}


def test_a_batch_of_plain_typed_creates_decodes_as_plain_creates() -> None:
    request = decode_batch(body([CREATE, {**CREATE, "id": "r1", "ref": "x"}]))
    assert request.plain_creates is True
    assert [type(op) for op in request.operations] == [PlainCreate, PlainCreate]
    second = request.operations[1]
    assert isinstance(second, WireOperation)
    assert (second.id, second.name, second.data) == ("r1", "x", {"a": 1})


@pytest.mark.parametrize(
    "other",
    [
        {**CREATE, "depends_on": []},
        {**CREATE, "atomicity_group": "g"},
        {**CREATE, "options": {}},
        {**CREATE, "id": None},
        {**CREATE, "data": [1]},
        {"type": "read", "collection": "people", "id": "r1"},
        READ,
    ],
    ids=["depends_on", "group", "options", "null id", "array data", "read", "REST"],
)
def test_any_other_operation_decodes_the_batch_as_wire_operations(other: Any) -> None:
    request = decode_batch(body([CREATE, other]))
    assert request.plain_creates is False
    assert all(type(op) is WireOperation for op in request.operations)


def test_a_malformed_operation_after_plain_creates_fails_alone_at_its_path() -> None:
    error = op_error([CREATE, CREATE, {**CREATE, "colour": "red"}], 2)
    assert error.details["path"] == "operations[2].colour"
