"""Pure pieces of the operations layer."""

from __future__ import annotations

from typing import Any

import pytest

from batchops._exceptions import InvalidRequestError
from batchops.server.records.operations import (
    decode_cursor,
    encode_cursor,
    merge_patch,
    new_record_id,
    new_record_ids,
)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_the_rfc_7386_examples(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_does_not_mutate_its_input() -> None:
    target = {"a": {"b": 1}}
    merge_patch(target, {"a": {"b": 2}})
    assert target == {"a": {"b": 1}}


def test_generated_ids_sort_in_creation_order() -> None:
    ids = [new_record_id() for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200


def test_a_cursor_round_trips_to_the_id_it_encodes() -> None:
    assert decode_cursor(encode_cursor("rec:42")) == "rec:42"


def test_a_cursor_that_is_not_ours_is_a_400() -> None:
    with pytest.raises(InvalidRequestError):
        decode_cursor("%%%")


def test_generated_ids_are_valid_uuid7_strings() -> None:
    import uuid

    for text in new_record_ids(50):
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_generated_in_one_call_and_across_calls_strictly_increase() -> None:
    ids = new_record_ids(5000) + new_record_ids(5000) + [new_record_id() for _ in range(100)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_process_draws_its_own_random_bits_for_ids() -> None:
    import os

    new_record_ids(1)  # leaves random digits in the pool, which a fork would copy
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the random part of its next id, then leave at once
        os.close(read_end)
        os.write(write_end, new_record_ids(1)[0][-17:].encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = new_record_ids(1)[0][-17:]
    assert len(child) == 17
    assert child != parent
