"""Concurrent GraphQL mutations lose no acknowledged write (both backends; on PostgreSQL
the workers' batches are transactions on several connections at once): merge patches of
different fields of one record, and aliased updates with ``ifVersion``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from batchops.server.settings import Settings
from tests.graphql_api.conftest import gql, seed
from tests.server.conftest import Service, settings_for

WORKERS = 8
ROUNDS = 10


@pytest.fixture
def settings(db_url: str) -> Settings:
    """No rate limit: the tests hammer one record on purpose."""
    return settings_for(
        db_url, rate_limit_requests_per_minute=0, rate_limit_operations_per_minute=0
    )


async def _record(service: Service) -> dict[str, Any]:
    answer = await gql(
        service.client, '{ record(collection: "people", id: "p1") { data version } }'
    )
    record: dict[str, Any] = answer["data"]["record"]
    return record


async def test_concurrent_aliased_patches_of_different_fields_keep_every_field(
    service: Service,
) -> None:
    await seed(service, "people", {"p1": {}})

    async def worker(w: int) -> None:
        for r in range(ROUNDS):
            # Two aliased patches in one document: one batch, two writes of the record.
            answer = await gql(
                service.client,
                f'mutation {{ a: updateRecord(collection: "people", id: "p1", '
                f"data: {{k{w}_{r}_a: 1}}) {{ version }} "
                f'b: updateRecord(collection: "people", id: "p1", '
                f"data: {{k{w}_{r}_b: 1}}) {{ version }} }}",
            )
            assert "errors" not in answer, answer

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    stored = await _record(service)
    expected = {f"k{w}_{r}_{s}" for w in range(WORKERS) for r in range(ROUNDS) for s in "ab"}
    assert set(stored["data"]) == expected
    assert stored["version"] == 1 + len(expected)


async def test_concurrent_if_version_updates_bump_the_version_once_per_acknowledged_write(
    service: Service,
) -> None:
    await seed(service, "people", {"p1": {}})
    acknowledged = 0

    async def worker(w: int) -> None:
        nonlocal acknowledged
        for r in range(ROUNDS):
            version = (await _record(service))["version"]
            answer = await gql(
                service.client,
                'mutation($v: Int!, $d: JSON!) { updateRecord(collection: "people", '
                'id: "p1", data: $d, ifVersion: $v) { version } }',
                {"v": version, "d": {"last": f"{w}-{r}"}},
            )
            if "errors" in answer:
                assert answer["errors"][0]["extensions"]["code"] == "VERSION_MISMATCH", answer
                continue
            acknowledged += 1
            assert answer["data"]["updateRecord"]["version"] == version + 1

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    assert acknowledged > 0
    assert (await _record(service))["version"] == 1 + acknowledged
