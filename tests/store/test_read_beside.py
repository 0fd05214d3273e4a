"""``Tx.read_beside``: read-only functions run at once beside a transaction (both backends).

At most ``width`` at a time, counting the transaction's own connection; the others on
connections taken without waiting, each in a read-only transaction of its own (committed
data only); results in the order given; a read that fails on another connection runs
again in the transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from tests.store.test_statement_timeout import _slow

from batchops._exceptions import StoreTimeoutError
from batchops.store import RecordRow, Store, Tx, open_store
from batchops.store.postgres import PostgresStore


@pytest.fixture
async def roomy(store_url: str) -> AsyncIterator[Store]:
    """A store with connections to spare (PostgreSQL: a pool of 6)."""
    opened = await open_store(store_url, pool_size=6)
    try:
        yield opened
    finally:
        await opened.close()


class Peak:
    """How many reads ran at once, and which ran in the transaction itself."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.here = 0
        self._lock = threading.Lock()

    def read(self, writer: list[Tx], value: int, hold_s: float = 0.05) -> Callable[[Tx], int]:
        def read(tx: Tx) -> int:
            with self._lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
                self.here += tx is writer[0]
            try:
                time.sleep(hold_s)
                tx.count_api_keys()  # a statement on the connection it was given
                return value
            finally:
                with self._lock:
                    self.running -= 1

        return read


async def beside(
    store: Store, make: Callable[[list[Tx]], list[Callable[[Tx], Any]]], width: int, **kw: Any
) -> list[Any]:
    def unit(tx: Tx) -> list[Any]:
        return tx.read_beside(make([tx]), width=width, **kw)

    return await store.run(unit)


async def test_reads_beside_answer_in_the_order_given(roomy: Store) -> None:
    peak = Peak()

    results = await beside(roomy, lambda w: [peak.read(w, i, 0.01) for i in range(10)], 4)

    assert results == list(range(10))


async def test_at_most_width_reads_run_at_once_counting_the_transaction(roomy: Store) -> None:
    peak = Peak()

    await beside(roomy, lambda w: [peak.read(w, i) for i in range(9)], 3)

    assert peak.peak == 3


async def test_width_1_runs_every_read_in_the_transaction_one_at_a_time(roomy: Store) -> None:
    peak = Peak()

    await beside(roomy, lambda w: [peak.read(w, i, 0.01) for i in range(4)], 1)

    assert (peak.peak, peak.here) == (1, 4)


async def test_when_no_other_connection_is_free_every_read_runs_in_the_transaction(
    pg_url: str,
) -> None:
    lone = await PostgresStore.open(pg_url, pool_size=1)
    try:
        peak = Peak()

        results = await beside(lone, lambda w: [peak.read(w, i, 0.01) for i in range(4)], 4)

        assert results == [0, 1, 2, 3]
        assert (peak.peak, peak.here) == (1, 4)
    finally:
        await lone.close()


async def test_reads_on_other_connections_see_only_committed_data(
    roomy: Store, make_record: Callable[..., RecordRow], tenant: str
) -> None:
    seen: dict[bool, set[bool]] = {True: set(), False: set()}

    def unit(tx: Tx) -> None:
        tx.insert_records([make_record("uncommitted")])

        def read(other: Tx) -> None:
            time.sleep(0.03)
            found = other.get_records(tenant, "people", ["uncommitted"])
            seen[other is tx].add("uncommitted" in found)

        tx.read_beside([read] * 6, width=3)

    await roomy.run(unit)

    assert seen == {True: {True}, False: {False}}


async def test_a_read_that_raises_on_another_connection_runs_again_in_the_transaction(
    roomy: Store,
) -> None:
    ran_here: list[int] = []

    def make(writer: list[Tx]) -> list[Callable[[Tx], int]]:
        def read(i: int) -> Callable[[Tx], int]:
            def run(tx: Tx) -> int:
                time.sleep(0.02)
                if tx is not writer[0]:
                    raise RuntimeError("this connection broke")
                ran_here.append(i)
                return i

            return run

        return [read(i) for i in range(5)]

    results = await beside(roomy, make, 3)

    assert results == [0, 1, 2, 3, 4]
    assert sorted(ran_here) == [0, 1, 2, 3, 4]


async def test_the_deadline_cancels_a_statement_on_another_connection_and_the_unit_commits(
    roomy: Store, make_record: Callable[..., RecordRow], tenant: str
) -> None:
    def unit(tx: Tx) -> list[str]:
        def read(other: Tx) -> str:
            if other is tx:
                time.sleep(0.3)  # leave the slow statement to the other connection
                return "here"
            try:
                _slow(other, 5)
            except StoreTimeoutError:
                return "cancelled"
            return "finished"

        answers = tx.read_beside([read, read], width=2, deadline=time.monotonic() + 0.2)
        tx.insert_records([make_record("after")])
        return answers

    started = time.monotonic()
    answers = await roomy.run(unit)

    assert sorted(answers) == ["cancelled", "here"]
    assert time.monotonic() - started < 2.5
    stored = await roomy.run(lambda tx: tx.get_records(tenant, "people", ["after"]))
    assert list(stored) == ["after"]


async def test_a_search_beside_finds_the_rows_sqlites_deferred_index_has_not_reached(
    roomy: Store, make_record: Callable[..., RecordRow], tenant: str
) -> None:
    rows = [make_record(f"r{i}", {"name": f"common word{i % 3}"}) for i in range(30)]
    await roomy.run(lambda tx: tx.insert_records(rows))  # committed, not indexed (SQLite)

    def search(tx: Tx) -> Any:
        return tx.search_records(tenant, "people", query="common", filters={}, limit=5)

    def unit(tx: Tx) -> list[Any]:
        return tx.read_beside([search] * 4, width=4)

    answers = await roomy.run(unit)
    expected = await roomy.run(search)

    assert expected[1] == 30
    assert answers == [expected] * 4


async def test_postgresql_sees_at_most_width_connections_busy_at_once(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url, pool_size=6)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE 'SELECT pg_sleep%%' AND state = 'active'"
                ).fetchone()
                seen.append(row[0] if row else 0)
                time.sleep(0.01)

    def sleep(tx: Tx) -> None:
        _slow(tx, 0.15)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        await store.run(lambda tx: tx.read_beside([sleep] * 9, width=3))
    finally:
        stop.set()
        watcher.join()
        await store.close()

    assert max(seen) == 3
