"""The one engine: a bounded pool of worker coroutines pulling items from the input.

``batch_execute``, ``batch_stream`` and ``run_batch`` are thin layers over
:meth:`Engine.run`; they only differ in where finished results go (``emit``).

Why a pool and not a task per item: creating, scheduling and gathering a task costs
~6-7 µs per item, a worker loop ~1 µs. Why one loop with cheap checks instead of one
loop per feature: every option composes with every other (retry × rate × checkpoint ×
fail-fast × progress), and the checks that decide the per-item path are made once, in
``__init__``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, Generic, Literal, Protocol, TypeVar

from batchops._exceptions import (
    CheckpointError,
    ItemCancelledError,
    ItemSkippedError,
    ItemTimeoutError,
)
from batchops._results import Failure, FailureStatus, Result, Success
from batchops.engine._adaptive import AdaptiveLimit
from batchops.engine._checkpoint import Journal
from batchops.engine._clock import Clock, MonotonicClock, TimerHandle
from batchops.engine._deadline import Deadline
from batchops.engine._options import EngineOptions
from batchops.engine._progress import ProgressReporter
from batchops.engine._rate import RateLimiter
from batchops.engine._retry import is_overload, retry_after_of
from batchops.engine._source import Source

__all__ = ["Engine", "NotAsyncOperationError"]

T = TypeVar("T")
R = TypeVar("R")

_StopMode = Literal["cancelled", "timeout"]
_MISSING: Any = object()
_NEVER = float("-inf")


class NotAsyncOperationError(TypeError):
    """The operation returned something that is not awaitable (misuse: aborts the batch)."""


class _ChannelLike(Protocol):
    """What the stream layer provides so workers block when the consumer lags."""

    def full(self) -> bool:
        """Whether the consumer has fallen behind."""

    async def wait_room(self) -> None:
        """Wait until the consumer took a result."""


class Engine(Generic[T, R]):
    """A configured batch run: build it from checked :class:`EngineOptions`, then ``run()``."""

    def __init__(
        self,
        items: Iterable[T] | AsyncIterable[T],
        operation: Callable[[T], Awaitable[R]],
        options: EngineOptions[T],
    ) -> None:
        # Options were checked when ``options`` was built; copy them into attributes the
        # per-item path reads directly.
        max_concurrent = options.max_concurrent
        max_per_second = options.max_per_second
        retry = options.retry
        item_timeout = options.item_timeout
        clock = options.clock
        dry_run = options.dry_run
        adaptive = options.adaptive
        checkpoint = options.checkpoint
        self._source: Source[T] = Source(items)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        if dry_run:
            # A dry run makes no calls, so there is nothing to retry, pace or time out.
            self._operation: Callable[[T], Awaitable[Any]] = _validator(options.validate)
            retry, max_per_second, item_timeout = None, None, None
        else:
            self._operation = _as_async(operation)
        self._dry_run = dry_run
        self._max_concurrent = max_concurrent
        self._retry = retry
        self._fail_fast = options.fail_fast
        self._timeout = options.timeout
        self._item_timeout = item_timeout
        self._on_progress = options.on_progress
        self._progress_bar = options.progress
        self._checkpoint = checkpoint
        self._checkpoint_fsync = options.checkpoint_fsync
        self._key = options.key
        self._rate = RateLimiter(max_per_second, self._clock) if max_per_second else None
        self._adaptive = AdaptiveLimit(max_concurrent) if adaptive else None
        # The lean path: one await of the operation, nothing else per item.
        self._simple = retry is None and item_timeout is None and checkpoint is None
        self._simple = self._simple and not adaptive
        self._gated = self._rate is not None or self._adaptive is not None
        self._pause_until = _NEVER
        self._stopped: _StopMode | None = None
        self._stop_reason = ""
        self._workers: list[asyncio.Task[None]] = []
        # Items pulled but waiting for their turn (adaptive slot, pause, rate), by worker.
        self._held: dict[asyncio.Task[Any] | None, int] = {}
        self._journal: Journal | None = None
        self._reporter: ProgressReporter | None = None
        self._emit: Callable[[Result[R]], object] = _discard
        self._channel: _ChannelLike | None = None

    @property
    def total(self) -> int | None:
        """Number of input items, if the input has a ``len()``."""
        return self._source.total

    @property
    def clock(self) -> Clock:
        """The clock this run uses."""
        return self._clock

    async def run(
        self, emit: Callable[[Result[R]], object], channel: _ChannelLike | None = None
    ) -> None:
        """Run every item; hand each result to ``emit`` as it finishes.

        Returns when every pulled item has a result (and, for sized inputs stopped by
        fail-fast or the batch timeout, every unpulled item too).
        """
        self._emit = emit
        self._channel = channel
        loop = asyncio.get_running_loop()
        if self._checkpoint is not None and self._key is not None:
            # Checkpointing: the journal is opened here, not in __init__, so building an
            # engine (argument checks) never touches the disk.
            self._journal = Journal(self._checkpoint, fsync=self._checkpoint_fsync)
        if self._on_progress is not None or self._progress_bar:
            self._reporter = ProgressReporter(
                total=self._source.total,
                clock=self._clock,
                callback=self._on_progress,
                bar=self._progress_bar,
            )
        deadline: TimerHandle | None = None
        if self._timeout is not None:
            deadline = self._clock.call_at(self._clock.now() + self._timeout, self._on_deadline)
        total = self._source.total
        n = self._max_concurrent if total is None else min(self._max_concurrent, total)
        self._workers = [loop.create_task(self._worker()) for _ in range(n)]
        try:
            try:
                await asyncio.gather(*self._workers)
            except BaseException:
                for task in self._workers:
                    task.cancel()
                await asyncio.gather(*self._workers, return_exceptions=True)
                raise
            if self._stopped is not None:
                self._account_unpulled()
        finally:
            if deadline is not None:
                deadline.cancel()
            if self._journal is not None:
                self._journal.close()
            if self._reporter is not None:
                self._reporter.close()

    # -- stopping (fail-fast, batch timeout) ------------------------------------------

    def _on_deadline(self) -> None:
        self._stop("timeout", f"the batch timeout of {self._timeout}s passed")

    def _stop(self, mode: _StopMode, reason: str) -> None:
        if self._stopped is not None:
            return
        self._stopped = mode
        self._stop_reason = reason
        me = _current_task_or_none()
        for task in self._workers:
            if task is not me:
                task.cancel()

    def _stop_failure(self, index: int, *, started: bool, attempts: int) -> Failure:
        reason = self._stop_reason
        if self._stopped == "timeout":
            when = "before it finished" if started else "before it started"
            return Failure(index, ItemTimeoutError(f"{reason} {when}"), "timeout", attempts)
        if started:
            return Failure(index, ItemCancelledError(f"cancelled: {reason}"), "cancelled", attempts)
        return Failure(index, ItemSkippedError(f"not started: {reason}"), "skipped", 0)

    def _account_unpulled(self) -> None:
        journal = self._journal
        for index, item in self._source.remaining():
            if journal is not None:
                value = journal.done.get(self._key_of(item), _MISSING)
                if value is not _MISSING:
                    self._finish(Success(index, value, 0))
                    continue
            self._finish(self._stop_failure(index, started=False, attempts=0))

    # -- the worker loop ---------------------------------------------------------------

    async def _worker(self) -> None:
        try:
            await self._work_loop()
        except asyncio.CancelledError:
            if self._stopped is None:
                raise
            _uncancel()
            index = self._held.pop(_current_task_or_none(), -1)
            if index >= 0:
                self._finish(self._stop_failure(index, started=False, attempts=0))

    async def _work_loop(self) -> None:
        emit_result = self._finish
        operation = self._operation
        sync_next = self._source.sync_next
        simple = self._simple
        journal = self._journal
        channel = self._channel
        while self._stopped is None:
            if sync_next is not None:
                try:
                    index, item = sync_next()
                except StopIteration:
                    return
            else:
                pulled = await self._source.next_async()
                if pulled is None:
                    return
                index, item = pulled
            item_key = ""
            if journal is not None:
                item_key = self._key_of(item)
                value = journal.done.get(item_key, _MISSING)
                if value is not _MISSING:
                    emit_result(Success(index, value, 0))
                    continue
            token = 0
            if self._gated:
                token = await self._wait_turn(index)
            if simple:
                try:
                    result: Result[R] = Success(index, await operation(item))
                except Exception as exc:
                    result = self._failed(index, exc, 1)
                except asyncio.CancelledError as exc:
                    result = self._interrupted(index, exc, 1)
            else:
                result = await self._run_item(index, item, item_key, token)
            emit_result(result)
            if channel is not None and channel.full():
                await channel.wait_room()

    async def _wait_turn(self, index: int) -> int:
        """Gate a pulled item: adaptive slot, then the pool pause and the rate cap."""
        # Remember the held item so a stop during the wait can account for it.
        held = self._held
        task = _current_task_or_none()
        held[task] = index
        token = 0
        if self._adaptive is not None:
            token = await self._adaptive.acquire()
        await self._wait_pause_and_rate()
        del held[task]
        return token

    async def _wait_pause_and_rate(self) -> None:
        clock = self._clock
        while True:
            if self._pause_until != _NEVER:
                now = clock.now()
                while now < self._pause_until:
                    await clock.sleep(self._pause_until - now)
                    now = clock.now()
            if self._rate is None:
                return
            await self._rate.acquire()
            # A pause that began while we waited for our slot wins over the slot.
            if self._pause_until == _NEVER or clock.now() >= self._pause_until:
                return

    def _pause_for(self, seconds: float) -> None:
        until = self._clock.now() + seconds
        if self._pause_until == _NEVER or until > self._pause_until:
            self._pause_until = until
        self._gated = True

    def _key_of(self, item: T) -> str:
        assert self._key is not None
        k = self._key(item)
        if not isinstance(k, str):
            raise TypeError(
                f"key(item) must return a str (the item's checkpoint id), got "
                f"{type(k).__name__} {k!r}; e.g. key=lambda item: str(item['id'])"
            )
        return k

    # -- one item ------------------------------------------------------------------------

    def _failed(self, index: int, exc: Exception, attempts: int) -> Failure:
        if type(exc) is NotAsyncOperationError:
            raise exc
        after = retry_after_of(exc)
        if after is not None:
            self._pause_for(after)
        status: FailureStatus = "timeout" if isinstance(exc, ItemTimeoutError) else "failed"
        return Failure(index, exc, status, attempts)

    def _interrupted(self, index: int, exc: asyncio.CancelledError, attempts: int) -> Failure:
        if self._stopped is not None:
            _uncancel()
            return self._stop_failure(index, started=True, attempts=attempts)
        task = asyncio.current_task()
        if task is not None and task.cancelling() == 0:
            # The operation raised CancelledError itself (nobody cancelled us): that is
            # this item's outcome, not a reason to abandon the batch.
            return Failure(index, exc, "cancelled", attempts)
        raise exc

    async def _run_item(self, index: int, item: T, item_key: str, token: int) -> Result[R]:
        clock = self._clock
        retry = self._retry
        item_timeout = self._item_timeout
        adaptive = self._adaptive
        operation = self._operation
        attempts = 0
        result: Result[R] | None = None
        overloaded = False
        try:
            while result is None:
                attempts += 1
                try:
                    if item_timeout is None:
                        value = await operation(item)
                    else:
                        scope = Deadline(clock, clock.now() + item_timeout)
                        try:
                            async with scope:
                                value = await operation(item)
                        except TimeoutError as exc:
                            if not scope.expired:
                                raise
                            raise ItemTimeoutError(
                                f"attempt {attempts} took longer than item_timeout={item_timeout}s"
                            ) from exc
                except Exception as exc:
                    failure = self._failed(index, exc, attempts)
                    if adaptive is not None and is_overload(exc):
                        overloaded = True
                        adaptive.overloaded(token)
                    if retry is None or attempts >= retry.attempts or not retry.should_retry(exc):
                        result = failure
                        break
                    await clock.sleep(retry.wait_s(attempts, exc))
                    await self._wait_pause_and_rate()
                    continue
                except asyncio.CancelledError as exc:
                    result = self._interrupted(index, exc, attempts)
                    break
                if self._journal is not None and not self._dry_run:
                    try:
                        self._journal.record(item_key, value)
                    except CheckpointError as exc:
                        result = Failure(index, exc, "failed", attempts)
                        break
                result = Success(index, value, attempts)
        except asyncio.CancelledError as exc:
            # Cancelled between attempts (backoff sleep, pause, rate wait).
            result = self._interrupted(index, exc, attempts)
        finally:
            if adaptive is not None:
                adaptive.release(success=isinstance(result, Success) and not overloaded)
        return result

    def _finish(self, result: Result[R]) -> None:
        reporter = self._reporter
        if reporter is not None:
            limit = self._adaptive.limit if self._adaptive is not None else self._max_concurrent
            reporter.item_done(type(result) is Success, limit)
        self._emit(result)
        if self._fail_fast and type(result) is Failure and result.status == "failed":
            self._stop("cancelled", f"fail_fast: item {result.index} failed")


# -- helpers ---------------------------------------------------------------------------


def _discard(result: object) -> None:
    return None


def _current_task_or_none() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _uncancel() -> None:
    # We cancelled this worker ourselves to stop the batch and are handling it; clear the
    # request so structured-concurrency scopes further up are not confused by it.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()


def _is_async_callable(obj: object) -> bool:
    while hasattr(obj, "func") and hasattr(obj, "args"):  # functools.partial
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - we want the method itself
    return inspect.iscoroutinefunction(call)


def _as_async(operation: Callable[[T], Awaitable[R]]) -> Callable[[T], Awaitable[R]]:
    if not callable(operation):
        raise TypeError(
            f"operation must be an async callable taking one item (async def op(item): ...), "
            f"got {type(operation).__name__}"
        )
    if _is_async_callable(operation):
        return operation
    # A lambda or a plain def may still return an awaitable (lambda x: client.get(x)):
    # accept it, but check what it returns.
    sync_or_not = operation

    async def call(item: T) -> R:
        returned = sync_or_not(item)
        if not inspect.isawaitable(returned):
            raise NotAsyncOperationError(
                f"operation returned {type(returned).__name__}, not an awaitable: batchops "
                "needs an async callable. Use `async def op(item): ...`, or for blocking "
                "code `async def op(item): return await asyncio.to_thread(f, item)`"
            )
        return await returned

    return call


def _validator(validate: Callable[[Any], object] | None) -> Callable[[Any], Awaitable[Any]]:
    async def check(item: Any) -> Any:
        if validate is None:
            return item
        verdict = validate(item)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is False:
            raise ValueError(f"validate() rejected item {item!r}")
        if verdict is None or verdict is True:
            return item
        return verdict

    return check
