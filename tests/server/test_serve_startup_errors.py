"""``batchops serve`` that cannot start says why in one line and exits 3, before it has
created anything: a busy port, an unreachable or missing PostgreSQL; a bad config file is
one line and exit 2. Real subprocesses; the busy-port case on both backends."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchops.store import open_store
from tests.conftest import fresh_database

pytestmark = pytest.mark.slow


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchops", "serve", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no key yet (PostgreSQL: one of its own, so no other test's keys)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_busy_port_fails_before_the_first_key_is_created(
    empty_db: str, busy_port: int, tmp_path: Path
) -> None:
    done = serve("--db", empty_db, "--port", str(busy_port), cwd=tmp_path)

    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"batchops serve: error PORT_UNAVAILABLE: cannot listen on 127.0.0.1:{busy_port}: "
        "Address already in use"
    ]
    assert "BATCHOPS_API_KEY" not in done.stdout
    store = await open_store(empty_db, pool_size=1)
    try:
        assert await store.run(lambda tx: tx.list_api_keys(None)) == []
    finally:
        await store.close()


def test_an_unreachable_postgresql_is_one_line_and_exit_3(tmp_path: Path) -> None:
    done = serve("--db", "postgresql://postgres@127.0.0.1:1/none", "--port", "0", cwd=tmp_path)

    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("batchops serve: error DATABASE_ERROR: cannot migrate the database")
    assert "Connection refused" in line


def test_a_missing_postgresql_database_is_one_line_and_exit_3(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/batchops_no_such_database"
    done = serve("--db", url, "--port", "0", cwd=tmp_path)

    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("batchops serve: error DATABASE_ERROR: ")
    assert 'database "batchops_no_such_database" does not exist' in line


def test_an_unknown_key_in_the_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "batchops.toml"
    config.write_text("max_batch_operations = 10\nmax_batch_operation = 10\n")
    done = serve("--config", str(config), "--port", "0", cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"batchops serve: error CONFIG_ERROR: unknown setting 'max_batch_operation' in {config} "
        "(docs/configuration.md lists them)"
    ]
    assert not (tmp_path / "batchops.db").exists()  # nothing was opened


def test_a_config_file_that_cannot_be_read_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "missing.toml"
    done = serve("--config", str(config), "--port", "0", cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"batchops serve: error CONFIG_ERROR: cannot read the config file {config}: "
        "No such file or directory"
    ]
