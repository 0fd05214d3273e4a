"""``Client``: a blocking facade over :class:`AsyncClient`.

A private event loop runs in a daemon thread for the client's lifetime (so the
connection pool is reused across calls); every method is the AsyncClient method of the
same name run on it (:mod:`batchops.client._facade`). There is no request logic here, and
``tests/client/test_sync_surface.py`` pins that both clients (and their collections and
jobs) offer the same methods with the same signatures.
"""

from __future__ import annotations

from types import TracebackType
from typing import Unpack

from batchops.client._async_client import AsyncClient, ClientOptions
from batchops.client._collection import Collection
from batchops.client._facade import Facade, LoopThread, blocking, iterating
from batchops.client._jobs import Jobs

__all__ = ["Client"]


class Client(Facade[AsyncClient]):
    """The blocking SDK: the options and methods of :class:`AsyncClient`.

    ::

        with Client("http://127.0.0.1:8000", api_key) as client:
            people = client.collection("people")
            result = people.get_many(ids)
            for r in client.stream_batch(operations):   # a plain iterator
                ...
            job = client.jobs.create_batch(operations)  # an async batch: its job
            answer = client.graphql("{ people { name } }")  # a GraphQLResponse

    ``close()`` is ``AsyncClient.aclose()``. Do not call it from inside a running event
    loop's thread with a coroutine of that loop in mind: it blocks that thread. Use
    :class:`AsyncClient` in async code.
    """

    __slots__ = ()

    def __init__(self, base_url: str, api_key: str, **options: Unpack[ClientOptions]) -> None:
        loop = LoopThread("batchops-client")

        async def build() -> AsyncClient:
            # Built on its loop: aiohttp and the Batcher bind to the running loop.
            return AsyncClient(base_url, api_key, **options)

        try:
            target = loop.run(build())
        except BaseException:
            loop.stop()
            raise
        super().__init__(loop, target)

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return self._async.base_url

    def __repr__(self) -> str:
        return f"<Client {self.base_url!r}>"

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
        """Send what is still being coalesced, close the connection pool and stop the
        private loop (idempotent)."""
        if self._loop.closed:
            return
        try:
            self._loop.run(self._async.aclose())
        finally:
            self._loop.stop()

    @property
    def jobs(self) -> Jobs:
        """Bulk jobs and async batches (see :attr:`AsyncClient.jobs`), blocking."""
        return Jobs(self._loop, self._async.jobs)

    def collection(self, name: str) -> Collection:
        """Calls on the collection ``name`` (see :meth:`AsyncClient.collection`), blocking."""
        return Collection(self._loop, self._async.collection(name))

    batch = blocking(AsyncClient.batch)
    stream_batch = iterating(AsyncClient.stream_batch)
    graphql = blocking(AsyncClient.graphql)
    graphql_batch = blocking(AsyncClient.graphql_batch)
