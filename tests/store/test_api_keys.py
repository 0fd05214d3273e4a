"""API keys: insert, find by hash, list, revoke, count."""

from __future__ import annotations

import uuid

from batchops.store import ApiKeyRow, Store, Tx


def _key(tenant: str, name: str) -> ApiKeyRow:
    return ApiKeyRow(
        key_id=f"key_{uuid.uuid4().hex}",
        tenant=tenant,
        key_hash=uuid.uuid4().hex * 2,
        name=name,
        created_at="2026-01-01T00:00:00.000Z",
    )


async def test_an_inserted_key_is_found_by_its_hash(store: Store, tenant: str) -> None:
    key = _key(tenant, "ci")
    await store.run(lambda tx: tx.insert_api_key(key))
    assert await store.run(lambda tx: tx.find_api_key(key.key_hash)) == key
    assert await store.run(lambda tx: tx.find_api_key("0" * 64)) is None


async def test_keys_are_listed_per_tenant_and_counted_over_all(store: Store, tenant: str) -> None:
    before = await store.run(lambda tx: tx.count_api_keys())
    mine, theirs = _key(tenant, "a"), _key(tenant + "_b", "b")

    def insert_both(tx: Tx) -> None:
        tx.insert_api_key(mine)
        tx.insert_api_key(theirs)

    await store.run(insert_both)
    assert await store.run(lambda tx: tx.list_api_keys(tenant)) == [mine]
    everyone = await store.run(lambda tx: tx.list_api_keys())
    assert {mine.key_id, theirs.key_id} <= {k.key_id for k in everyone}
    assert await store.run(lambda tx: tx.count_api_keys()) == before + 2


async def test_revoking_a_key_records_when_and_only_works_once(store: Store, tenant: str) -> None:
    key = _key(tenant, "old")
    await store.run(lambda tx: tx.insert_api_key(key))
    when = "2026-02-01T00:00:00.000Z"
    assert await store.run(lambda tx: tx.revoke_api_key(key.key_id, when)) is True
    assert await store.run(lambda tx: tx.revoke_api_key(key.key_id, when)) is False
    assert await store.run(lambda tx: tx.revoke_api_key("nope", when)) is False
    found = await store.run(lambda tx: tx.find_api_key(key.key_hash))
    assert found is not None
    assert found.revoked_at == when
