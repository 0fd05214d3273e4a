"""Request-scoped dependencies: the store, settings, the caller and the rate limiter.

Validation that every route needs (authentication, the request budget) lives here once,
as FastAPI dependencies, instead of being repeated in each handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from batchops.server.auth import Authenticator, Caller
from batchops.server.ratelimit import KeyRateLimits
from batchops.server.settings import Settings
from batchops.store.base import Store

if TYPE_CHECKING:
    from batchops.server.jobs.inputs import JobInputs
    from batchops.server.jobs.runner import JobRunner

__all__ = ["CallerDep", "Services", "ServicesDep", "authenticated"]


@dataclass(slots=True)
class Services:
    """What the app holds while it runs (``app.state.services``)."""

    settings: Settings
    store: Store
    authenticator: Authenticator
    limiter: KeyRateLimits
    # Jobs' input files (imports' uploads): stored by the routes, read by the runner.
    inputs: JobInputs
    # None when this process runs no jobs (Settings.run_jobs is False).
    jobs: JobRunner | None = None


def services(request: Request) -> Services:
    """The running app's services."""
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


async def authenticated(request: Request, svc: ServicesDep) -> Caller:
    """The caller, authenticated and within its request budget (else 401 / 429)."""
    caller = await svc.authenticator(request)
    request.state.rate_headers = await svc.limiter.hit_request(caller.key_id)
    return caller


CallerDep = Annotated[Caller, Depends(authenticated)]
