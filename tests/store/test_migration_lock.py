"""The migration lock dies with its holder: a starter killed mid-migration, or a lock row
left by an older version, never blocks the next start; concurrent runs apply once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import fresh_database, make_sqlite_url

from batchops.store import applied_migrations, migrate
from batchops.store.migrate import shipped_migrations

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nothing has migrated yet, of each backend."""
    if request.param == "sqlite":
        yield make_sqlite_url(tmp_path / "fresh.db")
    else:
        with fresh_database() as url:
            yield url


def _dialect(url: str) -> str:
    return "postgresql" if url.startswith("postgres") else "sqlite"


def _batchops(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchops", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# A starter whose first migration hangs: it holds the migration lock, in the middle of a
# migration, until it is killed. The real migrations follow the hanging one.
_HANGING_STARTER = textwrap.dedent(
    """
    import shutil, sys
    from pathlib import Path
    import batchops.store  # its `migrate` function hides the module of that name
    m = sys.modules["batchops.store.migrate"]

    url, dialect, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    steps = work / "migrations" / dialect
    shutil.copytree(m.MIGRATIONS_DIR / dialect, steps)
    (steps / "0000_hangs.py").write_text(
        "import time\\n"
        "from pathlib import Path\\n"
        "from yoyo import step\\n"
        "def hang(conn):\\n"
        f"    Path({str(work / 'hanging')!r}).touch()\\n"
        "    time.sleep(120)\\n"
        "steps = [step(hang)]\\n"
    )
    m.MIGRATIONS_DIR = work / "migrations"
    m.migrate(url)
    """
)


def test_a_starter_killed_mid_migration_does_not_block_the_next_start(
    empty_url: str, tmp_path: Path
) -> None:
    dialect = _dialect(empty_url)
    starter = subprocess.Popen(
        [sys.executable, "-c", _HANGING_STARTER, empty_url, dialect, str(tmp_path)],
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "hanging").exists():
            assert starter.poll() is None, "the hanging starter died on its own"
            assert time.monotonic() < deadline, "the starter never reached its migration"
            time.sleep(0.05)
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait(timeout=10)

        began = time.monotonic()
        run = _batchops("migrate", "--db", empty_url, cwd=tmp_path)
        out, err = run.communicate(timeout=60)
        took = time.monotonic() - began
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
    assert run.returncode == 0, err
    assert out.split() == [w for m in shipped_migrations(dialect) for w in ("applied", m)]
    assert took < 8, f"the next start waited {took:.1f} s for a dead starter's lock"
    assert applied_migrations(empty_url) == shipped_migrations(dialect)


def test_a_lock_row_left_by_an_older_version_is_ignored(empty_url: str) -> None:
    from yoyo import get_backend

    from batchops.store.migrate import _yoyo_url

    _, yoyo_url = _yoyo_url(empty_url)
    backend = get_backend(yoyo_url)  # creates yoyo's lock table, as older versions did
    try:
        with backend.transaction():
            backend.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, NULL, 1)")
    finally:
        backend.connection.close()

    began = time.monotonic()
    applied = migrate(empty_url)
    took = time.monotonic() - began

    assert applied == shipped_migrations(_dialect(empty_url))
    assert took < 8, f"the stale lock row held the start back {took:.1f} s"


def test_concurrent_migrate_runs_apply_each_migration_once(empty_url: str, tmp_path: Path) -> None:
    runs = [_batchops("migrate", "--db", empty_url, cwd=tmp_path) for _ in range(4)]
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0, 0, 0], [err for _, err in outputs]
    applied = [
        line.split(" ", 1)[1]
        for out, _ in outputs
        for line in out.splitlines()
        if line.startswith("applied ")
    ]
    assert sorted(applied) == shipped_migrations(_dialect(empty_url))
    assert applied_migrations(empty_url) == shipped_migrations(_dialect(empty_url))


def test_migrate_fails_with_the_reason_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    run = _batchops("migrate", "--db", "postgresql://postgres@127.0.0.1:1/none", cwd=tmp_path)
    out, err = run.communicate(timeout=60)

    assert run.returncode == 3
    assert out == ""
    assert err.startswith("batchops migrate: error DATABASE_ERROR: cannot migrate the database ")
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
