"""``AsyncClient``: the SDK's async core (one connection pool, one engine underneath)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Hashable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypedDict, Unpack

from batchops._results import BatchResult, Failure, Result, Success
from batchops.client._batch import BatchOptions, BatchRunner, StreamOptions, client_retry_policy
from batchops.client._collection import AsyncCollection
from batchops.client._graphql import GraphQLRequest, GraphQLResponse, send_graphql
from batchops.client._jobs import AsyncJobs
from batchops.client._transport import Transport
from batchops.coalesce import Batcher
from batchops.engine import RetryPolicy

__all__ = ["AsyncClient", "ClientOptions"]

Operations = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]


class ClientOptions(TypedDict, total=False):
    """:class:`AsyncClient`'s keyword options, which the blocking ``Client`` passes on."""

    timeout: float
    max_concurrent: int
    retry: RetryPolicy | None
    coalesce: bool
    coalesce_window_ms: float
    coalesce_max_batch: int
    max_batch_operations: int
    max_batch_bytes: int


class _Single:
    """One coalesced call: its typed operation, and its key for dedupe.

    Reads of the same record in flight share one slot; every write is its own (the
    default object hash is identity).
    """

    __slots__ = ("dedupe_key", "op")

    def __init__(self, op: dict[str, Any]) -> None:
        self.op = op
        self.dedupe_key: Hashable = (
            ("read", op["collection"], op["id"]) if op["type"] == "read" else self
        )


def _dedupe_key(single: _Single) -> Hashable:
    return single.dedupe_key


def _group(single: _Single) -> Hashable:
    return (single.op["collection"], single.op["type"])


