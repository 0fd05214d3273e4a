"""A ``batchops serve`` subprocess for benchmarks: shared by bench/server.py and
bench/imports.py (run them as scripts; this directory is then on ``sys.path``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ServerProcess", "free_port", "make_key"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``with ServerProcess(url, dir) as s:`` — started (rate limits off), then SIGTERMed."""

    def __init__(self, db_url: str, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.db_url, self.workdir, self.extra_env = db_url, workdir, extra_env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        env = {
            **os.environ,
            "BATCHOPS_RATE_LIMIT_REQUESTS": "0",
            "BATCHOPS_RATE_LIMIT_OPERATIONS": "0",
            "BATCHOPS_DATA_DIR": str(self.workdir / "uploads"),
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchops",
                "serve",
                "--db",
                self.db_url,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def make_key(db_url: str, workdir: Path, tenant: str) -> str:
    """A new API key for ``tenant`` (via ``batchops keys create``)."""
    out = subprocess.run(
        [sys.executable, "-m", "batchops", "keys", "create", "--tenant", tenant, "--db", db_url],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()
