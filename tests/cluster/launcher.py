"""A local cluster run from ``deploy/Procfile``, the example docs/deploy.md gives: each
process of a kind started with the command the Procfile names for it, in a working
directory of its own (no shared disk), with only the database and Redis in common.

Commands are read from the Procfile itself, so the file users copy is the file tested.
"""

from __future__ import annotations

import os
import shlex
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

__all__ = ["PROCFILE", "Cluster", "Process", "procfile"]

PROCFILE = Path(__file__).resolve().parents[2] / "deploy" / "Procfile"


def procfile(path: Path = PROCFILE) -> dict[str, str]:
    """``{kind: command}`` of a Procfile (``kind: command`` lines; ``#`` comments)."""
    kinds: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, command = line.split(":", 1)
        kinds[kind.strip()] = command.strip()
    return kinds


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _argv(command: str, env: dict[str, str]) -> list[str]:
    """The Procfile command as argv: ``$VARS`` from ``env``, and ``batchops`` as this
    interpreter's ``python -m batchops`` (the tree under test, not whatever is on PATH)."""
    argv = shlex.split(string.Template(command).substitute(env))
    if argv[0] == "batchops":
        argv = [sys.executable, "-m", "batchops", *argv[1:]]
    return argv


class Process:
    """One process of the cluster (``api``, ``worker``)."""

    def __init__(self, kind: str, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.kind, self.argv, self.cwd, self.env = kind, argv, cwd, env
        self.port = int(env.get("PORT", "0"))
        self.url = f"http://127.0.0.1:{self.port}"
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Process:
        self.output = []
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
        return self

    def _drain(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.output.append(line)

    def ready(self, timeout_s: float = 60) -> Process:
        """Wait until ``/readyz`` answers 200 (both roles serve it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, f"{self.kind} died:\n" + "".join(self.output)
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.kind} never turned ready:\n" + "".join(self.output))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)


class Cluster:
    """Processes of a Procfile sharing ``db_url`` and ``redis_url`` and nothing else."""

    def __init__(self, root: Path, db_url: str, redis_url: str, **env: str) -> None:
        self.root, self.db_url, self.redis_url = root, db_url, redis_url
        self.commands = procfile()
        self.env = env
        self.processes: list[Process] = []
        self._count = 0

    def _environment(self, **env: str) -> dict[str, str]:
        # Nothing of the test run's own BATCHOPS_* settings leaks into a process.
        base = {k: v for k, v in os.environ.items() if not k.startswith("BATCHOPS_")}
        return {
            **base,
            "BATCHOPS_DB": self.db_url,
            "BATCHOPS_REDIS_URL": self.redis_url,
            "PORT": str(_free_port()),
            **self.env,
            **env,
        }

    def _workdir(self, kind: str) -> Path:
        self._count += 1
        workdir = self.root / f"{kind}-{self._count}"
        workdir.mkdir()
        return workdir

    def start(self, kind: str, **env: str) -> Process:
        """Start a process of ``kind`` in a new working directory; it is stopped at
        :meth:`close` if still running."""
        environment = self._environment(**env)
        process = Process(
            kind, _argv(self.commands[kind], environment), self._workdir(kind), environment
        )
        self.processes.append(process.start())
        return process

    def restart(self, process: Process) -> Process:
        """The same process again: same command, working directory and port."""
        process.start()
        return process

    def run(self, kind: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a one-off kind (``release``) to its end."""
        environment = self._environment()
        return subprocess.run(
            _argv(self.commands[kind], environment),
            cwd=self._workdir(kind),
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def close(self) -> None:
        for process in self.processes:
            process.stop()
