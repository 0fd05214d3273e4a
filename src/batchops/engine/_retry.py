"""Retry policy: which errors are transient, how long to back off, and Retry-After.

The backoff maths is tenacity's (``wait_exponential`` / ``wait_random_exponential``);
the retry *loop* lives in the engine because it must cooperate with the pool (the
Retry-After pause, the rate cap, per-attempt timeouts, fail-fast cancellation), which
``tenacity.AsyncRetrying`` cannot see. Items run without any of this when ``retry`` is
not given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import tenacity

from batchops._exceptions import ItemCancelledError, ItemSkippedError, TransientStoreError

__all__ = [
    "RetryPolicy",
    "is_overload",
    "is_transient",
    "retry_after_of",
    "status_code_of",
]

#: HTTP statuses that mean "try again later" rather than "you are wrong".
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses that mean "too much load": adaptive concurrency halves on them.
OVERLOAD_STATUSES = frozenset({429, 503})

# Transport errors of HTTP clients we do not import (they are optional for users):
# matched by class name along the MRO, restricted to these top-level modules.
_TRANSPORT_CLASS_NAMES = frozenset(
    {"TransportError", "ClientConnectionError", "ServerTimeoutError", "ConnectError"}
)
_TRANSPORT_MODULES = ("httpx", "httpcore", "aiohttp")


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any.

    Looks at ``exc.status_code``, ``exc.status`` (aiohttp) and ``exc.response.status_code``
    (httpx ``HTTPStatusError``), without importing any HTTP library.
    """
    for value in (
        getattr(exc, "status_code", None),
        getattr(exc, "status", None),
        getattr(getattr(exc, "response", None), "status_code", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``exc.retry_after``), or ``None``."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _is_http_transport_error(exc: BaseException) -> bool:
    for cls in type(exc).__mro__:
        if cls.__name__ in _TRANSPORT_CLASS_NAMES and cls.__module__.startswith(_TRANSPORT_MODULES):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """The default ``retry_on``: true for errors where trying again may succeed.

    Timeouts, connection errors (``ConnectionError`` and its ``OSError`` family, httpx /
    aiohttp transport errors), :class:`~batchops.TransientStoreError`, and any error with
    an HTTP status of 429, 502, 503 or 504. Everything else (a 400, a ``KeyError``…) is a
    bug or a bad item, and retrying would only repeat it.
    """
    if isinstance(exc, ItemSkippedError | ItemCancelledError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError | TransientStoreError):
        return True
    if status_code_of(exc) in TRANSIENT_STATUSES:
        return True
    return _is_http_transport_error(exc)


def is_overload(exc: BaseException) -> bool:
    """True for "you are sending too much" errors: 429/503, or any ``retry_after``."""
    if status_code_of(exc) in OVERLOAD_STATUSES or retry_after_of(exc) is not None:
        return True
    return "RateLimit" in type(exc).__name__


RetryOn = Callable[[BaseException], bool] | tuple[type[BaseException], ...] | type[BaseException]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How to retry one item: up to ``attempts`` calls, exponential backoff in between.

    The wait after the *n*-th failed attempt is ``initial_backoff * multiplier ** (n - 1)``
    capped at ``max_backoff``; with ``jitter=True`` it is drawn uniformly from ``[0, that]``
    ("full jitter", so a burst of failures does not retry in lockstep). An error with a
    ``retry_after`` waits at least that long, and pauses the whole pool meanwhile.

    ``retry_on`` is a predicate or exception class(es); the default, :func:`is_transient`,
    retries timeouts, connection errors and 429/502/503/504 only.

    >>> RetryPolicy(attempts=4, initial_backoff=0.5, jitter=False).schedule()
    [0.5, 1.0, 2.0]
    """

    attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: bool = True
    retry_on: RetryOn = is_transient
    _wait: tenacity.wait.wait_base = field(init=False, repr=False, compare=False)
    _predicate: Callable[[BaseException], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(
                f"RetryPolicy(attempts={self.attempts!r}): attempts counts the first call "
                "too, so it must be an int >= 1 (attempts=1 means no retry)"
            )
        for name in ("initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0 or math.isnan(value):
                raise ValueError(f"RetryPolicy({name}={value!r}): must be seconds >= 0")
        if self.multiplier < 1:
            raise ValueError(
                f"RetryPolicy(multiplier={self.multiplier!r}): must be >= 1 "
                "(1 gives a constant backoff)"
            )
        wait_cls = tenacity.wait_random_exponential if self.jitter else tenacity.wait_exponential
        wait = wait_cls(
            multiplier=self.initial_backoff, max=self.max_backoff, exp_base=self.multiplier
        )
        object.__setattr__(self, "_wait", wait)
        object.__setattr__(self, "_predicate", _as_predicate(self.retry_on))

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt under this policy."""
        return self._predicate(exc)

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures (random if ``jitter``)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = failed_attempts
        return float(self._wait(state))

    def schedule(self) -> list[float]:
        """Every wait between attempts, in order: ``attempts - 1`` values (pure helper)."""
        return [self.backoff(n) for n in range(1, self.attempts)]


def _as_predicate(retry_on: RetryOn) -> Callable[[BaseException], bool]:
    if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
        classes: tuple[type[BaseException], ...] = (retry_on,)
        return lambda exc: isinstance(exc, classes)
    if isinstance(retry_on, tuple):
        if not all(isinstance(c, type) and issubclass(c, BaseException) for c in retry_on):
            raise TypeError(
                f"RetryPolicy(retry_on={retry_on!r}): a tuple must hold exception classes"
            )
        classes = retry_on
        return lambda exc: isinstance(exc, classes)
    if callable(retry_on):
        return cast(Callable[[BaseException], bool], retry_on)
    raise TypeError(
        f"RetryPolicy(retry_on={retry_on!r}): pass a predicate (exc) -> bool, an exception "
        "class, or a tuple of exception classes"
    )
