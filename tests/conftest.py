"""Shared fixtures: real databases for every test directory.

Backends
    ``store`` is parametrised over both backends (test ids ``sqlite`` and ``postgresql``):
    SQLite is a fresh temporary file per test; PostgreSQL is ONE fresh database per test
    session (``batchops_test_<random>``, created on the server of ``BATCHOPS_TEST_PG_URL``,
    default ``postgresql://postgres@127.0.0.1:5432/test``, and dropped at the end). Tests on
    PostgreSQL share that database, so each test isolates itself with the ``tenant``
    fixture (a unique tenant name) instead of truncating tables.

    Server tests can start servers on either backend with ``pg_url`` (session: the URL of
    the fresh database) and ``sqlite_url`` (function: a URL of a temporary file) or
    :func:`make_sqlite_url`.

PostgreSQL unreachable
    The PostgreSQL tests FAIL with a clear message, never silently skip. Only a developer
    who sets ``BATCHOPS_SKIP_PG=1`` gets them skipped; with ``CI=true`` they fail even then.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
from psycopg import sql

from batchops.store import RecordRow, Store, open_store
from batchops.store import sqlite_url as _store_sqlite_url

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TIMESTAMP = "2026-01-01T00:00:00.000Z"


def make_sqlite_url(path: str | os.PathLike[str]) -> str:
    """The store URL of a SQLite file (for starting servers in tests)."""
    return _store_sqlite_url(path)


def _pg_unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI and is unreachable: {reason}")
    if os.environ.get("BATCHOPS_SKIP_PG") == "1":
        pytest.skip(f"PostgreSQL unreachable and BATCHOPS_SKIP_PG=1: {reason}")
    pytest.fail(
        f"PostgreSQL is unreachable ({reason}). Start it, point BATCHOPS_TEST_PG_URL at "
        "one, or set BATCHOPS_SKIP_PG=1 to skip the PostgreSQL tests locally."
    )


def _with_dbname(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    user = info.get("user") or "postgres"
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or "5432"
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{user}{password}@{host}:{port}/{dbname}"


@contextmanager
def _fresh_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``BATCHOPS_TEST_PG_URL``, dropped after."""
    server = os.environ.get("BATCHOPS_TEST_PG_URL", DEFAULT_PG_URL)
    name = f"batchops_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        _pg_unavailable(str(exc).strip())
    try:
        yield _with_dbname(server, name)
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def fresh_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database of its own (no migration applied), dropped after:
    for tests of what happens to a database before or while it is migrated."""
    with _fresh_database() as url:
        yield url


@contextmanager
def database_at(before: str) -> Iterator[str]:
    """A fresh PostgreSQL database migrated up to (not including) the migration whose id
    starts with ``before`` (``"0007"``), dropped after: for migrations applied to data."""
    from yoyo import get_backend, read_migrations

    from batchops.store.migrate import MIGRATIONS_DIR

    with _fresh_database() as url:
        backend = get_backend("postgresql+psycopg://" + url[len("postgresql://") :])
        try:
            steps = read_migrations(str(MIGRATIONS_DIR / "postgresql"))
            with backend.lock():
                backend.apply_migrations(backend.to_apply(steps.filter(lambda m: m.id < before)))
        finally:
            backend.connection.close()
        yield url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped at the end)."""
    with _fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def own_pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test module's own, for suites that leave behind rows
    the others would trip over — hostile input leaves webhook deliveries queued for hosts
    nobody answers, and every app's webhook sender works the queue of every tenant."""
    with _fresh_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file in this test's temporary directory."""
    return make_sqlite_url(tmp_path / "batchops.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL per backend: SQLite temp file or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return make_sqlite_url(tmp_path / "batchops.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open, migrated store on each backend; closed after the test."""
    opened = await open_store(store_url, pool_size=2)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def tenant() -> str:
    """A tenant name no other test uses (isolation on the shared PostgreSQL database)."""
    return f"tenant_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_record(tenant: str) -> Callable[..., RecordRow]:
    """Build a RecordRow of ``tenant`` (collection ``people`` unless given)."""

    def make(
        id_: str,
        data: dict[str, Any] | None = None,
        *,
        collection: str = "people",
        tenant_: str | None = None,
    ) -> RecordRow:
        return RecordRow(
            tenant=tenant_ or tenant,
            collection=collection,
            id=id_,
            data=data if data is not None else {"name": id_},
            version=1,
            created_at=TIMESTAMP,
            updated_at=TIMESTAMP,
        )

    return make


@pytest.fixture
def skew_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set this process's wall clock (``time.time``) that many seconds off: what a server
    on a machine whose clock is wrong sees (leases and due times must not depend on it)."""
    real = time.time

    def skew(seconds: float) -> None:
        monkeypatch.setattr(time, "time", lambda: real() + seconds)

    return skew
