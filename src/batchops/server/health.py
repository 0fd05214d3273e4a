"""``GET /healthz`` (alive) and ``GET /readyz`` (ready for traffic): open, unmetered.

A load balancer or an orchestrator asks both, often, from outside any tenant: so neither
takes an API key nor counts against a rate limit, and ``/healthz`` touches nothing but the
event loop — a process whose database is down is alive (restarting it would not help) but
not ready (it should get no traffic). ``/readyz`` answers 200 only when

- the database answers a trivial query within :data:`CHECK_TIMEOUT_S`,
- its applied migrations are exactly the ones this version ships (a server of a newer
  version has migrated past it, or ``batchops migrate`` has not run yet: not ready), and
- Redis answers a PING, when ``Settings.redis_url`` is set (without it the rate limits
  fail open to per-process counts, which is why it counts as not ready; a ``worker``
  counts nothing and does not ask), and
- the process is not draining: from SIGTERM/SIGINT until it stops, it answers 503 so that
  load balancers stop sending to it while it still serves (:mod:`batchops.server.drain`);

else 503 ``NOT_READY`` in the error envelope, ``details.checks`` naming each part's state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request

from batchops._exceptions import ServiceUnavailableError
from batchops.server.deps import Services
from batchops.server.drain import Drain
from batchops.server.openapi_routes import json_answer, responses
from batchops.store.migrate import shipped_migrations

__all__ = ["CHECK_TIMEOUT_S", "router"]

#: How long each readiness check may take before it counts as failed.
CHECK_TIMEOUT_S = 2.0

log = logging.getLogger("batchops.server")

router = APIRouter(tags=["service"])

_OK = "ok"
_NOT_DRAINING = "no"
# The states that are not a failure.
_FINE = frozenset({_OK, "not configured", "not used", _NOT_DRAINING})

_ALIVE: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ok"}},
    "additionalProperties": False,
}

_READY: dict[str, Any] = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"const": "ready"},
        "checks": {
            "type": "object",
            "required": ["database", "migrations", "redis", "draining"],
            "properties": {
                "database": {"const": "ok"},
                "migrations": {"const": "ok"},
                "redis": {"type": "string", "enum": ["ok", "not configured", "not used"]},
                "draining": {"const": _NOT_DRAINING},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


@router.get(
    "/healthz",
    summary="Liveness: the process answers (no database, no key)",
    responses=responses({200: json_answer(_ALIVE, "The server runs.")}, ()),
    openapi_extra={"security": []},  # open: no API key
)
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database, schema version and Redis answer, not shutting down (no key)",
    responses=responses(
        {200: json_answer(_READY, "Ready for traffic.")},
        (503,),
        notes={
            503: "Not ready: `details.checks` names each part's state (`draining`: the "
            "process is shutting down and serves only until its listener closes)."
        },
    ),
    openapi_extra={"security": []},  # open: no API key
)
async def readyz(request: Request) -> dict[str, Any]:
    services: Services = request.app.state.services
    settings = services.settings
    redis = settings.redis_url is not None and settings.serves_api
    checks = {
        "database": _OK,
        "migrations": _OK,
        "redis": _OK if redis else "not configured" if not settings.redis_url else "not used",
        "draining": _draining_state(getattr(request.app.state, "drain", None)),
    }
    try:
        applied = await asyncio.wait_for(
            services.store.run(lambda tx: tx.applied_migrations()), CHECK_TIMEOUT_S
        )
    except TimeoutError:
        checks["database"] = f"no answer within {CHECK_TIMEOUT_S:g} s"
        checks["migrations"] = "unknown (the database did not answer)"
    except Exception as exc:  # any failure means not ready
        # The open answer names the kind of failure; the message (hosts, ports) is logged.
        log.warning("readiness: the database failed: %s", exc)
        checks["database"] = f"unreachable ({type(exc).__name__})"
        checks["migrations"] = "unknown (the database did not answer)"
    else:
        checks["migrations"] = _migrations_state(applied, services.store.dialect)
    if redis:
        try:
            await asyncio.wait_for(services.limiter.ping(), CHECK_TIMEOUT_S)
        except Exception as exc:
            log.warning("readiness: Redis failed: %r", exc)
            checks["redis"] = f"unreachable ({type(exc).__name__})"
    failing = [name for name, state in checks.items() if state not in _FINE]
    if failing:
        raise ServiceUnavailableError(
            f"not ready: {', '.join(failing)}",
            code="NOT_READY",
            details={"checks": checks},
            retry_after=5.0,
        )
    return {"status": "ready", "checks": checks}


def _draining_state(drain: Drain | None) -> str:
    """``no``, or how long the draining process still accepts connections."""
    if drain is None or not drain.draining:
        return _NOT_DRAINING
    closes_in = drain.closes_in()
    if closes_in > 0:
        return f"yes: shutting down, stops accepting connections in {closes_in:.1f} s"
    return "yes: shutting down, no longer accepting connections"


def _migrations_state(applied: list[str], dialect: str) -> str:
    """``ok`` when the database has exactly the migrations this version ships, else what
    differs."""
    shipped = shipped_migrations(dialect)
    problems = []
    if missing := [m for m in shipped if m not in applied]:
        problems.append("not applied: " + ", ".join(missing))
    if unknown := [m for m in applied if m not in shipped]:
        problems.append("applied but unknown to this version: " + ", ".join(unknown))
    return "; ".join(problems) or _OK
