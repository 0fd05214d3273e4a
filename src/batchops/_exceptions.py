"""The one error tree of batchops.

Every exception batchops raises (client side and server side) derives from
:class:`BatchopsError`::

    BatchopsError
    ├── BatchFailedError          BatchResult.raise_on_failure(): lists every failure
    ├── BatchContractError        a Batcher's batch_fn broke its contract (length, type)
    ├── BatcherClosedError        load() on a Batcher after aclose()
    ├── BatcherFullError          load() on a full Batcher with overflow="raise"
    ├── BatcherTimeoutError       load(key, timeout=...) got no answer in time (a TimeoutError)
    ├── CircuitOpenError          a circuit breaker refuses calls for now (retry_after)
    ├── CheckpointError           a checkpoint journal cannot be written or read
    ├── ConfigurationError        a setting's value, an unknown key, an unreadable config file
    ├── ConnectionFailedError     no HTTP answer: refused, dropped, timed out (a ConnectionError)
    ├── ItemError                 set as Failure.error for items that never produced one
    │   ├── ItemSkippedError      not started (fail-fast, continue_on_error=false)
    │   ├── ItemCancelledError    cancelled while running
    │   └── ItemTimeoutError      unfinished at the batch deadline or per-attempt timeout
    ├── StoreError                a database problem the store could not hide (500)
    │   ├── TransientStoreError   busy / locked / serialization failure: safe to retry (503)
    │   ├── StoreInputError       a value of the request the database refuses (422)
    │   └── StoreTimeoutError     a statement cancelled at its time bound (504)
    └── APIError                  an error envelope {"error": {code, message, details}}
        ├── InvalidRequestError          400
        │   └── InvalidBatchRequestError 400 INVALID_BATCH_REQUEST
        ├── AuthenticationError          401
        ├── PermissionDeniedError        403
        ├── NotFoundError                404
        ├── MethodNotAllowedError        405
        ├── RequestTimeoutError          408 REQUEST_TIMEOUT (the body stalled)
        ├── ConflictError                409
        ├── PayloadTooLargeError         413
        │   └── BatchTooLargeError       413 BATCH_TOO_LARGE
        ├── UnsupportedMediaTypeError    415
        ├── ValidationError              422
        ├── FailedDependencyError        424
        ├── GraphQLResponseError         200 with GraphQL errors (errors, data): raise_for_errors()
        ├── RateLimitedError             429 (retry_after)
        │   └── BatchOverRateLimitError  429 that no wait clears: more operations than a
        │                                minute's budget (never retried)
        ├── InternalServerError          500
        └── ServiceUnavailableError      503 (retry_after)

:class:`APIError` is shared by both ends of the wire: the server raises it from the
records service and renders it as the JSON envelope; the client parses an envelope back
into the same class (see :func:`api_error_from_envelope`). It exposes ``status_code`` and
``retry_after``, which is exactly what the engine's default retry policy looks at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

__all__ = [
    "APIError",
    "AuthenticationError",
    "BatchContractError",
    "BatchFailedError",
    "BatchOverRateLimitError",
    "BatchTooLargeError",
    "BatcherClosedError",
    "BatcherFullError",
    "BatcherTimeoutError",
    "BatchopsError",
    "CheckpointError",
    "CircuitOpenError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "FailedDependencyError",
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
    "RateLimitedError",
    "RequestTimeoutError",
    "ServiceUnavailableError",
    "StoreError",
    "StoreInputError",
    "StoreTimeoutError",
    "TransientStoreError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "api_error_from_envelope",
]


class BatchopsError(Exception):
    """Base class of every error raised by batchops."""


class BatchFailedError(BatchopsError):
    """Raised by ``BatchResult.raise_on_failure()``; ``failures`` holds every failure.

    The message lists each failed item (index, status and error), so one traceback tells
    the whole story of a batch.
    """

    def __init__(self, message: str, failures: list[Any]) -> None:
        super().__init__(message)
        self.failures = failures


class BatchContractError(BatchopsError):
    """A Batcher's ``batch_fn`` broke its contract: one value per key, same order.

    Every waiter of that batch gets this error; the message says what came back instead.
    """


class BatcherClosedError(BatchopsError):
    """``load()`` was called on a Batcher after ``aclose()`` (or after its ``async with``)."""


class BatcherFullError(BatchopsError):
    """``load()`` on a Batcher holding ``max_pending`` keys, created with ``overflow="raise"``.

    Raised by ``load()`` itself, at once: nothing was queued. (``overflow="block"``, the
    default, makes the load wait for room instead.)
    """


class BatcherTimeoutError(BatchopsError, TimeoutError):
    """``Batcher.load(key, timeout=...)`` got no answer within ``timeout`` seconds.

    Only that load fails: its key leaves the batch if the batch was not sent yet (and no
    other load waits for it), and a late answer for it is dropped. Other loads, of the
    same key or of others, are untouched.
    """


class CircuitOpenError(BatchopsError):
    """A circuit breaker refuses calls for now; ``retry_after`` is seconds until a probe.

    Raised at once, without calling the protected function, while the breaker is open
    (and, when half-open, while its single probe call is running).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CheckpointError(BatchopsError):
    """A checkpoint journal cannot be used: unwritable, corrupt, or a value is not JSON."""


