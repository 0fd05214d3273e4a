"""The OpenAPI document tells the truth: schemathesis, the real tool, runs against a real
``batchops serve`` on each backend with every check, and finds nothing.

What it checks, per operation of ``/openapi.json``: no 5xx; every status, content type,
header and body the server answers is the one the document declares (the error envelope
on every error); a request the document calls valid is taken and one it calls invalid is
refused; an undeclared method is a 405 with ``Allow``; a request without the key is a 401;
and, statefully, that what is created can be read and what is deleted is gone.

Bounded for CI (2 cores): ``MAX_EXAMPLES`` cases per operation and phase, measured at
65-95 s per backend, 2.5-3 min for both (the coverage phase's boundary cases do not
depend on it; 50 took 45-65 s, 100 took 100-125 s).
The seed is fixed, so a run draws the same cases; the answers (generated ids, timing) can
still steer the stateful phase a little differently from one run to the next.

Run it alone: ``.venv/bin/pytest tests/contract`` (README, "Development").
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.server.test_serve_process import Server, cli

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 80


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend; PostgreSQL in a database of its own: the run leaves webhooks and jobs
    behind (aimed at whatever hosts it drew) that no other test may inherit."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    url: str = request.getfixturevalue("own_pg_url")
    return url


SEED = 20261205
HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def schemathesis_run(base_url: str, key: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The schemathesis CLI on ``base_url``'s document, as CI runs it (from ``cwd``, where
    it keeps its cache of crashes)."""
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        # No example database: every run draws from the seed alone.
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Bearer {key}",
        "--no-color",
    ]
    env = {
        **os.environ,
        # Rules between values no schema states, kept by positive cases (see hooks.py).
        "SCHEMATHESIS_HOOKS": "tests.contract.hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=540, check=False
    )


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_difference_between_the_server_and_its_openapi_document(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Webhook targets are whatever schemathesis draws: no DNS can vouch for them here, so
    # the address rule (tests/webhooks/test_webhook_targets.py proves it) is lifted, as for
    # development; the URL's syntax is still checked.
    monkeypatch.setenv("BATCHOPS_ALLOW_PRIVATE_WEBHOOKS", "1")
    with Server(db_url, tmp_path).running() as server:
        key = cli(
            "keys", "create", "--tenant", f"contract-{uuid.uuid4().hex[:8]}",
            "--db", db_url, cwd=tmp_path,
        ).strip()  # fmt: skip
        result = schemathesis_run(server.url, key, tmp_path)
    print(result.stdout)
    print(result.stderr, file=sys.stderr)
    assert result.returncode == 0, (
        f"schemathesis exited {result.returncode}; its report:\n{result.stdout[-30_000:]}"
        f"\n{result.stderr[-5_000:]}\nserver output:\n{''.join(server.stdout)[-5_000:]}"
    )
