"""``batchops serve``'s processes: one uvicorn server, or ``workers`` of them on one port
under uvicorn's supervisor, each stopping in two steps (:mod:`batchops.server.drain`).

One process (``workers=1``) serves the app built here. With more, the supervisor binds the
port once and starts ``workers`` processes (``spawn``) that share its socket; each builds
the app from :func:`app_from_environment`, reading the settings this process serialised
(:meth:`Settings.to_json`) into :data:`SETTINGS_ENV`. SIGTERM or SIGINT to the supervisor
is passed to every worker as SIGTERM, and each drains as a single process does; the
supervisor waits for them, then exits 0. Every process exits 0 after a signal.

Observability (docs/operations.md): every process formats its logs itself
(:func:`~batchops.server.observability.logs.configure_logging`; uvicorn configures none).
With several workers the supervisor makes a temporary ``PROMETHEUS_MULTIPROC_DIR`` for
their metrics (unless the operator gave one), tells prometheus-client when a worker dies
(its live gauges go; its counters stay in the sums), and removes the directory when it
exits. ``metrics_port`` is one more listening socket, shared like the API's.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from batchops.server.drain import DRAIN_STATE, Drain
from batchops.server.observability.logs import configure_logging
from batchops.server.settings import Settings

__all__ = ["SETTINGS_ENV", "DrainingServer", "app_from_environment", "bind_socket", "serve"]

log = logging.getLogger("batchops.server")

SETTINGS_ENV = "BATCHOPS_SERVE_SETTINGS"
"""Where the supervisor leaves the settings for its workers (JSON; not for operators:
they set the ``BATCHOPS_*`` variables and flags that make the settings)."""


def serve(settings: Settings, *, host: str, port: int, log_level: str) -> None:
    """Serve until SIGTERM/SIGINT, then drain and exit 0.

    Before anything is created (the first API key above all), the port is bound (an
    ``OSError`` when it is taken) and the database reached and migrated (a ``StoreError``
    when it cannot be): the CLI prints either as one line and exits 3. A process that fails
    to start later exits 3 too.
    """
    from batchops.store import migrate

    configure_logging(settings.log_format, log_level)
    sockets = [bind_socket(host, port)]
    try:
        if settings.metrics_port is not None:
            sockets.append(bind_socket(host, settings.metrics_port))
        migrate(settings.db_url)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        # Ours (configure_logging above; each worker its own), not uvicorn's dictConfig.
        "log_config": None,
        # The access log is ours too (batchops.server.observability.middleware).
        "access_log": False,
        # The wait for in-flight requests (uvicorn takes seconds as a float too); the jobs
        # and webhooks get what is left of it.
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
    }
    workers = settings.workers
    if workers == 1:
        from batchops.server.app import create_app

        _exit_0_after_signals()
        DrainingServer(uvicorn.Config(create_app(settings), **options)).run(sockets=sockets)
        return
    os.environ[SETTINGS_ENV] = settings.to_json()
    # Before any worker imports prometheus-client (see batchops.server.observability.metrics).
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="batchops-metrics-"
        )
    try:
        config = uvicorn.Config(
            f"{__name__}:app_from_environment", factory=True, workers=workers, **options
        )
        supervisor = _Supervisor(config, sockets=sockets)
        supervisor.run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound as uvicorn binds it (``SO_REUSEADDR``, inheritable by
    the workers); raises ``OSError`` (``EADDRINUSE``) when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def app_from_environment() -> FastAPI:
    """The app of one worker of ``serve --workers N`` (uvicorn's ``factory``), from the
    settings its supervisor left in :data:`SETTINGS_ENV`."""
    from batchops.server.app import create_app

    settings = Settings.from_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping in two steps when its app offers a :class:`Drain`.

    The first SIGTERM or SIGINT begins the drain and nothing else: the listener stays
    open, requests are served, ``/readyz`` answers 503. ``drain.delay_s`` later the server
    shuts down as uvicorn does (stop accepting, wait for in-flight requests up to
    ``timeout_graceful_shutdown``, then the app's lifespan shutdown). During the delay a
    further SIGINT (Ctrl-C again) shuts down at once and a third forces the exit, as in
    uvicorn; a further SIGTERM changes nothing (a supervisor and a process-group signal
    may both send one). Without a drain, or before the server has started, a signal stops
    it as uvicorn would.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._drain_noticed = False

    def _drain(self) -> Drain | None:
        lifespan = getattr(self, "lifespan", None)
        drain = lifespan.state.get(DRAIN_STATE) if lifespan is not None else None
        return drain if isinstance(drain, Drain) else None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain = self._drain()
        if drain is None or not self.started or self.should_exit or drain.delay_s <= 0:
            if drain is not None:
                drain.begin()
            super().handle_exit(sig, frame)
        elif not drain.draining:
            # Re-raised after the shutdown, as uvicorn does with the signals it handles.
            self._captured_signals.append(sig)
            drain.begin()
        elif sig == signal.SIGINT:
            super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # Every 0.1 s (uvicorn's main loop): the end of the drain delay starts the shutdown.
        drain = self._drain()
        if drain is not None and drain.draining and not self.should_exit:
            if not self._drain_noticed:  # logged here, not in the signal handler
                self._drain_noticed = True
                log.warning(
                    "shutting down: /readyz answers 503, connections are accepted for "
                    "%.1f s more (SIGINT to stop now), then in-flight work has %g s to end",
                    drain.closes_in(),
                    drain.grace_s,
                )
            if drain.closes_in() == 0:
                self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        drain = self._drain()
        if drain is not None:
            drain.close()
        started = time.monotonic()
        await super().shutdown(sockets)
        log.info("stopped in %.1f s after the listener closed", time.monotonic() - started)


class _Worker(multiprocess.Process):
    """A worker process of :class:`_Supervisor`: a :class:`DrainingServer`, exiting 0."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # in the worker
        _exit_0_after_signals()
        super().target(sockets)


class _Supervisor(multiprocess.Multiprocess):
    """uvicorn's supervisor, whose workers are :class:`_Worker` processes, and which lets
    the port go as soon as it stops them (the listener then closes when the last worker
    stops accepting, rather than when the supervisor exits)."""

    def run(self) -> None:
        # uvicorn's supervisor makes each worker as multiprocess.Process, a module global
        # with no hook to choose the class: swapped for this run, in this process only (a
        # worker unpickles its _Worker from this module).
        original = multiprocess.Process
        multiprocess.Process = _Worker  # type: ignore[misc]
        try:
            super().run()
        finally:
            multiprocess.Process = original  # type: ignore[misc]

    def terminate_all(self) -> None:
        super().terminate_all()
        for sock in self.sockets:
            sock.close()
        self._mark_dead(p.pid for p in self.processes)

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        # A worker that died was replaced: its metrics' live gauges are dropped.
        self._mark_dead(before - {p.pid for p in self.processes})

    @staticmethod
    def _mark_dead(pids: Any) -> None:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return
        from prometheus_client import multiprocess as prometheus_multiprocess

        for pid in pids:
            if pid is not None:
                prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _exit_0_after_signals() -> None:
    """A signal that stopped the server is raised again once it has (uvicorn does so, with
    the handlers it found installed): these make that an exit with status 0."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
