"""A clock-driven timeout scope (``asyncio.timeout`` semantics on any :class:`Clock`)."""

from __future__ import annotations

import asyncio
from types import TracebackType

from batchops.engine._clock import Clock, TimerHandle

__all__ = ["Deadline"]


class Deadline:
    """``async with Deadline(clock, when):`` raises ``TimeoutError`` if ``when`` passes.

    Why not ``asyncio.timeout_at``: it is tied to ``loop.time()``, so a virtual clock could
    not drive it. The cancel/uncancel bookkeeping mirrors Python 3.12's ``asyncio.Timeout``
    (3.11's version misreads cancellations that were already pending on entry).
    """

    __slots__ = ("_cancelling", "_clock", "_expired", "_handle", "_task", "_when")

    def __init__(self, clock: Clock, when: float) -> None:
        self._clock = clock
        self._when = when
        self._handle: TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = False
        self._cancelling = 0

    @property
    def expired(self) -> bool:
        """Whether the deadline fired while the block was running."""
        return self._expired

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside an asyncio task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._clock.call_at(self._when, self._on_deadline)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def _on_deadline(self) -> None:
        self._handle = None
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()
