"""What a process serves follows its role (``all``, ``api``, ``worker``), and how it answers
while it drains before stopping; the settings of both, from flags and the environment.

In process: the app with its lifespan, driven over ASGI. The real processes (signals, the
listener, several workers) are tests/server/test_deploy_process.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from batchops.server.app import create_app
from batchops.server.drain import DRAIN_STATE, Drain
from batchops.server.settings import Settings
from tests.server.conftest import Service, settings_for

# -- roles -------------------------------------------------------------------------------------


@pytest.fixture
async def worker(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app of role ``worker`` (Redis configured, which a worker does not use)."""
    app = create_app(settings_for(db_url, role="worker", redis_url="redis://127.0.0.1:1/0"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        assert app.state.services.jobs is not None  # it runs jobs
        assert app.state.webhook_sender is not None  # and sends webhooks
        yield client


async def test_a_worker_answers_the_probes(worker: httpx.AsyncClient) -> None:
    assert (await worker.get("/healthz")).json() == {"status": "ok"}
    ready = await worker.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "redis": "not used",
        "draining": "no",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/collections/c/records"),
        ("POST", "/v1/batch"),
        ("POST", "/v1/imports"),
        ("GET", "/v1/jobs"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    ],
)
async def test_a_worker_answers_every_other_path_404_in_the_envelope(
    worker: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await worker.request(method, path, headers={"Authorization": "Bearer bo_x"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_an_api_process_runs_no_jobs_and_sends_no_webhooks(db_url: str) -> None:
    app = create_app(settings_for(db_url, role="api"))
    async with app.router.lifespan_context(app):
        assert app.state.services.jobs is None
        assert app.state.webhook_sender is None
        assert "/v1/batch" in app.openapi()["paths"]


def test_run_jobs_follows_the_role() -> None:
    assert [Settings(role=role).run_jobs for role in ("all", "api", "worker")] == [
        True,
        False,
        True,
    ]
    assert [Settings(role=role).serves_api for role in ("all", "api", "worker")] == [
        True,
        True,
        False,
    ]
    with pytest.raises(ValueError, match=r"role\n.*'all', 'api' or 'worker'"):
        Settings(role="jobs")  # type: ignore[arg-type]


# -- the drain, as the app answers it ---------------------------------------------------------


async def test_a_draining_app_is_not_ready_and_asks_every_client_to_close(
    service: Service,
) -> None:
    drain: Drain = service.app.state.drain
    assert (await service.client.get("/readyz")).json()["checks"]["draining"] == "no"

    drain.begin()
    ready = await service.client.get("/readyz")
    served = await service.client.get("/v1/collections/c/records")

    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["code"] == "NOT_READY"
    assert error["message"] == "not ready: draining"
    assert error["details"]["checks"]["draining"].startswith(
        "yes: shutting down, stops accepting connections in "
    )
    assert error["details"]["checks"]["database"] == "ok"
    assert served.status_code == 200  # still served, and told to go elsewhere next time
    assert served.headers["connection"] == "close"
    assert ready.headers["connection"] == "close"

    drain.close()
    closed = (await service.client.get("/readyz")).json()["error"]["details"]["checks"]
    assert closed["draining"] == "yes: shutting down, no longer accepting connections"


async def test_the_app_offers_its_drain_to_its_server_in_the_lifespan_state(db_url: str) -> None:
    app = create_app(settings_for(db_url, drain_delay_s=7, shutdown_grace_s=11))
    async with app.router.lifespan_context(app) as state:
        drain = state[DRAIN_STATE]  # type: ignore[index]
        assert drain is app.state.drain
        assert (drain.delay_s, drain.grace_s) == (7, 11)


def test_the_grace_runs_from_the_close() -> None:
    drain = Drain(delay_s=5, grace_s=30)
    assert (drain.draining, drain.closes_in(), drain.grace_left()) == (False, 5, 30)
    drain.begin()
    assert drain.draining
    assert 4.9 < drain.closes_in() <= 5
    assert drain.grace_left() == 30
    drain.close()
    assert drain.closes_in() == 0
    assert 29.9 < drain.grace_left() <= 30


# -- settings: flags, environment, and the form the workers get --------------------------------

DEPLOY_ENV = {
    "BATCHOPS_ROLE": "worker",
    "BATCHOPS_DRAIN_DELAY_S": "2.5",
    "BATCHOPS_SHUTDOWN_GRACE_S": "12",
    "BATCHOPS_JOB_CONCURRENCY": "6",
    "BATCHOPS_WEBHOOK_CONCURRENCY": "3",
    "BATCHOPS_DB_POOL_SIZE": "9",
    "BATCHOPS_JOB_POLL_S": "0.25",
}


def test_the_deployment_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings.from_env()
    assert (defaults.role, defaults.drain_delay_s, defaults.shutdown_grace_s) == ("all", 5, 30)
    for name, value in DEPLOY_ENV.items():
        monkeypatch.setenv(name, value)

    settings = Settings.from_env()

    assert settings.role == "worker"
    assert (settings.drain_delay_s, settings.shutdown_grace_s) == (2.5, 12)
    assert (settings.job_concurrency, settings.webhook_concurrency) == (6, 3)
    assert (settings.db_pool_size, settings.job_poll_s) == (9, 0.25)


def test_the_settings_travel_to_the_workers_whole() -> None:
    settings = Settings(db_url="postgresql://u@h/db", role="api", drain_delay_s=1.5, redis_url=None)
    assert Settings.from_json(settings.to_json()) == settings
    assert set(orjson.loads(settings.to_json())) == set(Settings.model_fields)


def _serve_with(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Settings, dict[str, Any]]:
    """What ``batchops serve ARGS`` would serve: its settings and process options."""
    import batchops.server.serve
    from batchops import cli

    seen: list[tuple[Settings, dict[str, Any]]] = []
    monkeypatch.setattr(
        batchops.server.serve, "serve", lambda settings, **options: seen.append((settings, options))
    )
    result = CliRunner().invoke(cli.main, ["serve", *args])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_serve_takes_the_deployment_settings_as_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DEPLOY_ENV.items():  # the flags win
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BATCHOPS_WORKERS", "5")

    settings, options = _serve_with(
        monkeypatch,
        "--role", "api",
        "--workers", "3",
        "--drain-delay-s", "0",
        "--shutdown-grace-s", "4",
        "--job-concurrency", "1",
        "--webhook-concurrency", "2",
        "--db-pool-size", "7",
    )  # fmt: skip

    assert settings.role == "api"
    assert (settings.drain_delay_s, settings.shutdown_grace_s) == (0, 4)
    assert (settings.job_concurrency, settings.webhook_concurrency) == (1, 2)
    assert settings.db_pool_size == 7
    assert settings.workers == 3
    assert options == {"host": "127.0.0.1", "port": 8000, "log_level": "info"}


def test_serve_takes_the_process_options_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "BATCHOPS_WORKERS": "4",
        "BATCHOPS_HOST": "0.0.0.0",
        "BATCHOPS_PORT": "9001",
        "BATCHOPS_LOG_LEVEL": "warning",
    }.items():
        monkeypatch.setenv(name, value)

    settings, options = _serve_with(monkeypatch)

    assert settings.workers == 4
    assert options == {"host": "0.0.0.0", "port": 9001, "log_level": "warning"}


def test_serve_refuses_a_role_it_does_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    from batchops import cli

    monkeypatch.setenv("BATCHOPS_ROLE", "jobs")
    result = CliRunner().invoke(cli.main, ["serve"])

    assert result.exit_code == 2
    assert "setting role (BATCHOPS_ROLE): Input should be 'all', 'api' or 'worker', got 'jobs'" in (
        result.output
    )
