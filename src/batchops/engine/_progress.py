"""Progress reporting: the ``on_progress`` callback and the optional rich bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchops.engine._clock import Clock

if TYPE_CHECKING:
    import rich.progress

__all__ = ["Progress", "ProgressReporter"]

# Redrawing a terminal line costs far more than running a fast item.
_BAR_REFRESH_S = 0.1


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a running batch, passed to ``on_progress`` as each item finishes.

    ``total`` is ``None`` when the input has no ``len()`` (generators, async iterables).
    ``failed`` counts every finished non-success, so ``succeeded + failed == completed``.
    ``concurrency`` is the current adaptive limit (or ``max_concurrent``).
    """

    completed: int
    total: int | None
    succeeded: int
    failed: int
    elapsed_s: float
    concurrency: int

    @property
    def rate_per_s(self) -> float:
        """Items finished per second so far (0.0 before any time has passed)."""
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Estimated seconds left at the current rate; ``None`` if unknown."""
        rate = self.rate_per_s
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.completed) / rate


class ProgressReporter:
    """Counts finished items and tells the callback and/or the bar."""

    __slots__ = (
        "_bar",
        "_bar_task",
        "_callback",
        "_clock",
        "_last_draw",
        "_started",
        "completed",
        "succeeded",
        "total",
    )

    def __init__(
        self,
        *,
        total: int | None,
        clock: Clock,
        callback: Callable[[Progress], object] | None,
        bar: bool,
    ) -> None:
        self.total = total
        self.completed = 0
        self.succeeded = 0
        self._clock = clock
        self._callback = callback
        self._started = clock.now()
        self._last_draw = 0.0
        self._bar: rich.progress.Progress | None = None
        self._bar_task: rich.progress.TaskID | None = None
        if bar and sys.stderr.isatty():
            self._open_bar()

    def _open_bar(self) -> None:
        import rich.console
        import rich.progress

        self._bar = rich.progress.Progress(
            *rich.progress.Progress.get_default_columns(),
            rich.progress.MofNCompleteColumn(),
            console=rich.console.Console(file=sys.stderr),
            transient=False,
        )
        self._bar.start()
        self._bar_task = self._bar.add_task("batch", total=self.total)

    def item_done(self, success: bool, concurrency: int) -> None:
        """Count one finished item and report it."""
        self.completed += 1
        if success:
            self.succeeded += 1
        if self._callback is not None:
            self._callback(self.snapshot(concurrency))
        if self._bar is not None:
            now = time.monotonic()
            if now - self._last_draw >= _BAR_REFRESH_S:
                self._last_draw = now
                self._draw()

    def snapshot(self, concurrency: int) -> Progress:
        """The current :class:`Progress`."""
        return Progress(
            self.completed,
            self.total,
            self.succeeded,
            self.completed - self.succeeded,
            self._clock.now() - self._started,
            concurrency,
        )

    def _draw(self) -> None:
        if self._bar is not None and self._bar_task is not None:
            self._bar.update(self._bar_task, completed=self.completed)

    def close(self) -> None:
        """Draw the final state and release the terminal."""
        if self._bar is not None:
            self._draw()
            self._bar.stop()
            self._bar = None
