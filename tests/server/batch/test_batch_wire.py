"""The /v1/batch wire model: every decode fault is a whole-batch 400 naming its JSON path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchops._exceptions import BatchTooLargeError, InvalidBatchRequestError
from batchops.server.batch.wire import decode_batch


def body(operations: Any, **extra: Any) -> bytes:
    return orjson.dumps({"operations": operations, **extra})


READ = {"method": "GET", "path": "/v1/collections/people/records/r1"}


def decode_error(raw: bytes) -> InvalidBatchRequestError:
    with pytest.raises(InvalidBatchRequestError) as info:
        decode_batch(raw)
    assert info.value.status_code == 400
    assert info.value.code == "INVALID_BATCH_REQUEST"
    return info.value


def test_a_method_of_the_wrong_type_is_reported_at_its_json_path() -> None:
    err = decode_error(body([READ, READ, {"method": 5, "path": "/v1/x"}]))
    assert err.details["path"] == "operations[2].method"


def test_an_unknown_method_is_reported_at_its_json_path() -> None:
    err = decode_error(body([{"method": "HEAD", "path": "/v1/x"}]))
    assert err.details["path"] == "operations[0].method"


def test_a_rest_operation_without_path_is_rejected_at_that_path() -> None:
    err = decode_error(body([READ, {"method": "GET"}]))
    assert err.details["path"] == "operations[1].path"


def test_a_typed_operation_without_collection_is_rejected_at_that_path() -> None:
    err = decode_error(body([{"type": "read", "id": "r1"}]))
    assert err.details["path"] == "operations[0].collection"


def test_an_unknown_option_key_is_rejected_at_the_key() -> None:
    err = decode_error(body([READ], options={"paralel": 4}))
    assert err.details["path"] == "options.paralel"


def test_an_unknown_top_level_key_is_rejected() -> None:
    err = decode_error(body([READ], operation=[]))
    assert err.details["path"] == "operation"


def test_an_unknown_operation_field_is_rejected_at_the_field() -> None:
    err = decode_error(body([{**READ, "bdy": {}}]))
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
    err = decode_error(body([READ, {**READ, "type": "read", "collection": "people"}]))
    assert err.details["path"] == "operations[1]"


def test_an_operation_with_neither_method_nor_type_is_rejected_at_the_operation() -> None:
    err = decode_error(body([{"path": "/v1/collections/people/records"}]))
    assert err.details["path"] == "operations[0]"


def test_a_typed_field_on_a_rest_operation_is_rejected_rather_than_ignored() -> None:
    err = decode_error(body([{**READ, "data": {"x": 1}}]))
    assert err.details["path"] == "operations[0].data"


def test_a_rest_field_on_a_typed_operation_is_rejected_rather_than_ignored() -> None:
    err = decode_error(body([{"type": "create", "collection": "c", "body": {"data": {}}}]))
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
    assert absent.body is not None
    assert null.body is None