class ConfigurationError(BatchopsError, ValueError):
    """The settings cannot be made: a value that is not the setting's type, an unknown key
    in the config file, an unreadable config file. The message names the key at fault; the
    CLI prints it and exits 2 (a ``ValueError``, as the settings' checks always raised)."""


class ConnectionFailedError(BatchopsError, ConnectionError):
    """The SDK got no HTTP answer: connection refused or dropped, or the request timed out.

    A :class:`ConnectionError`, so the engine's default retry policy retries it. Whether
    the server applied the request is unknown, unless ``before_sending`` is true: the
    connection could not be opened (refused, name not resolved, TLS failed), so nothing of
    the request left the process. The SDK sends writes with an ``Idempotency-Key`` so that
    a retry replays instead of applying them twice; where no key can help (a GraphQL
    mutation), it retries only when ``before_sending``.
    """

    def __init__(self, message: str, *, before_sending: bool = False) -> None:
        super().__init__(message)
        self.before_sending = before_sending


class ItemError(BatchopsError):
    """Base for the errors batchops puts in ``Failure.error`` itself."""


class ItemSkippedError(ItemError):
    """The item was never started (fail-fast, or the batch stopped early)."""


class ItemCancelledError(ItemError):
    """The item was running when the batch was cancelled."""


class ItemTimeoutError(ItemError, TimeoutError):
    """The item did not finish in time (per attempt, or by the batch deadline)."""


class StoreError(BatchopsError):
    """A database error the store layer could not turn into something more precise.

    The store classifies every driver error once, into this class or one of its
    subclasses; :meth:`to_api_error` is the one place that says what a client is told.
    A plain StoreError is the server's fault (a full disk, a bug): 500, no retry invited.
    """

    def to_api_error(self) -> APIError:
        """The error a client gets for this store error."""
        return InternalServerError("the database failed", code="STORE_ERROR")


class TransientStoreError(StoreError):
    """The database was busy or unreachable (lock timeout, serialization failure,
    deadlock, lost connection): the same request may well succeed if retried."""

    def to_api_error(self) -> APIError:
        """503 ``STORE_BUSY`` with ``Retry-After``: the one store error worth retrying."""
        return ServiceUnavailableError(
            "the database is busy; retry shortly", code="STORE_BUSY", retry_after=1.0
        )


class StoreInputError(StoreError):
    """The database refused a value or a statement built from the request (out of range,
    too complex, not representable): the same request will fail again. The request's own
    validation should have caught it first; this is the backstop."""

    def to_api_error(self) -> APIError:
        """422 ``INVALID_VALUE``: never retried."""
        return ValidationError(
            f"the database cannot take a value of this request: {self}", code="INVALID_VALUE"
        )


