"""``CircuitBreaker``: stop calling a backend that keeps failing, then probe it once.

Why not a library: the two asyncio breakers on PyPI were evaluated and neither fits.
``aiobreaker`` (last release 2021) reads ``datetime.utcnow()`` (wall clock, no injection,
deprecated since Python 3.12) and lets every concurrent call through when half-open.
``purgatory`` (3.x, maintained) hard-codes ``time.time()`` too, routes every call through
an awaited message bus / unit of work (overhead on a path we take per batch), and also
admits every call while half-open. The Batcher needs exactly one probe batch, an injectable
monotonic clock and a cheap synchronous "would you refuse?" check per load; that is the
eighty lines below.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal, TypeAlias

from batchops._exceptions import CircuitOpenError

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failures; probe after ``reset_timeout_s``.

    - **closed**: calls run; each failure counts, a success resets the count. At
      ``failure_threshold`` consecutive failures the breaker opens.
    - **open**: calls are refused at once with :class:`~batchops.CircuitOpenError`
      (its ``retry_after`` says when the probe becomes possible).
    - **half_open**: after ``reset_timeout_s``, ONE call runs as a probe while the others
      are refused; its success closes the breaker, its failure opens it again.

    Wrap any awaited call with :meth:`guard`::

        breaker = CircuitBreaker(failure_threshold=5, reset_timeout_s=30)
        with breaker.guard():          # raises CircuitOpenError when refused
            await call_backend()

    A failure is an ``Exception`` leaving the block; cancellation is not a failure (a
    cancelled probe just lets the next call probe). ``clock`` returns monotonic seconds;
    inject one in tests. One breaker can protect several Batchers calling one backend.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_probing",
        "_state",
        "failure_threshold",
        "reset_timeout_s",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            not isinstance(failure_threshold, int)
            or isinstance(failure_threshold, bool)
            or failure_threshold < 1
        ):
            raise ValueError(
                f"CircuitBreaker(failure_threshold={failure_threshold!r}): must be an int "
                ">= 1, the number of consecutive failed calls that opens the circuit"
            )
        if (
            not isinstance(reset_timeout_s, int | float)
            or math.isnan(reset_timeout_s)
            or reset_timeout_s < 0
        ):
            raise ValueError(
                f"CircuitBreaker(reset_timeout_s={reset_timeout_s!r}): must be seconds >= 0, "
                "how long the circuit stays open before one probe call is let through"
            )
        if not callable(clock):
            raise TypeError(f"CircuitBreaker(clock={clock!r}): pass a function returning seconds")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = float(reset_timeout_s)
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (open turns half-open on read)."""
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._state = "half_open"
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures counted since the last success (or since the breaker closed)."""
        return self._failures

    def refuses(self) -> bool:
        """Whether a call made now would be refused (no state change besides open→half_open).

        The Batcher asks this per load, so that loads fail fast instead of queueing for a
        batch that would be refused anyway.
        """
        state = self._state
        if state == "closed":
            return False
        if self.state == "open":
            return True
        return self._probing

    def raise_if_open(self) -> None:
        """Raise :class:`~batchops.CircuitOpenError` if a call made now would be refused."""
        if self.refuses():
            raise self._open_error()

    def guard(self) -> _Guard:
        """A ``with`` block that runs as one call under this breaker (see the class doc)."""
        return _Guard(self)

    def reset(self) -> None:
        """Close the breaker and forget every failure (an operator's override)."""
        self._state = "closed"
        self._failures = 0
        self._probing = False

    def _enter(self) -> bool:
        state = self.state
        if state == "closed":
            return False
        if state == "open" or self._probing:
            raise self._open_error()
        self._probing = True
        return True

    def _exit(self, probe: bool, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, Exception):
            # Cancelled or interrupted: says nothing about the backend's health.
            if probe:
                self._probing = False
            return
        if probe:
            self._probing = False
            if exc is None:
                self._state, self._failures = "closed", 0
            else:
                self._open()
        elif self._state == "closed":
            # Outcomes of calls admitted before the circuit opened are stale once it has:
            # only the probe decides then.
            if exc is None:
                self._failures = 0
            else:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probing = False

    def _open_error(self) -> CircuitOpenError:
        if self._probing:
            return CircuitOpenError(
                "circuit breaker is half-open and its probe call is running; "
                "calls are refused until the probe decides",
                retry_after=None,
            )
        wait = max(0.0, self._opened_at + self.reset_timeout_s - self._clock())
        return CircuitOpenError(
            f"circuit breaker is open after {self._failures} consecutive failures; "
            f"a probe call is allowed in {wait:.3f}s",
            retry_after=wait,
        )

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state!r}, failure_threshold={self.failure_threshold}, "
            f"reset_timeout_s={self.reset_timeout_s})"
        )


class _Guard:
    """One call under a breaker: refuses on enter, records the outcome on exit."""

    __slots__ = ("_breaker", "_probe")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._probe = False

    def __enter__(self) -> None:
        self._probe = self._breaker._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._breaker._exit(self._probe, exc)
