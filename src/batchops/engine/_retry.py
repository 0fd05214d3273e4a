"""Retry, once for every layer: which errors are transient, how long to wait, the loop.

- :func:`backoff_s` is the pure backoff maths (capped exponential, optional jitter), for
  every retry schedule in batchops — the engine's, the Batcher's, the SDK's, the stores'
  and the webhook deliveries'.
- :class:`RetryPolicy` decides (``should_retry``), waits (``wait_s``: the backoff, or the
  error's ``Retry-After`` when longer) and runs the generic loop (:meth:`RetryPolicy.call`,
  on ``tenacity.AsyncRetrying``), used by the Batcher, the SDK's single calls and the
  stores' units of work.
- The engine keeps its own short loop over the same policy (``should_retry`` +
  ``wait_s``): it must cooperate with the pool (the Retry-After pause, the rate cap,
  per-attempt timeouts, fail-fast cancellation, adaptive concurrency), which
  ``tenacity.AsyncRetrying`` cannot see. Items run without any of this when ``retry``
  is not given.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

import tenacity

from batchops._exceptions import (
    BatchOverRateLimitError,
    ItemCancelledError,
    ItemSkippedError,
    TransientStoreError,
)

if TYPE_CHECKING:
    from batchops.engine._clock import Clock

__all__ = [
    "RetryPolicy",
    "backoff_s",
    "is_overload",
    "is_transient",
    "retry_after_of",
    "status_code_of",
]

T = TypeVar("T")

#: HTTP statuses that mean "try again later" rather than "you are wrong". 408: the server
#: gave up waiting for the request (its body stalled) and applied nothing of it, so the
#: same request may be sent again (RFC 9110 §15.5.9).
TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
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
    an HTTP status of 408, 429, 502, 503 or 504. Everything else (a 400, a ``KeyError``…) is a
    bug or a bad item, and retrying would only repeat it; so is a
    :class:`~batchops.BatchOverRateLimitError`, a 429 no wait can clear.
    """
    if isinstance(exc, ItemSkippedError | ItemCancelledError | BatchOverRateLimitError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError | TransientStoreError):
        return True
    if status_code_of(exc) in TRANSIENT_STATUSES:
        return True
    return _is_http_transport_error(exc)


def is_overload(exc: BaseException) -> bool:
    """True for "you are sending too much" errors: 429/503, or any ``retry_after``.

    Not a :class:`~batchops.BatchOverRateLimitError`: that request is too big for any
    pace, and going slower would not help it.
    """
    if isinstance(exc, BatchOverRateLimitError):
        return False
    if status_code_of(exc) in OVERLOAD_STATUSES or retry_after_of(exc) is not None:
        return True
    return "RateLimit" in type(exc).__name__


def backoff_s(
    failed_attempts: int,
    *,
    initial_s: float,
    max_s: float,
    multiplier: float = 2.0,
    jitter: float = 0.0,
) -> float:
    """Seconds to wait after the ``failed_attempts``-th failure (1-based).

    ``initial_s * multiplier ** (failed_attempts - 1)``, at most ``max_s``. ``jitter`` is
    the fraction of that wait drawn at random: 0 exact, 1 uniform in ``[0, wait]`` ("full
    jitter", so a burst of failures does not retry in lockstep), 0.5 in ``[wait/2, wait]``.

    >>> [backoff_s(n, initial_s=5.0, max_s=60.0) for n in (1, 2, 3, 4, 5)]
    [5.0, 10.0, 20.0, 40.0, 60.0]
    >>> backoff_s(10_000, initial_s=1.0, max_s=60.0)
    60.0
    """
    if failed_attempts < 1:
        raise ValueError(f"failed_attempts={failed_attempts!r}: counts failures, from 1")
    try:
        wait = initial_s * multiplier ** (failed_attempts - 1)
    except OverflowError:
        wait = max_s if initial_s > 0 else 0.0
    wait = float(min(wait, max_s))
    if jitter:
        wait -= wait * jitter * random.random()
    return wait


