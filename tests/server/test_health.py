"""``/healthz`` says the process is alive; ``/readyz`` says whether it should get traffic:
database, schema version and (when configured) Redis."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from batchops.server.settings import Settings
from batchops.store.migrate import shipped_migrations
from tests.conftest import fresh_database
from tests.server.conftest import Service, settings_for

UNKNOWN = "9999_from_a_newer_version"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each backend for this test alone (tests here change its schema's
    record)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'health.db'}"
    else:
        with fresh_database() as url:
            yield url


def _record_unknown_migration(db_url: str) -> None:
    sql = (
        "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) "
        f"VALUES ('h', '{UNKNOWN}', CURRENT_TIMESTAMP)"
    )
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url[len("sqlite:///") :]) as conn:
            conn.execute(sql)
    else:
        with psycopg.connect(db_url) as pg:
            pg.execute(sql)


async def test_healthz_answers_ok_without_a_key_even_when_the_database_is_gone(
    service: Service,
) -> None:
    await service.store.close()

    response = await service.client.get("/healthz", headers={"Authorization": ""})

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_answers_ready_without_a_key_when_the_database_and_schema_are(
    service: Service,
) -> None:
    response = await service.client.get("/readyz", headers={"Authorization": ""})

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {
            "database": "ok",
            "migrations": "ok",
            "redis": "not configured",
            "draining": "no",
        },
    }


async def test_readyz_answers_503_naming_the_database_when_it_does_not_answer(
    service: Service,
) -> None:
    await service.store.close()

    response = await service.client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "NOT_READY"
    assert error["message"] == "not ready: database, migrations"
    assert error["details"]["checks"]["database"].startswith("unreachable (")
    assert response.headers["retry-after"] == "5"


async def test_readyz_answers_503_when_the_schema_is_not_the_shipped_one(
    service: Service, db_url: str
) -> None:
    _record_unknown_migration(db_url)  # a server of a newer version migrated past this one

    response = await service.client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["error"]["details"]["checks"]
    assert checks["database"] == "ok"
    assert checks["migrations"] == f"applied but unknown to this version: {UNKNOWN}"


async def test_readyz_names_a_shipped_migration_the_database_lacks(
    service: Service, db_url: str
) -> None:
    dialect = "postgresql" if db_url.startswith("postgres") else "sqlite"
    last = shipped_migrations(dialect)[-1]
    await service.store.run(
        lambda tx: tx._run("DELETE FROM _yoyo_migration WHERE migration_id = ?", (last,))  # type: ignore[attr-defined]
    )

    response = await service.client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["error"]["details"]["checks"]["migrations"] == f"not applied: {last}"


class TestWithRedis:
    @pytest.fixture
    def settings(self, db_url: str, request: pytest.FixtureRequest) -> Settings:
        return settings_for(db_url, redis_url=request.param, rate_limit_requests_per_minute=1)

    @pytest.mark.parametrize("settings", ["redis://127.0.0.1:1/12"], indirect=True)
    async def test_readyz_answers_503_naming_redis_when_it_is_down(self, service: Service) -> None:
        response = await service.client.get("/readyz")

        assert response.status_code == 503
        error = response.json()["error"]
        assert error["message"] == "not ready: redis"
        assert error["details"]["checks"]["redis"].startswith("unreachable (")
        assert error["details"]["checks"]["database"] == "ok"

    @pytest.mark.parametrize("settings", ["redis://127.0.0.1:6379/12"], indirect=True)
    async def test_the_probes_are_never_rate_limited(self, service: Service) -> None:
        # One request a minute per key; the probes take no key and count against nothing.
        answers = [await service.client.get(path) for path in ["/readyz", "/healthz"] * 5]

        assert [r.status_code for r in answers] == [200] * 10
        assert answers[0].json()["checks"]["redis"] == "ok"
        assert not any("ratelimit" in r.headers for r in answers)
