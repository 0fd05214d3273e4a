"""Schema migrations for both backends, run by :func:`batchops.store.open_store` and by
``batchops migrate`` (a deploy step of its own).

We wrap yoyo-migrations rather than hand-rolling a runner: it speaks SQLite and PostgreSQL
(psycopg 3 via ``postgresql+psycopg://``), records applied steps in ``_yoyo_migration``
and applies each migration in a transaction. Its cost on start, measured: ~55 ms to import
(sqlparse) plus ~20 ms (SQLite) / ~110 ms (PostgreSQL, fresh connections) when nothing is
left to apply.

Concurrent starters are serialised by a lock of our own, not by yoyo's: yoyo's lock is a
committed row in ``yoyo_lock``, so a starter killed while holding it left the row behind
and every later start waited 10 s and failed until someone deleted it by hand. Ours dies
with its holder:

- PostgreSQL: a session-level advisory lock (:data:`LOCK_KEY`) on a connection of its own,
  held for the whole run; the server drops it when that connection ends, however the
  process ended. The connection asks for TCP keepalives (10 s idle, 3 probes 5 s apart)
  so that a holder whose host vanished frees it within about half a minute, not the
  kernel's two hours.
- SQLite: ``flock`` on a file beside the database (``<db>-migrate.lock``), which the
  kernel releases when the process ends. (Not SQLite's own write lock: yoyo applies each
  step on a second connection, which that lock would block.)

yoyo's row lock is never taken (:class:`_Unlocked`), so a row left in ``yoyo_lock`` by an
older batchops is ignored. One caveat of that: an older batchops starting at the same
moment as this one would not wait for it; run ``batchops migrate`` once before starting
the new version's servers (docs/deploy.md).

The SQL lives in ``migrations/<dialect>/NNNN_name.sql`` inside the package, so it ships
with the wheel. Add a step by adding the next numbered file to BOTH dialect folders.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from batchops._exceptions import StoreError
from batchops.store._url import parse_store_url

__all__ = [
    "LOCK_KEY",
    "MIGRATIONS_DIR",
    "applied_migrations",
    "migrate",
    "migration_lock",
    "shipped_migrations",
]

#: Where the numbered SQL files live, one folder per dialect.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: The PostgreSQL advisory lock key of a migration run (a constant; advisory locks are
#: per database, so runs on different databases never wait for each other).
LOCK_KEY = 0x62_6F_6D_69_67  # "bomig"

#: How long a run waits for another one to finish before it gives up (a migration that
#: rewrites a big table may take minutes; a holder that died frees the lock at once).
DEFAULT_LOCK_WAIT_S = 600.0


def _yoyo_url(url: str | None) -> tuple[str, str]:
    dialect, target = parse_store_url(url)
    if dialect == "sqlite":
        return dialect, "sqlite:///" + str(Path(target).resolve())
    return dialect, "postgresql+psycopg://" + target[len("postgresql://") :]


@contextmanager
def _translating() -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, psycopg.Error) as exc:
        raise StoreError(f"cannot migrate the database schema: {exc}") from exc


@contextmanager
def migration_lock(url: str | None, *, wait_s: float = DEFAULT_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the migration lock of the database ``url`` names (see the module docstring);
    :class:`StoreError` if another run holds it for more than ``wait_s``."""
    dialect, target = parse_store_url(url)
    with _translating():
        if dialect == "sqlite":
            with _file_lock(Path(target).resolve(), wait_s):
                yield
        else:
            with _advisory_lock(target, wait_s):
                yield


@contextmanager
def _advisory_lock(target: str, wait_s: float) -> Iterator[None]:
    with psycopg.connect(target, autocommit=True, connect_timeout=10) as conn:
        for name, value in (
            ("tcp_keepalives_idle", "10"),
            ("tcp_keepalives_interval", "5"),
            ("tcp_keepalives_count", "3"),
            ("lock_timeout", str(max(1, int(wait_s * 1000)))),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreError(
                f"another process has been migrating this database for more than {wait_s:g} s "
                "(it holds the migration lock); try again when it is done"
            ) from exc
        yield  # closing the connection releases the lock


@contextmanager
def _file_lock(db_path: Path, wait_s: float) -> Iterator[None]:
    lock_path = db_path.with_name(db_path.name + "-migrate.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"another process has been migrating {db_path} for more than "
                        f"{wait_s:g} s (it holds {lock_path}); try again when it is done"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _backend(yoyo_url: str) -> Any:
    """yoyo's backend for ``yoyo_url``, minus its row lock (we hold ours)."""
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
    from yoyo.backends.core.sqlite3 import SQLiteBackend
    from yoyo.connections import parse_uri
    from yoyo.migrations import default_migration_table

    base = SQLiteBackend if yoyo_url.startswith("sqlite") else PostgresqlPsycopgBackend
    cls = type("_Unlocked" + base.__name__, (_Unlocked, base), {})
    backend = cls(parse_uri(yoyo_url), default_migration_table)
    backend.init_database()  # what yoyo.get_backend does after constructing
    return backend


class _Unlocked:
    """Mixed into a yoyo backend: ``lock()`` takes nothing, because the caller holds
    :func:`migration_lock` (yoyo calls it around applying and around upgrading its own
    tables)."""

    @contextmanager
    def lock(self, timeout: int = 10) -> Iterator[None]:
        yield


def shipped_migrations(dialect: str) -> list[str]:
    """The ids of the migrations this version ships for ``dialect``, in order."""
    return sorted(path.stem for path in (MIGRATIONS_DIR / dialect).glob("*.sql"))


def migrate(url: str | None, *, lock_wait_s: float = DEFAULT_LOCK_WAIT_S) -> list[str]:
    """Apply the migrations the database lacks; returns the ids applied now (often none).

    Holds :func:`migration_lock` throughout, so concurrent runs apply each migration once.
    Blocking: call it from a thread when an event loop is running. Idempotent.
    """
    from yoyo import read_migrations

    dialect, yoyo_url = _yoyo_url(url)
    with migration_lock(url, wait_s=lock_wait_s), _translating():
        backend = _backend(yoyo_url)
        try:
            migrations = read_migrations(str(MIGRATIONS_DIR / dialect))
            todo = backend.to_apply(migrations)
            backend.apply_migrations(todo)
            return [str(m.id) for m in todo]
        finally:
            backend.connection.close()


def applied_migrations(url: str | None) -> list[str]:
    """The ids of the migrations recorded as applied, in order (the schema version)."""
    _dialect, yoyo_url = _yoyo_url(url)
    with migration_lock(url), _translating():
        backend = _backend(yoyo_url)
        try:
            backend.ensure_internal_schema_updated()
            rows = backend.execute(
                "SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc, migration_id"
            ).fetchall()
            return [str(row[0]) for row in rows]
        finally:
            backend.connection.close()