class StoreTimeoutError(StoreError):
    """A statement ran past its time bound (the server's statement limit or the batch's
    ``timeout_ms``) and was cancelled.

    ``unit_lost``: the cancellation took the whole transaction with it (SQLite rolls a
    transaction back when it interrupts a write), so there is no savepoint to return to:
    the unit of work fails as a whole, it is never one operation's result.
    """

    def __init__(self, message: str, *, unit_lost: bool = False) -> None:
        super().__init__(message)
        self.unit_lost = unit_lost

    def to_api_error(self) -> APIError:
        """504 ``TIMEOUT``, without ``Retry-After``."""
        return APIError(
            "the request took longer than the server allows for one statement and was "
            "cancelled; narrow it (fewer filters or search words, a smaller limit)",
            code="TIMEOUT",
            status=504,
        )


class APIError(BatchopsError):
    """An error with an HTTP status and a machine-readable code.

    Rendered on the wire as ``{"error": {"code", "message", "details"}}``.

    >>> err = NotFoundError("record 'r1' not found", details={"id": "r1"})
    >>> err.status_code, err.code
    (404, 'NOT_FOUND')
    """

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = dict(details or {})
        self.status_code = status if status is not None else self.status
        self.request_id = request_id
        self.retry_after = retry_after
        # Response headers that belong with the error on the wire (a 429's RateLimit-*).
        self.headers: dict[str, str] = dict(headers or {})

    def to_envelope(self) -> dict[str, Any]:
        """The JSON error envelope for this error, always writable as JSON: an error often
        echoes what the client sent (a value, a field name), and a value JSON cannot hold
        there — an integer beyond 64 bits, a lone surrogate, nesting past 254 levels —
        must not turn a 4xx into a 500 when the envelope is written. Such values are
        shown as their (shortened) ``repr``."""
        error = {"code": self.code, "message": self.message, "details": self.details}
        try:
            orjson.dumps(error)
        except TypeError:
            error = _writable(error, 0)
        return {"error": error}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.code!r}, {self.message!r})"


class InvalidRequestError(APIError):
    """400: the request is malformed; ``details["path"]`` names the faulty field."""

    status = 400
    default_code = "INVALID_REQUEST"


class InvalidBatchRequestError(InvalidRequestError):
    """400: the batch as a whole is rejected; nothing ran."""

    default_code = "INVALID_BATCH_REQUEST"


class AuthenticationError(APIError):
    """401: no API key, or an unknown or revoked one."""

    status = 401
    default_code = "UNAUTHENTICATED"


class PermissionDeniedError(APIError):
    """403: the key is valid but may not do this."""

    status = 403
    default_code = "FORBIDDEN"


class NotFoundError(APIError):
    """404: no such record, collection, job or route (for this tenant)."""

    status = 404
    default_code = "NOT_FOUND"


class MethodNotAllowedError(APIError):
    """405: the path exists but not with this method."""

    status = 405
    default_code = "METHOD_NOT_ALLOWED"


class RequestTimeoutError(APIError):
    """408: the request's body stopped arriving; the server gave up on it and closed the
    connection. Nothing of the request was applied."""

    status = 408
    default_code = "REQUEST_TIMEOUT"


class ConflictError(APIError):
    """409: an id that exists already, a version mismatch, an idempotent request in flight."""

    status = 409
    default_code = "CONFLICT"


class PayloadTooLargeError(APIError):
    """413: the request body is larger than the server accepts."""

    status = 413
    default_code = "PAYLOAD_TOO_LARGE"


class BatchTooLargeError(PayloadTooLargeError):
    """413: too many operations or too many bytes in one batch.

    ``details`` carries ``limit`` and ``actual`` (and ``unit``: operations or bytes).
    """

    default_code = "BATCH_TOO_LARGE"


class UnsupportedMediaTypeError(APIError):
    """415: the body is not JSON (or not a supported encoding)."""

    status = 415
    default_code = "UNSUPPORTED_MEDIA_TYPE"


class ValidationError(APIError):
    """422: well-formed but invalid content; ``details["path"]`` names the field."""

    status = 422
    default_code = "VALIDATION_ERROR"


class FailedDependencyError(APIError):
    """424: not run because an operation it depends on failed (or was rolled back)."""

    status = 424
    default_code = "FAILED_DEPENDENCY"


