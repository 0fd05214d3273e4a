"""``Client``: a blocking facade over :class:`AsyncClient`.

A private event loop runs in a daemon thread for the client's lifetime (so the
connection pool is reused across calls); every method submits the AsyncClient method of
the same name to it and waits. There is no request logic here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from batchops._results import BatchResult
from batchops.client._async_client import AsyncClient
from batchops.client._collection import Collection
from batchops.engine import Progress, RetryPolicy

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """The blocking SDK: same options and methods as :class:`AsyncClient`.

    ::

        with Client("http://127.0.0.1:8000", api_key) as client:
            people = client.collection("people")
            result = people.get_many(ids)

    Do not call it from inside a running event loop's thread with a coroutine of that
    loop in mind: it blocks that thread. Use :class:`AsyncClient` in async code.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        max_concurrent: int = 8,
        retry: RetryPolicy | None = None,
        coalesce: bool = False,
        coalesce_window_ms: float = 0.0,
        coalesce_max_batch: int = 100,
        max_batch_operations: int = 1000,
        max_batch_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="batchops-client", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def build() -> AsyncClient:
            # Built on its loop: aiohttp and the Batcher bind to the running loop.
            return AsyncClient(
                base_url,
                api_key,
                timeout=timeout,
                max_concurrent=max_concurrent,
                retry=retry,
                coalesce=coalesce,
                coalesce_window_ms=coalesce_window_ms,
                coalesce_max_batch=coalesce_max_batch,
                max_batch_operations=max_batch_operations,
                max_batch_bytes=max_batch_bytes,
            )

        try:
            self._async = self._run(build())
        except BaseException:
            self._stop_loop()
            raise

    def __repr__(self) -> str:
        return f"<Client {self._async.base_url!r}>"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this Client is closed; create a new one")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and stop the private loop (idempotent)."""
        if self._closed:
            return
        try:
            self._run(self._async.aclose())
        finally:
            self._closed = True
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def collection(self, name: str) -> Collection:
        """Calls on the collection ``name`` (see :class:`AsyncClient.collection`)."""
        return Collection(self, self._async.collection(name))

    def batch(
        self,
        operations: Iterable[Mapping[str, Any]],
        *,
        atomic: bool = False,
        continue_on_error: bool = True,
        parallel: int | None = None,
        chunk_size: int | None = None,
        max_concurrent: int | None = None,
        validate_only: bool = False,
        on_progress: Callable[[Progress], object] | None = None,
        progress: bool = False,
    ) -> BatchResult[Any]:
        """See :meth:`AsyncClient.batch` (``operations`` is read on the client's thread)."""
        return self._run(
            self._async.batch(
                operations,
                atomic=atomic,
                continue_on_error=continue_on_error,
                parallel=parallel,
                chunk_size=chunk_size,
                max_concurrent=max_concurrent,
                validate_only=validate_only,
                on_progress=on_progress,
                progress=progress,
            )
        )
