"""The public surface is explicit and pinned: changing it must be a conscious act."""

from __future__ import annotations

import inspect

import batchops

EXPECTED = {
    "ConnectionFailedError",
    "CircuitOpenError",
    "CircuitBreaker",
    "Cache",
    "BatcherClosedError",
    "Batcher",
    "BatchContractError",
    "APIError",
    "AuthenticationError",
    "BatchFailedError",
    "BatchResult",
    "BatchTooLargeError",
    "BatchopsError",
    "CheckpointError",
    "ConflictError",
    "FailedDependencyError",
    "Failure",
    "FailureStatus",
    "InternalServerError",
    "InvalidBatchRequestError",
    "InvalidRequestError",
    "ItemCancelledError",
    "ItemError",
    "ItemSkippedError",
    "ItemTimeoutError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Progress",
    "RateLimitedError",
    "RequestTimeoutError",
    "Result",
    "RetryPolicy",
    "ServiceUnavailableError",
    "StoreError",
    "StoreInputError",
    "StoreTimeoutError",
    "Success",
    "Summary",
    "TransientStoreError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "__version__",
    "batch_execute",
    "batch_stream",
    "chunked",
    "run_batch",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(batchops.__all__) == EXPECTED


def test_every_public_name_is_importable_from_the_top_level() -> None:
    for name in batchops.__all__:
        assert getattr(batchops, name) is not None, name


def test_every_public_function_and_class_has_a_docstring() -> None:
    public = [getattr(batchops, name) for name in batchops.__all__]
    documented = [obj for obj in public if inspect.isclass(obj) or inspect.isfunction(obj)]
    assert len(documented) > 30
    missing = [obj.__name__ for obj in documented if not (obj.__doc__ or "").strip()]
    assert missing == []


def test_every_batchops_error_derives_from_the_one_base() -> None:
    errors = [
        getattr(batchops, n)
        for n in batchops.__all__
        if isinstance(getattr(batchops, n), type) and issubclass(getattr(batchops, n), Exception)
    ]
    assert len(errors) > 10
    assert all(issubclass(e, batchops.BatchopsError) for e in errors)
