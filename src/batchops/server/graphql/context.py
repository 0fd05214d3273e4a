"""What one GraphQL operation runs with: the caller, the services, and its record loader.

One :class:`OperationContext` per operation (an array of operations gets one each, run
one after another), so a loader's cache never outlives the operation that filled it: a
query after a mutation in the same array reads the database again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from graphql import DocumentNode
from strawberry.dataloader import DataLoader

from batchops._exceptions import APIError, NotFoundError
from batchops.server.auth import Caller
from batchops.server.deps import Services
from batchops.server.records import service
from batchops.store.base import Tx

__all__ = ["OperationContext", "RecordKey", "record_loader"]

RecordKey: TypeAlias = tuple[str, str, str]
"""(tenant, collection, record id): what the record loader is keyed by."""

Loaded: TypeAlias = dict[str, Any] | APIError | None


def record_loader(svc: Services) -> DataLoader[RecordKey, dict[str, Any] | None]:
    """A loader of live records: every ``load`` of one event-loop tick (the aliased
    ``record`` fields of a query, the ids of ``records``) is ONE store call, one
    :func:`~batchops.server.records.service.read_many` per collection inside it, in the
    order the collections were first asked for. A missing record loads as None; a bad
    collection name or id, as the 422 the records service answers."""

    async def load(keys: Sequence[RecordKey]) -> Sequence[Loaded]:
        wanted: dict[tuple[str, str], list[str]] = {}
        for tenant, collection, record_id in keys:
            wanted.setdefault((tenant, collection), []).append(record_id)

        def read(tx: Tx) -> dict[tuple[str, str], list[Any]]:
            found: dict[tuple[str, str], list[Any]] = {}
            for (tenant, collection), ids in wanted.items():
                try:
                    found[tenant, collection] = service.read_many(tx, tenant, collection, ids)
                except APIError as exc:  # the collection's name: every key of it fails
                    found[tenant, collection] = [exc] * len(ids)
            return found

        found = await svc.store.run(read)
        taken = {group: iter(outcomes) for group, outcomes in found.items()}
        return [_loaded(next(taken[tenant, collection])) for tenant, collection, _ in keys]

    # cache_key_fn: keys are tuples already. The loader is the operation's own, so its
    # cache is too.
    return DataLoader(load_fn=load)


def _loaded(outcome: Any) -> Loaded:
    if isinstance(outcome, NotFoundError):
        return None  # a missing record is null, not an error (the GraphQL convention)
    loaded: Loaded = outcome  # a record body, or an APIError the loader raises for it
    return loaded


@dataclass(slots=True)
class OperationContext:
    """``info.context`` of every resolver of one operation."""

    services: Services
    caller: Caller
    batch_id: str
    loader: DataLoader[RecordKey, dict[str, Any] | None]
    # The operation's document as the endpoint parsed it (None: it did not parse, and
    # Strawberry's parse answers the syntax error).
    document: DocumentNode | None = None
    started: float = field(default_factory=time.perf_counter)
    # Outcomes of record mutations already run as part of a batch, by response key (see
    # batchops.server.graphql.mutations): a mutation resolver takes its own from here.
    mutation_outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def tenant(self) -> str:
        """The caller's tenant: every read and write is scoped to it."""
        return self.caller.tenant

    @classmethod
    def new(
        cls,
        services: Services,
        caller: Caller,
        batch_id: str,
        document: DocumentNode | None = None,
    ) -> OperationContext:
        """A fresh context (and loader) for one operation of ``document``."""
        return cls(services, caller, batch_id, record_loader(services), document)
