"""``collection_counts``: a tenant's collections and their live records (the console's
collections page), on both backends."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import TIMESTAMP

from batchops.store import RecordRow, Store

MakeRecord = Callable[..., RecordRow]


async def test_collection_counts_are_the_tenants_live_records_by_collection_in_name_order(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    gone = make_record("gone", collection="archive")
    gone.deleted_at = TIMESTAMP
    await store.run(
        lambda tx: tx.insert_records(
            [
                make_record("t1", collection="teams"),
                make_record("p1"),
                make_record("p2"),
                gone,
                make_record("x1", collection="secret", tenant_=tenant + "_b"),
            ]
        )
    )
    counts = await store.run(lambda tx: tx.collection_counts(tenant))
    assert counts == [("people", 2), ("teams", 1)]


async def test_a_tenant_without_records_has_no_collections(store: Store, tenant: str) -> None:
    assert await store.run(lambda tx: tx.collection_counts(tenant)) == []
