"""Fixtures for the observability tests: the server suite's app on both backends, with
settings a test may change (``@pytest.mark.limits(**overrides)``), and a scrape of
``GET /metrics`` as a lookup of samples."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchops.server.settings import Settings
from tests.server.conftest import Service, service, settings_for

__all__ = ["Samples", "Service", "db_url", "scrape", "service", "settings_for"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend. PostgreSQL: a database of this module's own, since
    the jobs gauge counts every tenant's jobs and an app's runner and webhook sender work
    every tenant's queue: another module's leftovers would move the counts asserted here
    (and the jobs these tests leave queued would run in theirs)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("own_pg_url")
    return url


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Service settings; ``@pytest.mark.limits(**overrides)`` changes them for a test.
    Jobs poll fast so that tests do not wait on the runner's idle loop."""
    marker = request.node.get_closest_marker("limits")
    overrides: dict[str, object] = {"job_poll_s": 0.05, "data_dir": str(tmp_path / "uploads")}
    if marker is not None:
        overrides.update(marker.kwargs)
    return settings_for(db_url, **overrides)


class Samples:
    """The samples of one scrape: ``value(name, **labels)`` is the sample's value (0 when
    absent), ``labels(name)`` every label set a sample of ``name`` has."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = self.samples.get(key, 0.0) + sample.value

    def value(self, name: str, **labels: str) -> float:
        """The value of the sample ``name`` with exactly ``labels`` (0 if there is none)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample named ``name``."""
        return [dict(labels) for sample, labels in self.samples if sample == name]

    def label_values(self) -> set[str]:
        """Every label value of every sample."""
        return {value for _, labels in self.samples for _, value in labels}


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    """``GET /metrics`` (200), parsed."""
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Samples(response.text)
