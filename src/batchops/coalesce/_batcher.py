"""``Batcher``: many ``load(key)`` calls become few ``batch_fn(keys)`` calls.

The hot path (``load``) is one Future per distinct key, appended to a plain list; no Task
per load. A batch becomes one Task when it is dispatched (size reached, time window over,
``flush()``/``aclose()``), and its results are handed back by index.

Why one module of ~600 lines: it is one class whose load, dispatch and settle paths share
private state (the open batches, the dedupe map, the back-pressure counters), plus the
option checks and the batch-function contract that belong to it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast

from batchops._exceptions import (
    BatchContractError,
    BatcherClosedError,
    BatcherFullError,
    BatcherTimeoutError,
)
from batchops.coalesce._breaker import CircuitBreaker
from batchops.coalesce._cache import MISSING, Cache
from batchops.engine import Clock, MonotonicClock, RetryPolicy, TimerHandle

__all__ = ["BatchEvent", "BatchFn", "Batcher", "Overflow"]

log = logging.getLogger("batchops.coalesce")

K = TypeVar("K")
V = TypeVar("V")

#: ``async def batch_fn(keys: list[K]) -> Sequence[V | BaseException]``
BatchFn = Callable[[list[K]], Awaitable[Sequence[V | BaseException]]]

#: What ``load()`` does when ``max_pending`` keys are outstanding: wait for room, or raise
#: :class:`~batchops.BatcherFullError` at once.
Overflow = Literal["block", "raise"]


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """One dispatched batch, as ``on_batch`` hooks (and the debug log) see it.

    - ``size``: keys in the batch (one ``batch_fn`` call);
    - ``group``: the batch's ``group(key)`` value (``None`` without ``group=``);
    - ``duration_s``: from the call's start to its answer, retries and waiting for a
      ``max_concurrent_batches`` slot included (the Batcher's clock);
    - ``outcome``: ``"ok"`` (``batch_fn`` answered one value per key), ``"error"`` (it
      raised, after retries, or broke its contract: every load of it failed) or
      ``"cancelled"``;
    - ``key_errors``: keys answered with an ``Exception`` in an ``"ok"`` batch;
    - ``error``: the whole-batch error of an ``"error"`` batch.
    """

    size: int
    group: Hashable
    duration_s: float
    outcome: Literal["ok", "error", "cancelled"]
    key_errors: int = 0
    error: BaseException | None = None


class _Batch(Generic[K, V]):
    """Keys queued for one ``batch_fn`` call, with their Futures at the same indexes."""

    __slots__ = ("cks", "dispatched", "futs", "group", "handle", "keys", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, group: Hashable) -> None:
        self.loop = loop
        self.group = group
        self.keys: list[K] = []
        # Cache/dedupe keys; the very same list as ``keys`` when there is no ``key=``.
        self.cks: list[Hashable] = cast(list[Hashable], self.keys)
        self.futs: list[asyncio.Future[V]] = []
        self.handle: TimerHandle | None = None
        self.dispatched = False


class Batcher(Generic[K, V]):
    """Coalesce single loads into batch calls (DataLoader, plus a time window).

    **The batch function contract.** ``batch_fn`` is an ``async`` function that receives
    a ``list`` of keys and returns a sequence (a ``list`` or ``tuple``) of **the same
    length and the same order**: ``result[i]`` answers ``keys[i]``. To fail one key only,
    put an ``Exception`` instance at its index; that load raises it and the others get
    their values. Return ``None`` (or any value) for "not found" as you see fit::

        async def get_users(ids: list[int]) -> list[User | Exception]:
            rows = {u.id: u for u in await db.fetch_users(ids)}
            return [rows.get(i) or NotFoundError(f"user {i}") for i in ids]

    - A wrong length, or something that is not a sequence (a ``dict``, a generator,
      ``None``) fails every load of that batch with :class:`~batchops.BatchContractError`.
    - An exception raised by ``batch_fn`` rejects every load of that batch with it (after
      the ``retry`` policy gave up, if any); nothing of that batch is cached.

    **Dispatch.** A batch is sent when it holds ``max_batch_size`` keys, or
    ``max_delay_ms`` after its first key arrived, whichever comes first. With
    ``max_delay_ms=0`` (the default), loads made in the same event-loop tick, e.g. by
    ``asyncio.gather(*(loader.load(k) for k in ks))``, share one batch.

    **Options.**

    - ``dedupe``: identical keys in flight share one slot (and one result).
    - ``key``: maps a load key to the hashable key used for dedupe and caching.
    - ``cache``: a :class:`Cache` (LRU + TTL) consulted before queueing; only successes
      are stored.
    - ``group``: keys whose ``group(key)`` differ never share a batch.
    - ``max_concurrent_batches``: at most this many ``batch_fn`` calls in flight.
    - ``max_pending``: at most this many keys queued or in flight; beyond it ``load``
      waits for room (back-pressure, ``overflow="block"``, the default) instead of
      growing memory, or raises :class:`~batchops.BatcherFullError` at once
      (``overflow="raise"``).
    - ``on_batch``: called with a :class:`BatchEvent` once per dispatched batch, when it
      has settled (its loads have their answers); an exception it raises is logged, never
      passed to the loads. Each event is also a debug line on the ``batchops.coalesce``
      logger.
    - ``retry``: a :class:`~batchops.RetryPolicy` applied to whole-batch exceptions only.
    - ``breaker``: a :class:`CircuitBreaker`; while open, loads fail at once with
      :class:`~batchops.CircuitOpenError`. One batch is one call for the breaker.
    - ``clock``: where the time window and retry back-off read time and sleep (the
      engine's ``Clock``; ``VirtualClock`` in tests).

    ``load(key, timeout=s)`` bounds one load: after ``s`` seconds (on the Batcher's clock)
    it raises :class:`~batchops.BatcherTimeoutError`, and only that load.

    Use ``async with Batcher(...) as loader:`` or call :meth:`aclose` to finish the work
    still queued; loads after that raise :class:`~batchops.BatcherClosedError`.
    """

    __slots__ = (
        "_batch",
        "_batch_fn",
        "_batches",
        "_breaker",
        "_cache",
        "_clock",
        "_closed",
        "_delay_s",
        "_dups",
        "_group",
        "_key",
        "_max_batch_size",
        "_max_pending",
        "_on_batch",
        "_outstanding",
        "_overflow",
        "_pending",
        "_retry",
        "_room_waiters",
        "_semaphore",
        "_tasks",
        "_waiting_for_room",
    )

    def __init__(
        self,
        batch_fn: BatchFn[K, V],
        *,
        max_batch_size: int = 100,
        max_delay_ms: float = 0,
        dedupe: bool = True,
        cache: Cache[Any, V] | None = None,
        key: Callable[[K], Hashable] | None = None,
        group: Callable[[K], Hashable] | None = None,
        max_concurrent_batches: int | None = None,
        max_pending: int | None = None,
        overflow: Overflow = "block",
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
        on_batch: Callable[[BatchEvent], object] | None = None,
    ) -> None:
        _check_options(
            batch_fn,
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            cache=cache,
            key=key,
            group=group,
            max_concurrent_batches=max_concurrent_batches,
            max_pending=max_pending,
            overflow=overflow,
            retry=retry,
            breaker=breaker,
            clock=clock,
            on_batch=on_batch,
        )
        self._batch_fn = batch_fn
        self._max_batch_size = max_batch_size
        self._delay_s = max_delay_ms / 1000.0
        self._cache = cache
        self._key = key
        self._group = group
        self._retry = retry
        self._breaker = breaker
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._max_pending = max_pending
        self._overflow = overflow
        self._on_batch = on_batch
        self._semaphore = (
            asyncio.Semaphore(max_concurrent_batches) if max_concurrent_batches else None
        )
        # Dedupe map: cache key -> the Future of its slot, from load until resolution.
        self._pending: dict[Hashable, asyncio.Future[V]] | None = {} if dedupe else None
        # Extra Futures of deduplicated loads, keyed by their slot's Future. Why not hand
        # out the slot's Future itself: a cancelled awaiter would cancel it for everyone.
        self._dups: dict[asyncio.Future[V], list[asyncio.Future[V]]] = {}
        self._batch: _Batch[K, V] | None = None  # the open batch when there are no groups
        self._batches: dict[Hashable, _Batch[K, V]] = {}  # open batches by group
        self._tasks: set[asyncio.Task[None]] = set()
        self._outstanding = 0
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._waiting_for_room = 0
        self._closed = False

    # -- loading --------------------------------------------------------------------------

    def load(self, key: K, *, timeout: float | None = None) -> Awaitable[V]:
        """Queue ``key`` for the next batch; await the result to get its value.

        Raises the key's own error (an ``Exception`` returned at its index, or the
        whole-batch error). Returns a Future (no Task per load), or a coroutine when
        ``max_pending`` is reached and the load must wait for room, or when ``timeout``
        is given: then, after ``timeout`` seconds without an answer (waiting for room
        included), the load raises :class:`~batchops.BatcherTimeoutError`; its key leaves
        a batch not yet sent (unless another load waits for it) and a late answer is
        dropped for it.

        With ``overflow="raise"``, a load while ``max_pending`` keys are outstanding
        raises :class:`~batchops.BatcherFullError` here, queueing nothing.
        """
        if self._closed:
            raise BatcherClosedError(
                "load() on a closed Batcher: it was closed by aclose() or by leaving its "
                "'async with' block; create a new Batcher (or load before closing)"
            )
        if timeout is not None and (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or math.isnan(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"load(timeout={timeout!r}): must be seconds > 0, or None")
        loaded = self._load(key)
        if timeout is None:
            return loaded
        return self._load_within(key, loaded, seconds=timeout)

    async def _load_within(self, key: K, loaded: Awaitable[V], *, seconds: float) -> V:
        # What the timer stops: this load's own Future (its slot, or its dedupe Future),
        # or, while it waits for room, a Task the timer can cancel (the slot it then gets
        # is stopped the same way).
        current: asyncio.Future[Any]
        if isinstance(loaded, asyncio.Future):
            current = loaded
        else:
            cast(Coroutine[Any, Any, V], loaded).close()  # not started: nothing to undo
            current = asyncio.ensure_future(self._slot_when_room(key))
        expired = False

        def expire() -> None:
            nonlocal expired
            if current.done():
                return
            expired = True
            if not isinstance(current, asyncio.Task):
                self._abandon(current)
            current.cancel()

        clock = self._clock
        timer = clock.call_at(clock.now() + seconds, expire)
        try:
            if isinstance(current, asyncio.Task):
                current = await current
            return cast(V, await current)
        except asyncio.CancelledError:
            if not expired:
                raise
            raise BatcherTimeoutError(
                f"load({key!r}) got no answer within {seconds} s; only this load gave up "
                "(raise timeout=, or look at the batch function's latency)"
            ) from None
        finally:
            timer.cancel()

    def _abandon(self, fut: asyncio.Future[V]) -> None:
        """Forget a timed-out load's Future: a dedupe waiter leaves its slot's list; a slot
        no one else waits on leaves its batch if the batch is not sent yet."""
        for slot, waiters in self._dups.items():
            if fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._dups[slot]
                return
        if self._dups.get(fut):
            return  # other loads wait on this slot: the key stays in its batch
        batch = self._open_batch_of(fut)
        if batch is None:
            return  # sent: the answer will find the Future done and drop it
        position = batch.futs.index(fut)
        ck = batch.cks[position]
        del batch.futs[position]
        del batch.keys[position]
        if batch.cks is not batch.keys:
            del batch.cks[position]
        if self._pending is not None and self._pending.get(ck) is fut:
            del self._pending[ck]
        self._release(1)

    def _open_batch_of(self, fut: asyncio.Future[V]) -> _Batch[K, V] | None:
        open_batches = [self._batch] if self._group is None else list(self._batches.values())
        for batch in open_batches:
            if batch is not None and not batch.dispatched and fut in batch.futs:
                return batch
        return None

    def _load(self, key: K) -> Awaitable[V]:
        ck: Hashable = key if self._key is None else self._key(key)
        cache = self._cache
        if cache is not None:
            value = cache.lookup(ck)
            if value is not MISSING:
                done: asyncio.Future[V] = asyncio.get_running_loop().create_future()
                done.set_result(cast(V, value))
                return done
        pending = self._pending
        if pending is not None:
            slot = pending.get(ck)
            if slot is not None:
                dup: asyncio.Future[V] = slot.get_loop().create_future()
                waiters = self._dups.get(slot)
                if waiters is None:
                    self._dups[slot] = [dup]
                else:
                    waiters.append(dup)
                return dup
        breaker = self._breaker
        if breaker is not None and breaker.refuses():
            refused: asyncio.Future[V] = asyncio.get_running_loop().create_future()
            refused.set_exception(breaker._open_error())
            return refused
        max_pending = self._max_pending
        if max_pending is not None and self._outstanding >= max_pending:
            if self._overflow == "raise":
                raise BatcherFullError(
                    f"load({key!r}): the Batcher holds max_pending={max_pending} keys "
                    "queued or in flight (overflow='raise'); nothing was queued. Retry "
                    "later, raise max_pending, or use overflow='block' to wait for room"
                )
            return self._load_when_room(key)

        if self._group is None:
            batch = self._batch
            if batch is None:
                batch = self._batch = self._open_batch(None)
        else:
            group = self._group(key)
            batch = self._batches.get(group)
            if batch is None:
                batch = self._batches[group] = self._open_batch(group)
        fut: asyncio.Future[V] = batch.loop.create_future()
        batch.keys.append(key)
        if self._key is not None:
            batch.cks.append(ck)
        batch.futs.append(fut)
        if pending is not None:
            pending[ck] = fut
        self._outstanding += 1
        if len(batch.futs) >= self._max_batch_size:
            self._dispatch(batch)
        return fut

    async def load_many(self, keys: Sequence[K]) -> list[V | BaseException]:
        """Load every key; per key, its value or its ``Exception`` (one never fails others)."""
        return await asyncio.gather(*[self.load(k) for k in keys], return_exceptions=True)

    async def _load_when_room(self, key: K) -> V:
        return await (await self._slot_when_room(key))

    async def _slot_when_room(self, key: K) -> asyncio.Future[V]:
        """Wait for room under ``max_pending``, then queue ``key``: its Future."""
        while True:
            await self._room()
            # _load, not load: a load accepted before aclose() still completes. Room was
            # just seen, and nothing ran since: this queues (or answers) at once.
            loaded = self._load(key)
            if isinstance(loaded, asyncio.Future):
                return loaded
            cast(Coroutine[Any, Any, V], loaded).close()

    async def _room(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiting_for_room += 1
        try:
            while self._max_pending is not None and self._outstanding >= self._max_pending:
                waiter: asyncio.Future[None] = loop.create_future()
                self._room_waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        self._wake_room_waiters()  # pass the wake-up we were given on
                    raise
        finally:
            self._waiting_for_room -= 1

    # -- cache ----------------------------------------------------------------------------

    def prime(self, key: K, value: V) -> None:
        """Put ``value`` in the cache for ``key`` unless it is there already."""
        cache = self._require_cache("prime")
        if isinstance(value, BaseException):
            raise TypeError(
                f"prime({key!r}, {value!r}): failures are never cached; prime a value, "
                "or let the load fail"
            )
        ck = key if self._key is None else self._key(key)
        if cache.lookup(ck) is MISSING:
            cache.set(ck, value)

    def clear(self, key: K) -> None:
        """Forget ``key``: the next ``load(key)`` calls ``batch_fn`` again.

        Loads already waiting for ``key`` still get the result in flight.
        """
        ck = key if self._key is None else self._key(key)
        if self._cache is not None:
            self._cache.delete(ck)
        if self._pending is not None:
            self._pending.pop(ck, None)

    def clear_all(self) -> None:
        """Forget every cached and in-flight key (as :meth:`clear` does for one)."""
        if self._cache is not None:
            self._cache.clear()
        if self._pending is not None:
            self._pending.clear()

    def _require_cache(self, method: str) -> Cache[Any, V]:
        if self._cache is None:
            raise TypeError(
                f"{method}() needs a cache: create the Batcher with cache=Cache(max_size=...)"
            )
        return self._cache

    # -- dispatch -------------------------------------------------------------------------

    def _open_batch(self, group: Hashable) -> _Batch[K, V]:
        loop = asyncio.get_running_loop()
        batch: _Batch[K, V] = _Batch(loop, group)
        if self._key is not None:
            batch.cks = []
        if self._delay_s > 0:
            clock = self._clock
            batch.handle = clock.call_at(clock.now() + self._delay_s, lambda: self._due(batch))
        else:
            # call_soon runs after every callback already queued, so all the loads made
            # in this tick (gather() starts them all before yielding) join this batch.
            batch.handle = loop.call_soon(self._due, batch)
        return batch

    def _due(self, batch: _Batch[K, V]) -> None:
        if not batch.dispatched:
            self._dispatch(batch)

    def _dispatch(self, batch: _Batch[K, V]) -> None:
        batch.dispatched = True
        if batch.handle is not None:
            batch.handle.cancel()
        if self._group is None:
            if self._batch is batch:
                self._batch = None
        elif self._batches.get(batch.group) is batch:
            del self._batches[batch.group]
        task = batch.loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch_all(self) -> None:
        if self._batch is not None:
            self._dispatch(self._batch)
        for batch in list(self._batches.values()):
            self._dispatch(batch)

    async def flush(self) -> None:
        """Dispatch every queued key now and wait until those batches have completed."""
        self._dispatch_all()
        if self._tasks:
            # wait() rather than gather(): cancelling flush() must not cancel the batches.
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        """Finish all queued and in-flight work, then refuse new loads."""
        self._closed = True
        while True:
            self._dispatch_all()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            elif self._waiting_for_room:
                await asyncio.sleep(0)  # a woken load is about to enqueue
            else:
                return

    async def __aenter__(self) -> Batcher[K, V]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- one batch ------------------------------------------------------------------------

    async def _run(self, batch: _Batch[K, V]) -> None:
        if not batch.futs:
            return  # every load of it timed out before it was sent
        semaphore = self._semaphore
        started = self._clock.now()
        try:
            if semaphore is None:
                values = await self._call(batch.keys)
            else:
                async with semaphore:
                    values = await self._call(batch.keys)
        except Exception as exc:
            self._settle_failed(batch, exc)
            self._report(batch, started, "error", error=exc)
            return
        except BaseException:
            self._settle_cancelled(batch)
            self._report(batch, started, "cancelled")
            raise
        error = _contract_error(batch.keys, values)
        if error is not None:
            self._settle_failed(batch, error)
            self._report(batch, started, "error", error=error)
        else:
            self._settle(batch, values)
            key_errors = sum(1 for v in values if isinstance(v, BaseException))
            self._report(batch, started, "ok", key_errors=key_errors)

    def _report(
        self,
        batch: _Batch[K, V],
        started: float,
        outcome: Literal["ok", "error", "cancelled"],
        *,
        key_errors: int = 0,
        error: BaseException | None = None,
    ) -> None:
        hook = self._on_batch
        if hook is None and not log.isEnabledFor(logging.DEBUG):
            return
        event = BatchEvent(
            size=len(batch.keys),
            group=batch.group,
            duration_s=self._clock.now() - started,
            outcome=outcome,
            key_errors=key_errors,
            error=error,
        )
        log.debug(
            "batch of %d keys (group %r): %s in %.3f s, %d key errors%s",
            event.size,
            event.group,
            outcome,
            event.duration_s,
            key_errors,
            "" if error is None else f" ({type(error).__name__}: {error})",
        )
        if hook is not None:
            try:
                hook(event)
            except Exception:
                # A broken hook must not fail loads that already have their answers.
                log.exception("Batcher on_batch hook raised for %r", event)

    async def _call(self, keys: list[K]) -> Sequence[V | BaseException]:
        breaker = self._breaker
        if breaker is None:
            return await self._call_with_retry(keys)
        with breaker.guard():
            return await self._call_with_retry(keys)

    async def _call_with_retry(self, keys: list[K]) -> Sequence[V | BaseException]:
        retry = self._retry
        if retry is None:
            return await _call_batch_fn(self._batch_fn, keys)
        return await retry.call(lambda: _call_batch_fn(self._batch_fn, keys), clock=self._clock)

    def _settle(self, batch: _Batch[K, V], values: Sequence[V | BaseException]) -> None:
        futs = batch.futs
        pending = self._pending
        cache = self._cache
        if pending is None and cache is None and not self._dups:
            for fut, value in zip(futs, values, strict=True):
                if not fut.done():
                    if isinstance(value, BaseException):
                        fut.set_exception(value)
                    else:
                        fut.set_result(value)
        else:
            dups = self._dups
            for ck, fut, value in zip(batch.cks, futs, values, strict=True):
                if pending is not None and pending.get(ck) is fut:
                    del pending[ck]
                extra = dups.pop(fut, None) if dups else None
                if isinstance(value, BaseException):
                    _reject(fut, extra, value)
                else:
                    if cache is not None:
                        cache.set(ck, value)
                    if not fut.done():
                        fut.set_result(value)
                    if extra is not None:
                        for dup in extra:
                            if not dup.done():
                                dup.set_result(value)
        self._release(len(futs))

    def _settle_failed(self, batch: _Batch[K, V], exc: BaseException) -> None:
        pending = self._pending
        dups = self._dups
        for ck, fut in zip(batch.cks, batch.futs, strict=True):
            if pending is not None and pending.get(ck) is fut:
                del pending[ck]
            _reject(fut, dups.pop(fut, None) if dups else None, exc)
        self._release(len(batch.futs))

    def _settle_cancelled(self, batch: _Batch[K, V]) -> None:
        pending = self._pending
        dups = self._dups
        for ck, fut in zip(batch.cks, batch.futs, strict=True):
            if pending is not None and pending.get(ck) is fut:
                del pending[ck]
            fut.cancel()
            for dup in (dups.pop(fut, None) if dups else None) or ():
                dup.cancel()
        self._release(len(batch.futs))

    def _release(self, count: int) -> None:
        self._outstanding -= count
        if self._room_waiters:
            self._wake_room_waiters()

    def _wake_room_waiters(self) -> None:
        assert self._max_pending is not None
        room = self._max_pending - self._outstanding
        waiters = self._room_waiters
        while room > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def __repr__(self) -> str:
        queued = sum(len(b.futs) for b in self._batches.values())
        if self._batch is not None:
            queued += len(self._batch.futs)
        return (
            f"<Batcher queued={queued} in_flight_batches={len(self._tasks)} closed={self._closed}>"
        )


def _reject(
    fut: asyncio.Future[Any], extra: list[asyncio.Future[Any]] | None, exc: BaseException
) -> None:
    if not fut.done():
        fut.set_exception(exc)
    if extra is not None:
        for dup in extra:
            if not dup.done():
                dup.set_exception(exc)


async def _call_batch_fn(batch_fn: BatchFn[K, V], keys: list[K]) -> Sequence[V | BaseException]:
    awaitable = batch_fn(keys)
    if not inspect.isawaitable(awaitable):
        raise BatchContractError(
            f"batch_fn returned {type(awaitable).__name__}, not an awaitable: the batch "
            "function must be 'async def batch_fn(keys) -> list' (one value per key)"
        )
    return await awaitable


def _contract_error(keys: list[Any], values: object) -> BatchContractError | None:
    # list/tuple first: the Sequence ABC check is slow, and they are what batch_fns return.
    is_sequence = (
        type(values) is list
        or type(values) is tuple
        or (isinstance(values, Sequence) and not isinstance(values, str | bytes | bytearray))
    )
    if not is_sequence:
        hint = ""
        if isinstance(values, dict):
            hint = "; to return a mapping, reorder it: [found.get(k) for k in keys]"
        return BatchContractError(
            f"batch_fn must return a list with one value (or Exception) per key, in key "
            f"order; it returned {type(values).__name__} for {len(keys)} keys{hint}"
        )
    count = len(cast(Sequence[object], values))
    if count == len(keys):
        return None
    return BatchContractError(
        f"batch_fn must return one value (or Exception) per key, in key order; it got "
        f"{len(keys)} keys and returned {count} values"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_options(
    batch_fn: object,
    *,
    max_batch_size: object,
    max_delay_ms: object,
    cache: object,
    key: object,
    group: object,
    max_concurrent_batches: object,
    max_pending: object,
    overflow: object,
    retry: object,
    breaker: object,
    clock: object,
    on_batch: object,
) -> None:
    if not callable(batch_fn):
        raise TypeError(
            f"Batcher(batch_fn={batch_fn!r}): pass an async function "
            "'async def batch_fn(keys: list[K]) -> list[V | Exception]'"
        )
    plain = inspect.isfunction(batch_fn) or inspect.ismethod(batch_fn)
    if plain and not inspect.iscoroutinefunction(batch_fn):
        raise TypeError(
            f"Batcher(batch_fn={getattr(batch_fn, '__qualname__', batch_fn)!r}): batch_fn "
            "must be an async function; define it with 'async def' (for blocking code, "
            "'return await asyncio.to_thread(sync_fn, keys)' inside it)"
        )
    if not _is_int(max_batch_size) or cast(int, max_batch_size) < 1:
        raise ValueError(
            f"Batcher(max_batch_size={max_batch_size!r}): must be an int >= 1, the most "
            "keys one batch_fn call receives (1 disables batching)"
        )
    if (
        not isinstance(max_delay_ms, int | float)
        or isinstance(max_delay_ms, bool)
        or math.isnan(max_delay_ms)
        or math.isinf(max_delay_ms)
        or max_delay_ms < 0
    ):
        raise ValueError(
            f"Batcher(max_delay_ms={max_delay_ms!r}): must be milliseconds >= 0, how long "
            "a batch waits for more keys after its first (0: only loads of the same tick)"
        )
    if cache is not None and not isinstance(cache, Cache):
        raise TypeError(
            f"Batcher(cache={cache!r}): pass cache=Cache(max_size=..., ttl_s=...) or None"
        )
    for name, fn in (("key", key), ("group", group)):
        if fn is not None and not callable(fn):
            raise TypeError(
                f"Batcher({name}={fn!r}): pass a function of the load key returning "
                "a hashable value, or None"
            )
    for name, limit in (
        ("max_concurrent_batches", max_concurrent_batches),
        ("max_pending", max_pending),
    ):
        if limit is not None and (not _is_int(limit) or cast(int, limit) < 1):
            raise ValueError(f"Batcher({name}={limit!r}): must be an int >= 1, or None")
    if overflow not in ("block", "raise"):
        raise ValueError(
            f"Batcher(overflow={overflow!r}): must be 'block' (wait for room) or 'raise' "
            "(BatcherFullError at once)"
        )
    if overflow == "raise" and max_pending is None:
        raise ValueError(
            "Batcher(overflow='raise') needs max_pending=N: without a bound it never fills"
        )
    if on_batch is not None and not callable(on_batch):
        raise TypeError(
            f"Batcher(on_batch={on_batch!r}): pass a function taking a BatchEvent, or None"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(
            f"Batcher(retry={retry!r}): pass a batchops.RetryPolicy, e.g. "
            "retry=RetryPolicy(attempts=3); it applies to whole-batch exceptions only"
        )
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise TypeError(
            f"Batcher(breaker={breaker!r}): pass CircuitBreaker(failure_threshold=..., "
            "reset_timeout_s=...) or None"
        )
    if clock is not None and not isinstance(clock, Clock):
        raise TypeError(
            f"Batcher(clock={clock!r}): pass a batchops.engine Clock "
            "(MonotonicClock, VirtualClock) with now(), sleep() and call_at()"
        )