RetryOn = Callable[[BaseException], bool] | tuple[type[BaseException], ...] | type[BaseException]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How to retry one call: up to ``attempts`` calls, exponential backoff in between.

    The wait after the *n*-th failed attempt is ``initial_backoff * multiplier ** (n - 1)``
    capped at ``max_backoff`` (:func:`backoff_s`); with ``jitter=True`` it is drawn
    uniformly from ``[0, that]`` ("full jitter", so a burst of failures does not retry in
    lockstep), and a number between 0 and 1 draws that fraction of it at random
    (``jitter=0.5``: from ``[that/2, that]``). An error with a ``retry_after`` waits at
    least that long (and, in the engine, pauses the whole pool meanwhile).

    ``retry_on`` is a predicate or exception class(es); the default, :func:`is_transient`,
    retries timeouts, connection errors and 408/429/502/503/504 only. Only exceptions
    are retried, never a cancellation.

    >>> RetryPolicy(attempts=4, initial_backoff=0.5, jitter=False).schedule()
    [0.5, 1.0, 2.0]
    """

    attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: bool | float = True
    retry_on: RetryOn = is_transient
    _jitter: float = field(init=False, repr=False, compare=False)
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
        jitter = self.jitter
        if not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise ValueError(
                f"RetryPolicy(jitter={jitter!r}): True (full jitter), False (exact waits), "
                "or the random fraction of each wait, between 0 and 1"
            )
        object.__setattr__(self, "_jitter", float(jitter))
        object.__setattr__(self, "_predicate", _as_predicate(self.retry_on))

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt under this policy."""
        return isinstance(exc, Exception) and self._predicate(exc)

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures (random if ``jitter``)."""
        return backoff_s(
            failed_attempts,
            initial_s=self.initial_backoff,
            max_s=self.max_backoff,
            multiplier=self.multiplier,
            jitter=self._jitter,
        )

    def wait_s(self, failed_attempts: int, exc: BaseException) -> float:
        """The wait after this failure: the backoff, or ``exc.retry_after`` when longer."""
        delay = self.backoff(failed_attempts)
        after = retry_after_of(exc)
        return after if after is not None and after > delay else delay

    def schedule(self) -> list[float]:
        """Every wait between attempts, in order: ``attempts - 1`` values (pure helper)."""
        return [self.backoff(n) for n in range(1, self.attempts)]

    async def call(self, fn: Callable[[], Awaitable[T]], *, clock: Clock | None = None) -> T:
        """``await fn()``, again after :meth:`wait_s` while it raises a retryable error.

        Raises the last error when the attempts run out or the error is not retryable.
        ``clock`` is where the waits sleep (a :class:`~batchops.engine.VirtualClock` in
        tests; default ``asyncio.sleep``). The first attempt runs outside tenacity: the
        common case, a success, costs one await.
        """
        try:
            return await fn()
        except Exception as exc:
            if self.attempts == 1 or not self.should_retry(exc):
                raise
            first = exc
        sleep = asyncio.sleep if clock is None else clock.sleep
        await sleep(self.wait_s(1, first))
        retrying = tenacity.AsyncRetrying(
            sleep=sleep,
            stop=tenacity.stop_after_attempt(self.attempts - 1),
            wait=self._tenacity_wait,
            retry=tenacity.retry_if_exception(self.should_retry),
            reraise=True,
        )

        async def attempt() -> T:
            # An ``async def``: tenacity runs any other callable (a lambda returning a
            # coroutine, say) as a synchronous one.
            return await fn()

        return cast(T, await retrying(attempt))

    def _tenacity_wait(self, state: tenacity.RetryCallState) -> float:
        # tenacity counts from the second call (the first ran in ``call``).
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if exc is None:
            return self.backoff(state.attempt_number + 1)
        return self.wait_s(state.attempt_number + 1, exc)


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
