"""Tenant isolation: every read is scoped by tenant."""

from __future__ import annotations

from collections.abc import Callable

from batchops.store import RecordRow, Store

MakeRecord = Callable[..., RecordRow]


async def test_tenant_a_never_sees_tenant_b_rows(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    other = tenant + "_b"
    await store.run(
        lambda tx: tx.insert_records(
            [make_record("same-id", {"t": "secret"}, tenant_=other), make_record("mine")]
        )
    )
    listed = await store.run(
        lambda tx: tx.list_records(tenant, "people", filters={}, after_id=None, limit=10)
    )
    assert [r.id for r in listed] == ["mine"]
    assert await store.run(lambda tx: tx.get_records(tenant, "people", ["same-id"])) == {}
    assert await store.run(
        lambda tx: tx.search_records(tenant, "people", query="secret", filters={}, limit=10)
    ) == ([], 0)
    assert await store.run(lambda tx: tx.existing_ids(tenant, "people", ["same-id"])) == set()
    assert await store.run(lambda tx: tx.delete_records(tenant, "people", ["same-id"])) == 0


async def test_the_same_id_may_exist_in_two_tenants(
    store: Store, tenant: str, make_record: MakeRecord
) -> None:
    other = tenant + "_b"
    await store.run(lambda tx: tx.insert_records([make_record("x")]))
    await store.run(lambda tx: tx.insert_records([make_record("x", tenant_=other)]))
    assert set(await store.run(lambda tx: tx.get_records(other, "people", ["x"]))) == {"x"}
