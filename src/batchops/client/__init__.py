"""The SDK for a batchops server: an async core and a blocking facade over it.

- :class:`AsyncClient` / :class:`Client` — one connection pool (aiohttp); ``batch()``
  runs any number of operations in requests within the server's limits, concurrently,
  with idempotent retries, and returns one ``BatchResult`` in input order;
- :class:`AsyncCollection` / :class:`Collection` — ``client.collection("people")``:
  create/get/update/replace/delete/list/search, and ``*_many`` bulk helpers;
- :class:`NotificationWebhook` — a job's own webhook, for ``client.jobs.create_import``,
  ``bulk_update`` and ``bulk_delete`` (``notification_webhook=``).

See docs/client.md.
"""

from batchops.client._async_client import AsyncClient
from batchops.client._batch import is_retryable
from batchops.client._collection import AsyncCollection, Collection
from batchops.client._jobs import NotificationWebhook
from batchops.client._sync_client import Client

__all__ = [
    "AsyncClient",
    "AsyncCollection",
    "Client",
    "Collection",
    "NotificationWebhook",
    "is_retryable",
]
