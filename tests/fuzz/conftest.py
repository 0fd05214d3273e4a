"""The fuzz suite's fixtures and its Hypothesis profile.

Each test throws hostile input (tests/fuzz/strategies.py) at one group of routes of the
real app, in-process, on SQLite and PostgreSQL (the ``service`` fixture of the server
suite), and holds every answer to the rule in tests/fuzz/harness.py.

Profile ``batchops-fuzz`` (the default; ``BATCHOPS_FUZZ_PROFILE`` picks another):
``derandomize=True`` with no example database, so a run is the same examples every time —
in CI and on a laptop alike — and a failure reproduces from the test id alone. Each test
sets its ``max_examples``, sized so the whole suite takes about 3 minutes for both backends
on the 2-core CI machine. ``BATCHOPS_FUZZ_PROFILE=batchops-fuzz-explore`` draws random
examples, ten times as many: for hunting, not for CI (run it with ``--timeout=0``).
No ``explain`` phase: its report elides the values of a failing example. A failure's
message shows the request and the answer (bodies cut when long), and Hypothesis prints a
``@reproduce_failure`` blob that replays it.

Why not ``@given`` on the test function: the app and its event loop come from
function-scoped async fixtures, which Hypothesis would share across examples (its
``function_scoped_fixture`` health check) and could not await. Each test instead defines
an inner ``@given`` function that takes no fixture and hands it to ``fuzzer.run`` (see
harness.py): one app and one tenant for every example of a test, as a real server sees
them, and no health check suppressed for that. Three are suppressed on purpose:
``too_slow`` (each example is an HTTP request, an import a whole job), ``data_too_large``
and ``large_base_example`` (the strategies build bodies of up to 1 MiB and 10,000-element
shapes deliberately).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase

from batchops.server.settings import Settings
from tests.fuzz.harness import Fuzzer
from tests.server.conftest import Service, service, settings_for

__all__ = ["Service", "db_url", "examples", "service"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The server suite's backends, with a PostgreSQL database of the module's own: hostile
    input leaves webhook deliveries and jobs behind that other tests must not inherit."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fuzz.db'}"
    url: str = request.getfixturevalue("own_pg_url")
    return url


_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

hypothesis.settings.register_profile(
    "batchops-fuzz",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)
hypothesis.settings.register_profile(
    "batchops-fuzz-explore",
    derandomize=False,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)

_PROFILE = os.environ.get("BATCHOPS_FUZZ_PROFILE", "batchops-fuzz")
_SCALE = 10 if _PROFILE.endswith("-explore") else 1

F = TypeVar("F", bound=Callable[..., Any])


def examples(count: int) -> Callable[[F], F]:
    """The suite's profile with ``count`` examples (ten times that when exploring). Used as
    a decorator on a test's inner ``@given`` function; the profile is applied here rather
    than loaded globally, so no other test of the session is affected."""
    profile = hypothesis.settings.get_profile(_PROFILE)
    return hypothesis.settings(profile, max_examples=count * _SCALE)


@pytest.fixture
def settings(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """No rate limit (thousands of requests per minute from one key), jobs polled fast,
    uploads in the test's directory; every other limit at its default — the limits are
    what is under test — unless ``@pytest.mark.limits(**overrides)`` says otherwise."""
    overrides: dict[str, object] = {
        "rate_limit_requests_per_minute": 0,
        "rate_limit_operations_per_minute": 0,
        "job_poll_s": 0.05,
        "data_dir": str(tmp_path / "uploads"),
    }
    marker = request.node.get_closest_marker("limits")
    if marker is not None:
        overrides.update(marker.kwargs)
    return settings_for(db_url, **overrides)


@pytest.fixture
async def fuzzer(service: Service) -> Fuzzer:
    """The test's :class:`~tests.fuzz.harness.Fuzzer` on the service's app."""
    return Fuzzer(service, asyncio.get_running_loop())