class AsyncClient:
    """Talk to a batchops server: records, batches of any size, coalesced single calls.

    ::

        async with AsyncClient("http://127.0.0.1:8000", api_key) as client:
            people = client.collection("people")
            ada = await people.create({"name": "Ada"})
            result = await people.get_many(ids)          # a BatchResult, input order
            result = await client.batch(operations)      # any number, any iterable
            answer = await client.graphql("{ people { name } }")  # GraphQLResponse

    - ``timeout``: seconds per HTTP request (connect + answer).
    - ``max_concurrent``: requests in flight for the whole client (the connection
      pool's size, and the default number of batch requests sent at once).
    - ``retry``: a :class:`~batchops.RetryPolicy` for requests that got no answer or a
      408/429/502/503/504 (honouring ``Retry-After``); default 8 attempts with jittered
      backoff.
    - ``coalesce``: single calls from concurrent tasks (``await people.get(id)``) are
      merged into ``/v1/batch`` requests by a :class:`~batchops.coalesce.Batcher`,
      grouped by collection and operation kind; ``coalesce_window_ms`` waits that long
      for more calls (0: calls made in the same event-loop tick), ``coalesce_max_batch``
      caps one merged request.
    - ``max_batch_operations`` / ``max_batch_bytes``: the server's batch limits
      (defaults: 1,000 operations, 10 MiB); ``batch()`` splits requests within them.
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
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent={max_concurrent!r}: must be an int >= 1")
        if max_batch_operations < 1 or max_batch_bytes < 1024:
            raise ValueError(
                "max_batch_operations must be >= 1 and max_batch_bytes >= 1024; they "
                "describe the server's limits (defaults 1000 and 10 MiB)"
            )
        self.base_url = base_url
        self._transport = Transport(
            base_url, api_key, timeout=timeout, max_connections=max_concurrent
        )
        self._runner = BatchRunner(
            self._transport,
            max_batch_operations=max_batch_operations,
            max_batch_bytes=max_batch_bytes,
            max_concurrent=max_concurrent,
            retry=client_retry_policy(retry),
        )
        self._batcher: Batcher[_Single, Any] | None = None
        if coalesce:
            self._batcher = Batcher(
                self._send_coalesced,
                max_batch_size=min(coalesce_max_batch, max_batch_operations),
                max_delay_ms=coalesce_window_ms,
                key=_dedupe_key,
                group=_group,
                max_concurrent_batches=max_concurrent,
            )

    def __repr__(self) -> str:
        return f"<AsyncClient {self.base_url!r}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Send what is still being coalesced, then close the connection pool."""
        if self._batcher is not None:
            await self._batcher.aclose()
        await self._transport.aclose()

    @property
    def jobs(self) -> AsyncJobs:
        """Bulk jobs: ``await client.jobs.create_import(path, collection=...)``,
        ``bulk_update``, ``bulk_delete`` (each takes ``notification_webhook=``), ``get``,
        ``list``, ``cancel``, ``failures``, ``events``, ``results``, and async batches
        (``create_batch``) (see docs/jobs.md)."""
        return AsyncJobs(self._runner)

    def collection(self, name: str) -> AsyncCollection:
        """Calls on the collection ``name``."""
        return AsyncCollection(self, name)

    async def batch(
        self, operations: Operations, **options: Unpack[BatchOptions]
    ) -> BatchResult[Any]:
        """Run any number of operations; one ``Success``/``Failure`` each, in input order.

        ``operations`` (dicts in either dialect of ``POST /v1/batch``, see
        docs/batch.md) may be any iterable or async iterable; it is read lazily and sent
        as requests of at most ``chunk_size`` (default and cap: the server's limit)
        operations and the server's byte limit, ``max_concurrent`` requests at a time.

        - ``Success.value`` is the operation's result body; ``Failure.error`` is the
          :class:`~batchops.APIError` of its error envelope (``NotFoundError``…).
        - Requests without an answer, and 408/429/502/503/504 answers, are retried with the same
          ``Idempotency-Key`` (the server replays instead of applying twice); operations
          answered 429/503 inside a batch are sent again on their own. A 429 for more
          operations than the key's per-minute budget is never retried: the request is
          split within the budget (an atomic one fails with
          :class:`~batchops.BatchOverRateLimitError`).
        - A whole-request 4xx that names one operation (``details.index`` or
          ``details.path``) fails that operation alone; the others are sent again.
        - References (``${name…}``), ``depends_on`` and ``atomicity_group`` work within a
          request: the splitter never cuts between tied operations, and refuses (400
          ``REFERENCE_ACROSS_REQUESTS``, not sent) an operation whose tied group cannot
          fit one request or that names an operation outside its request.

        Options (keywords, :class:`BatchOptions`; the bulk helpers take them too):

        - ``atomic=True``: all or nothing, so it must fit one request; a bigger one
          raises :class:`~batchops.BatchTooLargeError` before anything is sent.
        - ``continue_on_error=False``: each request stops at its first failure, and
          requests not yet sent are skipped (``"skipped"``) once a failure is seen.
        - ``parallel``: independent reads the server may run at once within a request
          (they see the data as committed before that request's writes).
        - ``chunk_size``: operations per request (capped by the server's limit), or an
          :class:`~batchops.engine.AdaptiveChunkSize` that steers it between bounds.
        - ``target_ms``: adapt the operations per request so that requests take about
          this long (AIMD between 1 and ``chunk_size`` or the server's limit).
        - ``max_concurrent``: requests at once (default: the client's).
        - ``validate_only``: the server plans and validates, runs nothing.
        - ``on_progress(Progress)`` per finished operation; ``progress=True`` draws a
          rich bar on a terminal.
        """
        return await self._runner.execute(operations, **options)

    def stream_batch(
        self, operations: Operations, **options: Unpack[StreamOptions]
    ) -> AsyncGenerator[Result[Any], None]:
        """:meth:`batch`, but yield each operation's result as its request finishes.

        For inputs too big to hold the results in memory. ``Result.index`` is the input
        position (requests finish in any order). Takes :meth:`batch`'s options, and two
        for resumable runs (the CLI's ``--resume``):

        - ``idempotency_prefix``: request *n* is sent with ``Idempotency-Key:
          <prefix>:<n>`` (default: a random prefix per call), so rerunning the same input
          with the same prefix replays requests the server already ran;
        - ``checkpoint``: a journal file (the engine's checkpoint) of finished requests;
          a rerun yields their stored results without sending them again.

        Use ``contextlib.aclosing`` when you may stop early.
        """
        return self._runner.stream(operations, **options)

    # -- GraphQL -------------------------------------------------------------------------

    async def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
    ) -> GraphQLResponse:
        """Send one GraphQL request (``POST /graphql``); its answer, errors included.

        ::

            answer = await client.graphql(
                "query Person($id: ID!) { person(id: $id) { name } }", {"id": "ada"}
            )
            answer.data, answer.errors      # both may be there: partial results
            answer.raise_for_errors()       # GraphQLResponseError listing every error

        Errors inside the answer (a field not found, a document that does not validate)
        are :class:`GraphQLError` entries of the response, never raised here. A failure
        of the request as a whole raises its :class:`~batchops.APIError`
        (``AuthenticationError``, ``RateLimitedError``…), after the retries.

        Retries: a document of queries only is retried as a GET would be (the client's
        ``retry``). A document holding a mutation is sent again only when nothing of it
        can have run (a 408/429/503 answer, a connection refused before sending); after a
        timeout or a lost connection it is not, and :class:`~batchops.ConnectionFailedError`
        is raised: the mutation may or may not have run.
        """
        request = GraphQLRequest(query, variables, operation_name)
        [response] = await send_graphql(self._transport, self._runner.retry, [request], array=False)
        return response

    async def graphql_batch(
        self, requests: Sequence[GraphQLRequest | str]
    ) -> list[GraphQLResponse]:
        """Send several GraphQL requests as ONE ``POST /graphql`` (a JSON array); one
        :class:`GraphQLResponse` each, in order.

        ::

            answers = await client.graphql_batch([
                "{ people { name } }",                                 # the query alone
                GraphQLRequest("query P($id: ID!) { person(id: $id) { name } }",
                               {"id": "ada"}, operation_name="P"),
            ])

        One request, never split: more requests than the server's limit raise
        :class:`~batchops.BatchTooLargeError` (413), and nothing ran. An empty sequence
        sends nothing and returns ``[]``. Retried as :meth:`graphql` is, as a whole: if
        any document holds a mutation, the array is a mutation.
        """
        if isinstance(requests, str | GraphQLRequest):
            raise TypeError("requests must be a sequence of GraphQLRequest or str, not one")
        items = [r if isinstance(r, GraphQLRequest) else GraphQLRequest(r) for r in requests]
        if not items:
            return []
        return await send_graphql(self._transport, self._runner.retry, items, array=True)

    # -- single calls --------------------------------------------------------------------

    async def _single(self, op: dict[str, Any], rest: tuple[str, str, Any] | None = None) -> Any:
        """One record call: coalesced, a REST read, or a one-operation batch.

        Why writes go through ``/v1/batch`` even alone: it carries an Idempotency-Key, so
        a retry after a dropped connection cannot apply the write twice. Reads use the
        plain REST route (cheaper on the server, and safe to repeat).
        """
        if self._batcher is not None:
            return await self._batcher.load(_Single(op))
        if rest is not None:
            method, path, body = rest
            return await self._runner.call(method, path, body)
        outcome = (await self._runner.execute([op]))[0]
        if isinstance(outcome, Failure):
            raise outcome.error
        return outcome.value

    async def _send_coalesced(self, singles: list[_Single]) -> list[Any]:
        # The Batcher's batch_fn: one value or one Exception per call, in order.
        result = await self._runner.execute([s.op for s in singles])
        return [r.value if isinstance(r, Success) else r.error for r in result]
