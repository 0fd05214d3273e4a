"""Every statement is bounded in time, so no request can hold the database (both backends).

A statement past the store's limit, or past the deadline a unit of work set, is cancelled
with StoreTimeoutError; the unit is rolled back and the store serves the next one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from batchops._exceptions import StoreTimeoutError
from batchops.server.auth import create_api_key
from batchops.store import Store, Tx, open_store
from batchops.store.postgres import PostgresTx
from batchops.store.sqlite import SQLiteTx

LIMIT_MS = 300


@pytest.fixture
async def bounded(store_url: str) -> AsyncIterator[Store]:
    """A store whose statement limit is LIMIT_MS."""
    opened = await open_store(store_url, pool_size=2, statement_timeout_ms=LIMIT_MS)
    try:
        yield opened
    finally:
        await opened.close()


def _slow(tx: Tx, seconds: float) -> None:
    """One statement that runs for about ``seconds`` (longer if the machine is slow)."""
    if isinstance(tx, PostgresTx):
        tx._execute("SELECT pg_sleep(%s)", (seconds,))
        return
    assert isinstance(tx, SQLiteTx)
    # ~3 M rows a second here: a count that takes about that long, in one statement.
    rows = int(seconds * 3_000_000)
    tx._execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
        "SELECT count(*) FROM c",
        (rows,),
    ).fetchone()


async def test_a_statement_past_the_store_limit_is_cancelled_and_the_store_goes_on(
    bounded: Store,
) -> None:
    started = time.monotonic()
    with pytest.raises(StoreTimeoutError):
        await bounded.run(lambda tx: _slow(tx, 5))
    assert time.monotonic() - started < 2.5
    assert await bounded.run(lambda tx: tx.count_api_keys()) >= 0


async def test_a_cancelled_unit_of_work_leaves_nothing_written(bounded: Store, tenant: str) -> None:
    def write_then_stall(tx: Tx) -> None:
        create_api_key(tx, tenant, "written before the stall")
        _slow(tx, 5)

    with pytest.raises(StoreTimeoutError):
        await bounded.run(write_then_stall)
    assert await bounded.run(lambda tx: tx.list_api_keys(tenant)) == []


async def test_a_unit_may_set_a_shorter_bound_than_the_limit(store: Store) -> None:
    # ``store`` has the default 30 s limit; the unit asks for 200 ms.
    def stall(tx: Tx) -> None:
        tx.set_statement_timeout(0.2)
        _slow(tx, 5)

    started = time.monotonic()
    with pytest.raises(StoreTimeoutError):
        await store.run(stall)
    assert time.monotonic() - started < 2.5


async def test_a_unit_may_lift_the_limit_for_work_that_must_scan_everything(
    bounded: Store,
) -> None:
    def long_but_allowed(tx: Tx) -> float:
        tx.set_statement_timeout(None)
        started = time.monotonic()
        _slow(tx, LIMIT_MS / 1000 * 3)
        return time.monotonic() - started

    # It ran to the end, for longer than the limit would have let it.
    assert await bounded.run(long_but_allowed) > LIMIT_MS / 1000


def _slow_write(tx: Tx, tenant: str, seconds: float) -> None:
    """One INSERT that runs for about ``seconds``: SQLite rolls the whole transaction back
    when it interrupts a write."""
    rows = int(seconds * 1_000_000)
    if isinstance(tx, PostgresTx):
        tx._execute("SELECT pg_sleep(%s)", (seconds,))
        return
    assert isinstance(tx, SQLiteTx)
    tx._execute(
        "INSERT INTO job_failures (job_id, row_number, input, code, message) "
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
        "SELECT ?, x, '', '', '' FROM c",
        (rows, tenant),
    )


async def test_an_interrupted_write_fails_its_unit_and_spares_the_units_sharing_its_commit(
    bounded: Store, tenant: str
) -> None:
    # On SQLite units that queue up share one transaction (group commit); the interrupted
    # write rolls that transaction back, and the other units must still be applied.
    def slow(tx: Tx) -> None:
        create_api_key(tx, tenant, "lost with its unit")
        _slow_write(tx, tenant, 5)

    def quick(tx: Tx, name: str) -> None:
        create_api_key(tx, tenant, name)

    results = await asyncio.gather(
        bounded.run(lambda tx: quick(tx, "before")),
        bounded.run(slow),
        bounded.run(lambda tx: quick(tx, "after")),
        return_exceptions=True,
    )
    assert results[0] is None, results
    assert results[2] is None, results
    assert isinstance(results[1], StoreTimeoutError)
    names = sorted(row.name or "" for row in await bounded.run(lambda tx: tx.list_api_keys(tenant)))
    assert names == ["after", "before"]


async def test_on_postgresql_a_statement_after_a_cancel_that_aborted_the_transaction_is_a_lost_unit(
    pg_url: str,
) -> None:
    # A cancel can abort the whole transaction (it lands where its savepoint cannot be
    # rolled back, as in the middle of a COPY). What the unit runs next is refused with
    # "current transaction is aborted": that is the timeout's doing, for the whole unit
    # (every operation answers 504) — never a 500 STORE_ERROR.
    opened = await open_store(pg_url, pool_size=1)
    errors: list[StoreTimeoutError] = []

    def cancelled_then_more(tx: Tx) -> None:
        tx.set_statement_timeout(0.05)
        try:
            _slow(tx, 5)  # outside any savepoint: the transaction is aborted
        except StoreTimeoutError as first:
            errors.append(first)
        tx.count_api_keys()

    try:
        with pytest.raises(StoreTimeoutError) as lost:
            await opened.run(cancelled_then_more)
        assert lost.value.unit_lost
        assert len(errors) == 1
        # Cancelled outside every savepoint: the cancel itself already says the unit is
        # lost (nothing of it can be kept, whatever runs next).
        assert errors[0].unit_lost
        assert await opened.run(lambda tx: tx.count_api_keys()) >= 0
    finally:
        await opened.close()


_THREE_ROWS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT x FROM c"
)


@pytest.mark.parametrize("read", ["fetchone", "fetchall", "iterate"])
async def test_on_sqlite_an_interrupt_that_lands_while_rows_are_read_is_a_store_timeout(
    sqlite_url: str, read: str
) -> None:
    # SQLite steps a statement as its rows are read: the interrupt (the statement watch's,
    # at a batch's deadline) can surface at fetchone(), after execute() returned. That
    # error must be the store's StoreTimeoutError right there, where the operation that
    # read can answer it — not a raw sqlite3 error that escapes to the unit of work and
    # fails the whole batch. (PostgreSQL's client-side cursors read every row in execute.)
    opened = await open_store(sqlite_url)
    caught: list[BaseException] = []

    def interrupted_mid_read(tx: Tx) -> None:
        assert isinstance(tx, SQLiteTx)
        cur = tx._execute(_THREE_ROWS)
        tx._conn.interrupt()  # stays pending: the statement is still active
        try:
            if read == "fetchone":
                cur.fetchone()
                cur.fetchone()
            elif read == "fetchall":
                cur.fetchall()
            else:
                list(cur)
        except Exception as exc:
            caught.append(exc)

    try:
        await opened.run(interrupted_mid_read)
        assert len(caught) == 1
        assert isinstance(caught[0], StoreTimeoutError), repr(caught[0])
        assert not caught[0].unit_lost  # a read: the transaction is still there
        assert await opened.run(lambda tx: tx.count_api_keys()) >= 0
    finally:
        await opened.close()


@pytest.mark.parametrize("where", ["outside", "inside"])
async def test_on_postgresql_a_cancel_loses_the_unit_only_outside_a_savepoint(
    pg_url: str, tenant: str, where: str
) -> None:
    # Inside a savepoint (a non-atomic batch's operation) the cancel is that operation's
    # error and the unit goes on; outside every savepoint — the batch's own SET LOCAL that
    # lifts its deadline, run after the operations, can be the statement cancelled — the
    # transaction is aborted, and saying so at once is what lets the batch answer each
    # operation's 504 instead of a top-level 504 for "the bookkeeping timed out".
    opened = await open_store(pg_url, pool_size=1)
    errors: list[StoreTimeoutError] = []

    def cancelled(tx: Tx) -> None:
        tx.set_statement_timeout(0.05)
        try:
            if where == "inside":
                with tx.savepoint():
                    _slow(tx, 5)
            else:
                _slow(tx, 5)
        except StoreTimeoutError as exc:
            errors.append(exc)
        if where == "inside":
            tx.set_statement_timeout(None)
            create_api_key(tx, tenant, "after the cancel")

    try:
        await opened.run(cancelled)
        assert len(errors) == 1
        assert errors[0].unit_lost is (where == "outside")
        names = [k.name for k in await opened.run(lambda tx: tx.list_api_keys(tenant))]
        assert names == (["after the cancel"] if where == "inside" else [])
    finally:
        await opened.close()


@pytest.mark.parametrize("bound_passed", [True, False])
async def test_on_postgresql_a_pipeline_failing_in_psycopg_itself_after_the_bound_is_that_timeout(
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    bound_passed: bool,
) -> None:
    # A cancel that lands inside psycopg's pipeline (every executemany) can end in an
    # error of psycopg's own code — seen: IndexError("pop from an empty deque") from
    # Pipeline.__exit__, about 1 unit in 2,000 with a 1 ms batch deadline — and never
    # surface as QueryCanceled. After the unit's bound passed that is the bound's
    # timeout, and the unit is lost (the connection is unusable); before it, it stays
    # what it is: a fault of the server (500).
    opened = await open_store(pg_url, pool_size=1)

    def broken(self: psycopg.Cursor[Any], *args: Any, **kwargs: Any) -> None:
        raise IndexError("pop from an empty deque")

    def unit(tx: Tx) -> None:
        tx.set_statement_timeout(0.01 if bound_passed else 30)
        time.sleep(0.05)
        monkeypatch.setattr(psycopg.Cursor, "executemany", broken)
        # Every executemany is pipelined (the jobs' writes; records are COPY or one
        # statement over arrays now).
        assert isinstance(tx, PostgresTx)
        tx._executemany("SELECT %s", [(1,), (2,)])

    try:
        if bound_passed:
            with pytest.raises(StoreTimeoutError) as raised:
                await opened.run(unit)
            assert raised.value.unit_lost
        else:
            with pytest.raises(IndexError):
                await opened.run(unit)
    finally:
        monkeypatch.undo()
        await opened.close()


async def test_on_postgresql_whatever_fails_after_a_unit_was_lost_fails_as_that_loss(
    pg_url: str,
) -> None:
    # After a cancel broke a pipeline the connection answers nonsense (seen: InternalError
    # "unexpected result status from query: PIPELINE_SYNC"): still the lost unit's
    # timeout, never a 500 for a batch that ran out of time.
    opened = await open_store(pg_url, pool_size=1)
    later: list[BaseException] = []

    def lost_then_nonsense(tx: Tx) -> None:
        assert isinstance(tx, PostgresTx)
        tx.set_statement_timeout(0.05)
        with pytest.raises(StoreTimeoutError):
            _slow(tx, 5)
        try:
            with tx._translating():
                raise psycopg.InternalError("unexpected result status from query: PIPELINE_SYNC")
        except Exception as exc:
            later.append(exc)

    try:
        await opened.run(lost_then_nonsense)
        assert len(later) == 1
        assert isinstance(later[0], StoreTimeoutError), repr(later[0])
        assert later[0].unit_lost
    finally:
        await opened.close()
