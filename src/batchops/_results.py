"""Per-item results: ``Result = Success | Failure`` and the ordered :class:`BatchResult`.

Partial failure is data: a batch never raises because some items failed; it returns one
result per item, in input order, and lets the caller decide
(:meth:`BatchResult.raise_on_failure` when all-or-error is what you want).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeAlias, TypeVar, overload

from batchops._exceptions import BatchFailedError

__all__ = ["BatchResult", "Failure", "FailureStatus", "Result", "Success", "Summary"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

FailureStatus: TypeAlias = Literal["failed", "skipped", "timeout", "cancelled"]


@dataclass(frozen=True, slots=True)
class Success(Generic[T_co]):
    """An item that succeeded: ``value`` is what the operation returned."""

    index: int
    value: T_co
    attempts: int = 1

    @property
    def is_success(self) -> bool:
        """Always ``True``."""
        return True

    @property
    def is_failure(self) -> bool:
        """Always ``False``."""
        return False


@dataclass(frozen=True, slots=True)
class Failure:
    """An item that did not succeed.

    ``status`` says how: ``"failed"`` (the operation raised ``error``), ``"skipped"`` (never
    started), ``"timeout"`` (unfinished in time) or ``"cancelled"`` (stopped while running).
    """

    index: int
    error: BaseException
    status: FailureStatus = "failed"
    attempts: int = 1

    @property
    def is_success(self) -> bool:
        """Always ``False``."""
        return False

    @property
    def is_failure(self) -> bool:
        """Always ``True``."""
        return True


Result: TypeAlias = Success[T] | Failure


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts for a whole batch. ``failed`` counts every non-success except ``skipped``."""

    total: int
    succeeded: int
    failed: int
    skipped: int
    duration_s: float


class BatchResult(Sequence[Result[T]]):
    """The results of a batch: a sequence of ``Success | Failure`` in input order.

    >>> r = BatchResult([Success(0, "a"), Failure(1, ValueError("bad"))], duration_s=0.1)
    >>> r.values(), r.summary.failed, r[1].status
    (['a'], 1, 'failed')
    """

    __slots__ = ("_results", "summary")

    def __init__(self, results: Sequence[Result[T]], *, duration_s: float = 0.0) -> None:
        self._results: list[Result[T]] = list(results)
        succeeded = sum(1 for r in self._results if isinstance(r, Success))
        skipped = sum(1 for r in self._results if isinstance(r, Failure) and r.status == "skipped")
        self.summary = Summary(
            total=len(self._results),
            succeeded=succeeded,
            failed=len(self._results) - succeeded - skipped,
            skipped=skipped,
            duration_s=duration_s,
        )

    @overload
    def __getitem__(self, index: int) -> Result[T]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Result[T]]: ...

    def __getitem__(self, index: int | slice) -> Result[T] | Sequence[Result[T]]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Result[T]]:
        return iter(self._results)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"<BatchResult total={s.total} succeeded={s.succeeded} failed={s.failed} "
            f"skipped={s.skipped} duration_s={s.duration_s:.3f}>"
        )

    @property
    def ok(self) -> bool:
        """True when every item succeeded."""
        return self.summary.succeeded == self.summary.total

    def values(self) -> list[T]:
        """The values of the successful items, in input order."""
        return [r.value for r in self._results if isinstance(r, Success)]

    def successes(self) -> list[Success[T]]:
        """The successful results, in input order."""
        return [r for r in self._results if isinstance(r, Success)]

    def failures(self) -> list[Failure]:
        """Every non-successful result (failed, skipped, timeout, cancelled), in input order."""
        return [r for r in self._results if isinstance(r, Failure)]

    def raise_on_failure(self) -> BatchResult[T]:
        """Raise one :class:`BatchFailedError` listing every failure; return self if none.

        >>> BatchResult([Success(0, 1)]).raise_on_failure().values()
        [1]
        """
        failures = self.failures()
        if not failures:
            return self
        shown = failures[:20]
        lines = [f"  [{f.index}] {f.status}: {type(f.error).__name__}: {f.error}" for f in shown]
        if len(failures) > len(shown):
            lines.append(f"  … and {len(failures) - len(shown)} more")
        message = f"{len(failures)} of {len(self)} items did not succeed:\n" + "\n".join(lines)
        raise BatchFailedError(message, failures)
