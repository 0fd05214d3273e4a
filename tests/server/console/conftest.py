"""Fixtures for console tests: the job suite's app in process (both backends, fast job
polls; ``@pytest.mark.limits(role="api")`` for jobs that stay queued), and a browser-like
client signed in to the console."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.jobs.conftest import db_url, service, settings
from tests.server.conftest import Service

__all__ = ["db_url", "service", "settings"]

ORIGIN = "http://test"


def browser_client(service: Service, *, base_url: str = ORIGIN) -> httpx.AsyncClient:
    """A client as a browser on the console's own pages is: no API key header, cookies
    kept, the page's origin on every request (browsers send it on every POST)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app),
        base_url=base_url,
        headers={"Origin": base_url},
    )


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Post the sign-in form."""
    return await client.post("/console/login", data={"key": key})


@pytest.fixture
async def console(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in to the console as the service's tenant."""
    async with browser_client(service) as client:
        answer = await sign_in(client, service.key)
        assert answer.status_code == 303, answer.text
        yield client
