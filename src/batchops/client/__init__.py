"""The SDK for a batchops server: an async core and a blocking facade over it.

- :class:`AsyncClient` / :class:`Client` — one connection pool (aiohttp); ``batch()``
  runs any number of operations in requests within the server's limits, concurrently,
  with idempotent retries, and returns one ``BatchResult`` in input order;
  ``stream_batch()`` yields the results as requests finish;
- :class:`AsyncCollection` / :class:`Collection` — ``client.collection("people")``:
  create/get/update/replace/delete/list/search, and ``*_many`` bulk helpers;
- :class:`AsyncJobs` / :class:`Jobs` — ``client.jobs``: imports, bulk update/delete,
  async batches (``create_batch``; ``submit_batch`` hands back an :class:`AsyncBatchJob` /
  :class:`BatchJob` whose ``results()`` is a ``BatchResult``), listing every job (pages
  followed), failures as :class:`JobFailure` values, retrying an import's failed rows,
  and following jobs;
- :class:`NotificationWebhook` — a job's own webhook (``notification_webhook=``);
- :class:`GraphQLRequest`, :class:`GraphQLResponse`, :class:`GraphQLError` —
  ``client.graphql(query, variables)`` and ``client.graphql_batch(requests)`` (one
  ``POST /graphql``, a JSON array): data and errors, partial results kept;
- :class:`ClientOptions`, :class:`BatchOptions`, :class:`StreamOptions` — the keyword
  options of the client, of ``batch()`` (and the bulk helpers) and of ``stream_batch()``.

``Client``, ``Collection`` and ``Jobs`` have exactly the methods of their async
counterparts (a test compares them), each running the async one on a private loop.
See docs/client.md.
"""

from batchops.client._async_client import AsyncClient, ClientOptions
from batchops.client._batch import BatchOptions, StreamOptions, is_retryable
from batchops.client._collection import AsyncCollection, Collection
from batchops.client._graphql import GraphQLError, GraphQLRequest, GraphQLResponse
from batchops.client._jobs import (
    AsyncBatchJob,
    AsyncJobs,
    BatchJob,
    JobFailure,
    Jobs,
    NotificationWebhook,
)
from batchops.client._sync_client import Client

__all__ = [
    "AsyncBatchJob",
    "AsyncClient",
    "AsyncCollection",
    "AsyncJobs",
    "BatchJob",
    "BatchOptions",
    "Client",
    "ClientOptions",
    "Collection",
    "GraphQLError",
    "GraphQLRequest",
    "GraphQLResponse",
    "JobFailure",
    "Jobs",
    "NotificationWebhook",
    "StreamOptions",
    "is_retryable",
]
