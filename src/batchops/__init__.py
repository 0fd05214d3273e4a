"""batchops: fast, safe bulk API work from both ends of the wire.

Client side, the engine runs any async callable over many items::

    import asyncio, batchops

    async def main() -> None:
        result = await batchops.batch_execute(range(100), fetch, max_concurrent=10)
        print(result.summary)

Server side, ``batchops serve`` runs a records service with ``POST /v1/batch``.
"""

from batchops._exceptions import (
    APIError,
    AuthenticationError,
    BatchContractError,
    BatcherClosedError,
    BatcherFullError,
    BatcherTimeoutError,
    BatchFailedError,
    BatchopsError,
    BatchOverRateLimitError,
    BatchTooLargeError,
    CheckpointError,
    CircuitOpenError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    FailedDependencyError,
    GraphQLResponseError,
    InternalServerError,
    InvalidBatchRequestError,
    InvalidRequestError,
    ItemCancelledError,
    ItemError,
    ItemSkippedError,
    ItemTimeoutError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServiceUnavailableError,
    StoreError,
    StoreInputError,
    StoreTimeoutError,
    TransientStoreError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from batchops._results import BatchResult, Failure, FailureStatus, Result, Success, Summary
from batchops.coalesce import Batcher, Cache, CircuitBreaker
from batchops.engine import (
    EngineOptions,
    Progress,
    RetryPolicy,
    batch_execute,
    batch_stream,
    chunked,
    run_batch,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AuthenticationError",
    "BatchContractError",
    "BatchFailedError",
    "BatchOverRateLimitError",
    "BatchResult",
    "BatchTooLargeError",
    "Batcher",
    "BatcherClosedError",
    "BatcherFullError",
    "BatcherTimeoutError",
    "BatchopsError",
    "Cache",
    "CheckpointError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "EngineOptions",
    "FailedDependencyError",
    "Failure",
    "FailureStatus",
    "GraphQLResponseError",
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
]
