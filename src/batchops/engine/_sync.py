"""``run_batch``: the blocking facade, for scripts and notebooks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar, Unpack

from batchops._results import BatchResult
from batchops.engine._execute import batch_execute
from batchops.engine._options import EngineKwargs, EngineOptions

__all__ = ["run_batch"]

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")


def run_batch(
    items: Iterable[T] | AsyncIterable[T],
    operation: Callable[[T], Awaitable[R]],
    *,
    options: EngineOptions[T] | None = None,
    **kwargs: Unpack[EngineKwargs[T]],
) -> BatchResult[R]:
    """Blocking :func:`batch_execute`: same arguments, same result.

    Works with or without a running event loop in this thread. Inside one (Jupyter, an
    async test) it runs the batch on a fresh loop in a helper thread and blocks until it
    is done, so the operation must not depend on objects bound to the caller's loop
    (e.g. an ``httpx.AsyncClient`` created there); create them inside the operation or
    use ``await batch_execute(...)`` instead.
    """
    # Checked here, before a loop or a thread is started for it.
    checked = EngineOptions.of(options, kwargs)
    coro = batch_execute(items, operation, options=checked)
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