class GraphQLResponseError(APIError):
    """A GraphQL answer carried errors: ``GraphQLResponse.raise_for_errors()`` raises it.

    ``errors`` holds every :class:`~batchops.client.GraphQLError` of the answer, in order
    (each with its own ``code``, ``status``, ``path``, ``details``), and ``data`` the
    partial data that came with them (``None`` when nothing resolved); the message lists
    the errors. ``status_code`` is 200, the HTTP status of the answer: the failures are
    the fields', and a generic retry on the error's status must not send the document
    again (the fields that did resolve may have been mutations).

    ::

        try:
            data = answer.raise_for_errors().data
        except GraphQLResponseError as exc:
            missing = [e.path for e in exc.errors if e.code == "NOT_FOUND"]
    """

    status = 200
    default_code = "GRAPHQL_ERRORS"

    def __init__(self, message: str, *, errors: list[Any], data: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.errors = errors
        self.data = data


class RateLimitedError(APIError):
    """429: slow down; ``retry_after`` says for how many seconds."""

    status = 429
    default_code = "RATE_LIMITED"


class BatchOverRateLimitError(RateLimitedError):
    """429 for a request of more operations than the key may send in a minute.

    No wait can make that request succeed, so it is never retried (``retry_after`` is
    ``None``, whatever the server's ``Retry-After`` said). ``details`` carries the server's
    ``limit`` and ``operations``. The SDK splits a non-atomic batch into requests under
    the limit instead; an atomic batch fails at once with this error.
    """

    @property
    def limit(self) -> int:
        """The operations per minute the key may send."""
        return int(self.details["limit"])


class InternalServerError(APIError):
    """500: a server bug. Never used for a client mistake."""

    status = 500
    default_code = "INTERNAL_ERROR"


class ServiceUnavailableError(APIError):
    """503: the service is overloaded or its database is busy; retry later."""

    status = 503
    default_code = "SERVICE_UNAVAILABLE"


def _writable(value: Any, depth: int) -> Any:
    """``value`` with everything JSON cannot hold replaced by a shortened ``repr``."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else _short_repr(value)
    if depth >= 32:
        return _short_repr(value)
    if isinstance(value, Mapping):
        return {_writable(str(k), depth): _writable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(v, depth + 1) for v in value]
    return _short_repr(value)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ValidationError,
    424: FailedDependencyError,
    429: RateLimitedError,
    500: InternalServerError,
    503: ServiceUnavailableError,
}

_BY_CODE: dict[str, type[APIError]] = {
    "INVALID_BATCH_REQUEST": InvalidBatchRequestError,
    "BATCH_TOO_LARGE": BatchTooLargeError,
}


def _over_budget(details: object) -> bool:
    """A 429's details say the request costs more than the whole budget (ratelimit.py:
    ``{"limit": L, "operations": n}`` with n > L): waiting cannot help."""
    if not isinstance(details, Mapping):
        return False
    limit, operations = details.get("limit"), details.get("operations")
    return (
        isinstance(limit, int)
        and isinstance(operations, int)
        and not isinstance(limit, bool)
        and not isinstance(operations, bool)
        and operations > limit
    )


def api_error_from_envelope(
    status: int,
    envelope: Mapping[str, Any] | None,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """Rebuild the most specific :class:`APIError` from a status and an error envelope.

    >>> api_error_from_envelope(404, {"error": {"code": "NOT_FOUND", "message": "gone"}})
    NotFoundError(404, 'NOT_FOUND', 'gone')
    """
    body: Mapping[str, Any] = {}
    if envelope and isinstance(envelope.get("error"), Mapping):
        body = envelope["error"]
    code = str(body.get("code") or "")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or APIError
    details = body.get("details")
    if status == 429 and _over_budget(details):
        cls, retry_after = BatchOverRateLimitError, None
    return cls(
        str(body.get("message") or f"HTTP {status}"),
        code=code or None,
        details=details if isinstance(details, Mapping) else None,
        status=status,
        request_id=request_id,
        retry_after=retry_after,
    )
