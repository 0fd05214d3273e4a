"""BatchResult: ordered per-item results and their summary."""

from __future__ import annotations

import pytest

from batchops import (
    BatchFailedError,
    BatchResult,
    Failure,
    ItemSkippedError,
    Success,
)
from batchops._exceptions import NotFoundError, api_error_from_envelope


def sample() -> BatchResult[str]:
    return BatchResult(
        [
            Success(0, "a"),
            Failure(1, ValueError("bad input")),
            Failure(2, ItemSkippedError("not started"), status="skipped"),
            Success(3, "d", attempts=2),
        ],
        duration_s=0.5,
    )


def test_summary_counts_succeeded_failed_and_skipped_separately() -> None:
    s = sample().summary
    assert (s.total, s.succeeded, s.failed, s.skipped, s.duration_s) == (4, 2, 1, 1, 0.5)


def test_values_are_the_successes_in_input_order() -> None:
    assert sample().values() == ["a", "d"]


def test_failures_lists_every_non_success_with_its_index() -> None:
    assert [(f.index, f.status) for f in sample().failures()] == [(1, "failed"), (2, "skipped")]


def test_raise_on_failure_lists_every_failure_in_one_exception() -> None:
    with pytest.raises(BatchFailedError) as caught:
        sample().raise_on_failure()
    assert len(caught.value.failures) == 2
    assert "[1] failed: ValueError: bad input" in str(caught.value)
    assert "[2] skipped" in str(caught.value)


def test_raise_on_failure_returns_the_result_when_all_succeeded() -> None:
    result = BatchResult([Success(0, 1)])
    assert result.raise_on_failure() is result


def test_results_are_indexable_and_flag_their_kind() -> None:
    result = sample()
    assert result[0].is_success
    assert not result[0].is_failure
    assert result[1].is_failure
    assert not result[1].is_success
    assert len(result[1:3]) == 2


def test_an_error_envelope_becomes_the_most_specific_api_error() -> None:
    error = api_error_from_envelope(
        404,
        {"error": {"code": "NOT_FOUND", "message": "gone", "details": {"id": "x"}}},
        request_id="r1",
    )
    assert isinstance(error, NotFoundError)
    assert (error.status_code, error.code, error.details, error.request_id) == (
        404,
        "NOT_FOUND",
        {"id": "x"},
        "r1",
    )
    assert error.to_envelope() == {
        "error": {"code": "NOT_FOUND", "message": "gone", "details": {"id": "x"}}
    }
