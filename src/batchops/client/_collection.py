"""``client.collection("people")``: record calls for one collection, single and bulk.

Single calls return the record (or page) and raise an :class:`~batchops.APIError`; bulk
helpers return a :class:`~batchops.BatchResult` in input order and never raise for a
failed item. Every bulk helper is ``client.batch()`` over typed operations.
``Collection`` is the blocking facade (``Client.collection(name)``): bridges, no logic.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import quote

from batchops._results import BatchResult
from batchops.client._batch import BatchOptions
from batchops.client._facade import Facade, blocking
from batchops.client._ops import typed_op

if TYPE_CHECKING:
    from batchops.client._async_client import AsyncClient

__all__ = ["AsyncCollection", "Collection"]

Record = dict[str, Any]


def _path(collection: str, *parts: str) -> str:
    return "/v1/collections/" + "/".join(quote(p, safe="") for p in (collection, *parts))


class AsyncCollection:
    """Calls on one collection of an :class:`AsyncClient` (``client.collection(name)``)."""

    __slots__ = ("_client", "name")

    def __init__(self, client: AsyncClient, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"collection name must be a non-empty str, got {name!r}")
        self._client = client
        self.name = name

    def __repr__(self) -> str:
        return f"<AsyncCollection {self.name!r}>"

    # -- single calls ------------------------------------------------------------------

    async def create(self, data: Mapping[str, Any], *, id: str | None = None) -> Record:
        """Create a record (``id`` optional: the server makes a time-ordered one)."""
        op = typed_op("create", self.name, id=id, data=dict(data))
        result: Record = await self._client._single(op)
        return result

    async def get(self, id: str) -> Record:
        """Read one record; :class:`~batchops.NotFoundError` if it does not exist."""
        op = typed_op("read", self.name, id=id)
        result: Record = await self._client._single(
            op, rest=("GET", _path(self.name, "records", id), None)
        )
        return result

    async def update(
        self, id: str, data: Mapping[str, Any], *, if_match: int | None = None
    ) -> Record:
        """Merge ``data`` into the record (JSON merge patch: ``None`` removes a field)."""
        op = typed_op("update", self.name, id=id, data=dict(data), if_match=if_match)
        result: Record = await self._client._single(op)
        return result

    async def replace(
        self, id: str, data: Mapping[str, Any], *, if_match: int | None = None
    ) -> Record:
        """Replace the record's data as a whole."""
        op = typed_op("replace", self.name, id=id, data=dict(data), if_match=if_match)
        result: Record = await self._client._single(op)
        return result

    async def delete(self, id: str, *, hard: bool = False, if_match: int | None = None) -> Record:
        """Delete a record (soft unless ``hard=True``)."""
        options = {"hard": True} if hard else None
        op = typed_op("delete", self.name, id=id, if_match=if_match, options=options)
        result: Record = await self._client._single(op)
        return result

    async def list(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Record:
        """One page ``{"records": [...], "next_cursor": ...}``; ``filters`` match fields."""
        op = typed_op("list", self.name, options=_list_options(filters, limit, cursor))
        result: Record = await self._client._single(op)
        return result

    async def search(
        self, query: str, *, filters: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> Record:
        """Full-text search: ``{"results": [{"record", "score"}, ...], "total": n}``."""
        body: dict[str, Any] = {"query": query}
        if filters is not None:
            body["filters"] = dict(filters)
        if limit is not None:
            body["limit"] = limit
        op = typed_op("search", self.name, query=query, options=_list_options(filters, limit, None))
        result: Record = await self._client._single(
            op, rest=("POST", _path(self.name, "search"), body)
        )
        return result

    # -- bulk helpers: one BatchResult in input order ----------------------------------

    async def get_many(
        self, ids: Iterable[str], **batch_options: Unpack[BatchOptions]
    ) -> BatchResult[Record]:
        """Read many records; a missing one is a ``Failure`` with ``NotFoundError``."""
        ops = (typed_op("read", self.name, id=i) for i in ids)
        return await self._client.batch(ops, **batch_options)

    async def search_many(
        self, queries: Iterable[str | Mapping[str, Any]], **batch_options: Unpack[BatchOptions]
    ) -> BatchResult[Record]:
        """Many searches: each query is a text, or ``{"query", "filters"?, "limit"?}``."""
        return await self._client.batch(self._searches(queries), **batch_options)

    async def list_many(
        self, filters: Iterable[Mapping[str, Any]], **batch_options: Unpack[BatchOptions]
    ) -> BatchResult[Record]:
        """One list page per filter mapping (field -> value)."""
        ops = (typed_op("list", self.name, options=_list_options(f, None, None)) for f in filters)
        return await self._client.batch(ops, **batch_options)

    async def create_many(
        self, records: Iterable[Mapping[str, Any]], **batch_options: Unpack[BatchOptions]
    ) -> BatchResult[Record]:
        """Create many records; each item is ``{"data": {...}, "id"?: "..."}``."""
        return await self._client.batch(self._creates(records), **batch_options)

    async def update_many(
        self,
        changes: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]],
        **batch_options: Unpack[BatchOptions],
    ) -> BatchResult[Record]:
        """Merge-patch many records: ``{id: patch}`` or ``(id, patch)`` pairs."""
        pairs = changes.items() if isinstance(changes, Mapping) else changes
        ops = (typed_op("update", self.name, id=i, data=dict(d)) for i, d in pairs)
        return await self._client.batch(ops, **batch_options)

    async def delete_many(
        self, ids: Iterable[str], *, hard: bool = False, **batch_options: Unpack[BatchOptions]
    ) -> BatchResult[Record]:
        """Delete many records (soft unless ``hard=True``)."""
        options = {"hard": True} if hard else None
        ops = (typed_op("delete", self.name, id=i, options=options) for i in ids)
        return await self._client.batch(ops, **batch_options)

    def _searches(self, queries: Iterable[str | Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        for q in queries:
            if isinstance(q, str):
                yield typed_op("search", self.name, query=q)
            else:
                yield typed_op(
                    "search",
                    self.name,
                    query=q["query"],
                    options=_list_options(q.get("filters"), q.get("limit"), None),
                )

    def _creates(self, records: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        for position, record in enumerate(records):
            if not isinstance(record, Mapping) or "data" not in record:
                raise ValueError(
                    f"create_many: item {position} must be {{'data': {{...}}, 'id'?: ...}} "
                    f"(the body of a create), got {record!r}"
                )
            yield typed_op("create", self.name, id=record.get("id"), data=record["data"])


def _list_options(
    filters: Mapping[str, Any] | None, limit: int | None, cursor: str | None
) -> dict[str, Any] | None:
    options: dict[str, Any] = {}
    if filters:
        options["filters"] = dict(filters)
    if limit is not None:
        options["limit"] = limit
    if cursor is not None:
        options["cursor"] = cursor
    return options or None


class Collection(Facade[AsyncCollection]):
    """The blocking :class:`AsyncCollection` (``Client.collection(name)``).

    Every method is the :class:`AsyncCollection` method of the same name, run on the
    client's private event loop (see :mod:`batchops.client._facade`); there is no logic here.
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """The collection's name."""
        return self._async.name

    def __repr__(self) -> str:
        return f"<Collection {self.name!r}>"

    create = blocking(AsyncCollection.create)
    get = blocking(AsyncCollection.get)
    update = blocking(AsyncCollection.update)
    replace = blocking(AsyncCollection.replace)
    delete = blocking(AsyncCollection.delete)
    list = blocking(AsyncCollection.list)
    search = blocking(AsyncCollection.search)
    get_many = blocking(AsyncCollection.get_many)
    search_many = blocking(AsyncCollection.search_many)
    list_many = blocking(AsyncCollection.list_many)
    create_many = blocking(AsyncCollection.create_many)
    update_many = blocking(AsyncCollection.update_many)
    delete_many = blocking(AsyncCollection.delete_many)


# ``builtins`` keeps ``list[...]`` meaning the type inside classes with a ``list`` method.
_ = builtins
