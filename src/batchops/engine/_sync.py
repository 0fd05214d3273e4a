"""``run_batch``: the blocking facade, for scripts and notebooks."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from batchops._results import BatchResult
from batchops.engine._clock import Clock
from batchops.engine._execute import batch_execute
from batchops.engine._progress import Progress
from batchops.engine._retry import RetryPolicy

__all__ = ["run_batch"]

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")


def run_batch(
    items: Iterable[T] | AsyncIterable[T],
    operation: Callable[[T], Awaitable[R]],
    *,
    max_concurrent: int = 10,
    max_per_second: float | None = None,
    retry: RetryPolicy | None = None,
    fail_fast: bool = False,
    timeout: float | None = None,
    item_timeout: float | None = None,
    on_progress: Callable[[Progress], object] | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    key: Callable[[T], str] | None = None,
    adaptive: bool = False,
    dry_run: bool = False,
    validate: Callable[[T], object] | None = None,
    clock: Clock | None = None,
    checkpoint_fsync: bool = False,
) -> BatchResult[R]:
    """Blocking :func:`batch_execute`: same arguments, same result.

    Works with or without a running event loop in this thread. Inside one (Jupyter, an
    async test) it runs the batch on a fresh loop in a helper thread and blocks until it
    is done, so the operation must not depend on objects bound to the caller's loop
    (e.g. an ``httpx.AsyncClient`` created there); create them inside the operation or
    use ``await batch_execute(...)`` instead.
    """
    coro = batch_execute(
        items,
        operation,
        max_concurrent=max_concurrent,
        max_per_second=max_per_second,
        retry=retry,
        fail_fast=fail_fast,
        timeout=timeout,
        item_timeout=item_timeout,
        on_progress=on_progress,
        progress=progress,
        checkpoint=checkpoint,
        key=key,
        adaptive=adaptive,
        dry_run=dry_run,
        validate=validate,
        clock=clock,
        checkpoint_fsync=checkpoint_fsync,
    )
    return _run_blocking(coro)


def _run_blocking(coro: Coroutine[Any, Any, V]) -> V:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop is running here, and asyncio.run() refuses to nest: use another thread.
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coro)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="batchops-run_batch", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
