"""Pure pieces of the records service: merge patches and cursors."""

from __future__ import annotations

from typing import Any

import pytest

from batchops._exceptions import InvalidRequestError
from batchops.server.records.service import decode_cursor, encode_cursor, merge_patch


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


def test_a_cursor_round_trips_to_the_id_it_encodes() -> None:
    assert decode_cursor(encode_cursor("rec:42")) == "rec:42"


def test_a_cursor_that_is_not_ours_is_a_400() -> None:
    with pytest.raises(InvalidRequestError):
        decode_cursor("%%%")
