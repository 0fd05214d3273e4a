"""References between operations: ${name.path}, whole-string typing, stringifying, escapes."""

from __future__ import annotations

from typing import Any

import pytest

from batchops._exceptions import InvalidRequestError, ValidationError
from batchops.server.batch.refs import find_references, iter_templates, resolve

RESULTS: dict[str, dict[str, Any]] = {
    "a": {"status": 201, "body": {"id": "rec_1", "n": 7, "ok": True, "team": {"name": "core"}}},
    "s": {"status": 200, "body": {"items": [{"id": "x1"}, {"id": "x2"}], "none": None}},
}


def test_find_references_names_the_referenced_operations() -> None:
    value = {"a": "${a.body.id}", "b": ["x-${s.status}", {"c": "${a.status}"}], "n": 3}
    assert find_references(value) == {"a", "s"}


def test_find_references_ignores_escapes() -> None:
    assert find_references("$${a.body.id}") == set()


def test_iter_templates_reports_where_each_reference_is() -> None:
    found = list(iter_templates({"data": {"tags": ["t", "${a.body.id}"]}}, "operations[1].body"))
    assert [(f.path, f.name) for f in found] == [("operations[1].body.data.tags[1]", "a")]


@pytest.mark.parametrize("text", ["${}", "${a..b}", "${a.b", "x ${ y", "${a.}", "${.a}"])
def test_a_malformed_reference_is_an_error_not_literal_text(text: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        find_references({"k": text})
    assert info.value.code == "INVALID_REFERENCE"
    assert info.value.details["path"] == "k"


def test_a_whole_string_reference_keeps_an_int() -> None:
    assert resolve("${a.body.n}", RESULTS) == 7


def test_a_whole_string_reference_keeps_an_object() -> None:
    assert resolve({"team": "${a.body.team}"}, RESULTS) == {"team": {"name": "core"}}


def test_a_whole_string_reference_can_read_the_status() -> None:
    assert resolve("${a.status}", RESULTS) == 201


def test_an_embedded_reference_is_stringified() -> None:
    assert resolve("/v1/collections/p/records/${a.body.id}", RESULTS) == (
        "/v1/collections/p/records/rec_1"
    )


def test_embedded_json_scalars_become_json_text() -> None:
    assert resolve("${a.body.n}|${a.body.ok}|${s.body.none}", RESULTS) == "7|true|null"


def test_embedding_an_object_is_a_per_operation_error() -> None:
    with pytest.raises(InvalidRequestError) as info:
        resolve("team=${a.body.team}", RESULTS)
    assert info.value.code == "REFERENCE_NOT_SCALAR"


def test_an_array_index_is_a_numeric_segment() -> None:
    assert resolve("${s.body.items.1.id}", RESULTS) == "x2"


def test_an_index_past_the_end_is_unresolved() -> None:
    with pytest.raises(ValidationError) as info:
        resolve("${s.body.items.5.id}", RESULTS)
    assert info.value.details["path"] == "s.body.items.5"


def test_a_missing_key_raises_unresolved_reference_with_the_reference_and_path() -> None:
    with pytest.raises(ValidationError) as info:
        resolve({"x": "${a.body.nope.deeper}"}, RESULTS)
    err = info.value
    assert (err.status_code, err.code) == (422, "UNRESOLVED_REFERENCE")
    assert err.details["reference"] == "a.body.nope.deeper"
    assert err.details["path"] == "a.body.nope"


def test_a_reference_to_an_operation_without_result_is_unresolved() -> None:
    with pytest.raises(ValidationError) as info:
        resolve("${zz.body.id}", RESULTS)
    assert info.value.code == "UNRESOLVED_REFERENCE"


def test_a_double_dollar_escape_is_a_literal_dollar_brace() -> None:
    assert resolve("price: $${a.body.n} is literal", RESULTS) == "price: ${a.body.n} is literal"


def test_strings_without_templates_are_returned_untouched() -> None:
    text = "plain $ text {with} braces"
    assert resolve(text, RESULTS) is text


def test_resolve_does_not_mutate_its_input() -> None:
    value = {"id": "${a.body.id}"}
    resolve(value, RESULTS)
    assert value == {"id": "${a.body.id}"}


def test_object_keys_are_not_templates() -> None:
    assert resolve({"${a.body.id}": 1}, RESULTS) == {"${a.body.id}": 1}
