"""Server settings: one frozen object built from CLI flags or the environment."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

__all__ = ["UPLOAD_STORAGES", "Role", "Settings"]

Role = Literal["all", "api", "worker"]
"""What a ``batchops serve`` process does (docs/deploy.md, "Roles"): ``all`` answers the
API and runs jobs; ``api`` answers the API and runs no job and sends no webhook; ``worker``
runs jobs and sends webhooks, and answers only ``/healthz`` and ``/readyz``."""

ROLES: tuple[Role, ...] = get_args(Role)

UPLOAD_STORAGES = ("database", "directory")
"""The values of ``Settings.upload_storage`` (None picks the database's default)."""


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""``log_level``'s values (``trace``: uvicorn's, below ``debug``)."""

_N = TypeVar("_N", int, float)


def _env_number(name: str, default: _N, kind: type[_N], what: str) -> _N:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be {what}, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _env_bool(name: str) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"environment variable {name} must be 1 or 0, got {raw!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """How ``batchops serve`` behaves. Every limit is configurable.

    >>> Settings(db_url="sqlite:///tmp/x.db", max_batch_operations=500).max_batch_operations
    500
    """

    db_url: str | None = None
    max_batch_operations: int = 1000
    max_batch_bytes: int = 10 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    # Per API key, per minute; 0 disables the limit.
    rate_limit_requests_per_minute: int = 6000
    rate_limit_operations_per_minute: int = 600_000
    # Where the rate limits' counters live: a Redis URL (redis://host:6379/0) shares them
    # between every process that uses it; None keeps them per process. A Redis call may
    # take redis_timeout_ms at most; past it (or when Redis is down) a hit is counted in
    # the process instead (docs/limits.md, "Rate limits").
    redis_url: str | None = None
    redis_timeout_ms: int = 250
    batch_timeout_ms: int = 30_000
    # The longest one database statement may run (0: no bound), so that no request can
    # hold the database and stall the others (docs/limits.md).
    statement_timeout_ms: int = 30_000
    # PostgreSQL connections (and database threads) of this process; 0: twice the cores
    # plus one, from 4 to 32 (batchops.store.postgres.default_pool_size). SQLite has one
    # writer and ignores it.
    db_pool_size: int = 0
    # An in-flight Idempotency-Key claim silent this long is presumed dead (its process was
    # killed) and a retry may take it over; fencing makes that safe whatever the value
    # (see batchops.server.batch.idempotency), so it only sets how soon a retry after a
    # crash is answered.
    idempotency_stale_after_s: float = 30.0
    auth_cache_ttl_s: float = 5.0
    print_first_key: bool = True
    # What this process does (see Role): the API, the jobs (and webhooks), or both.
    role: Role = "all"
    # Processes serving on one port (`serve --workers N`): each has its own pool, runner
    # and, without redis_url, its own rate-limit counters.
    workers: int = 1
    # Stopping (docs/deploy.md, "Stopping: the drain"). On SIGTERM/SIGINT the process answers
    # /readyz with 503 but goes on serving for drain_delay_s, so that a load balancer stops
    # sending to it; then it stops accepting, and in-flight requests, the jobs' current
    # chunks and the webhooks in flight have shutdown_grace_s to end before it exits.
    drain_delay_s: float = 5.0
    shutdown_grace_s: float = 30.0
    # Bulk jobs (see docs/jobs.md): the runner inside `serve`.
    job_concurrency: int = 2
    job_lease_s: float = 30.0
    job_poll_s: float = 1.0
    # A job claimed more often than this (its process died each time: out of memory, a
    # poison input) ends failed ATTEMPTS_EXHAUSTED instead of running again; a clean
    # shutdown's hand-back is no attempt (docs/jobs.md, "Attempts").
    job_max_attempts: int = 3
    # Retention (docs/jobs.md, "Retention"): the processes that run jobs delete, every
    # cleanup_interval_s (0: never), jobs that ended job_retention_s ago with everything
    # that hangs on them, and Idempotency-Keys last used idempotency_retention_s ago
    # (0: keep them forever).
    job_retention_s: float = 7 * 86400.0
    idempotency_retention_s: float = 86400.0
    cleanup_interval_s: float = 300.0
    max_upload_bytes: int = 1024 * 1024 * 1024
    # POST /v1/bulk/*: at most this many matching records are handled inline (200); more
    # become a job (202).
    bulk_inline_max: int = 1000
    # Where uploaded import files wait for their job (see batchops.server.jobs.inputs):
    # "database" (chunk rows in the database: any process of the database can run the job,
    # no shared disk), "directory" (files in data_dir: the processes that run jobs must
    # share it), or None for the database's default: "database" on PostgreSQL, "directory"
    # on SQLite.
    upload_storage: str | None = None
    # The uploads directory, and where a process keeps its local copies of the uploads
    # of the jobs it runs. None: beside the SQLite file, or ./batchops-uploads for
    # PostgreSQL.
    data_dir: str | None = None
    # Webhooks of jobs (see docs/jobs.md, "Webhooks"). Targets on loopback, private,
    # link-local or other non-public addresses are refused unless allow_private_webhooks.
    allow_private_webhooks: bool = False
    webhook_max_attempts: int = 10
    webhook_retry_base_s: float = 5.0  # attempt n waits base * 2**(n-1), capped at max
    webhook_retry_max_s: float = 3600.0
    webhook_timeout_s: float = 10.0
    webhook_poll_s: float = 1.0
    webhook_concurrency: int = 8
    # Request bodies (see docs/limits.md). A gzip body that inflates more than this many
    # times its compressed size (past its first MiB) is refused with 413; 0 turns the guard
    # off (the byte limits still hold).
    max_inflation_ratio: float = 100.0
    # A request whose body sends nothing for this long is answered 408 and its connection
    # closed; 0 turns the timeout off.
    body_read_timeout_s: float = 30.0
    # POST /graphql (docs/graphql.md, "Limits"): a document deeper than graphql_max_depth
    # levels, with more than graphql_max_aliases aliases or more than graphql_max_tokens
    # tokens is refused before anything runs; introspection (and so GraphiQL's schema
    # view) can be turned off.
    graphql_max_depth: int = 12
    graphql_max_aliases: int = 1000
    graphql_max_tokens: int = 100_000
    graphql_introspection: bool = True
    # --- Observability (docs/operations.md) -------------------------------------------
    # Logs: every record (ours, uvicorn's) as "text" or "json" lines on stderr, at
    # log_level and above; one access line per request (batchops.access).
    log_format: str = "text"
    log_level: str = "info"
    # GET /metrics (Prometheus): open unless metrics_token is set (then it wants
    # "Authorization: Bearer <token>"); served on the API's port, or only on metrics_port
    # when one is set (the API's port then answers /metrics 404).
    metrics_token: str | None = None
    metrics_port: int | None = None
    # OpenTelemetry spans per request, batch and job chunk (needs opentelemetry-api and a
    # configured SDK); off: opentelemetry is not even imported.
    tracing: bool = False

    def __post_init__(self) -> None:
        if self.upload_storage not in (None, *UPLOAD_STORAGES):
            raise ValueError(
                f"upload_storage (BATCHOPS_UPLOAD_STORAGE) must be one of "
                f"{', '.join(UPLOAD_STORAGES)}, got {self.upload_storage!r}"
            )
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be text or json, got {self.log_format!r}")
        if self.log_level.lower() not in _LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise ValueError(f"metrics_port must be a TCP port, got {self.metrics_port!r}")
        for name in ("drain_delay_s", "shutdown_grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)!r}")

    @property
    def run_jobs(self) -> bool:
        """Whether this process runs jobs and sends webhooks (roles ``all`` and ``worker``)."""
        return self.role != "api"

    @property
    def serves_api(self) -> bool:
        """Whether this process answers the API (roles ``all`` and ``api``); a ``worker``
        answers only the health probes."""
        return self.role != "worker"

    def to_json(self) -> str:
        """Every field, as JSON (:meth:`from_json` reads it back): how ``serve --workers``
        hands one process's settings to the others."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings :meth:`to_json` wrote."""
        return cls(**json.loads(text))

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``BATCHOPS_*`` environment variables, then ``overrides``."""
        values: dict[str, object] = {
            "db_url": os.environ.get("BATCHOPS_DB") or None,
            "max_batch_operations": _env_int("BATCHOPS_MAX_BATCH_OPERATIONS", 1000),
            "max_batch_bytes": _env_int("BATCHOPS_MAX_BATCH_BYTES", 10 * 1024 * 1024),
            "max_body_bytes": _env_int("BATCHOPS_MAX_BODY_BYTES", 1024 * 1024),
            "rate_limit_requests_per_minute": _env_int("BATCHOPS_RATE_LIMIT_REQUESTS", 6000),
            "rate_limit_operations_per_minute": _env_int("BATCHOPS_RATE_LIMIT_OPERATIONS", 600_000),
            "redis_url": os.environ.get("BATCHOPS_REDIS_URL") or None,
            "redis_timeout_ms": _env_int("BATCHOPS_REDIS_TIMEOUT_MS", 250),
            "batch_timeout_ms": _env_int("BATCHOPS_BATCH_TIMEOUT_MS", 30_000),
            "statement_timeout_ms": _env_int("BATCHOPS_STATEMENT_TIMEOUT_MS", 30_000),
            "db_pool_size": _env_int("BATCHOPS_DB_POOL_SIZE", 0),
            "auth_cache_ttl_s": _env_float("BATCHOPS_AUTH_CACHE_TTL_S", 5.0),
            "idempotency_stale_after_s": float(
                os.environ.get("BATCHOPS_IDEMPOTENCY_STALE_AFTER_S") or 30.0
            ),
            "role": (os.environ.get("BATCHOPS_ROLE") or "all").strip(),
            "drain_delay_s": _env_float("BATCHOPS_DRAIN_DELAY_S", 5.0),
            "shutdown_grace_s": _env_float("BATCHOPS_SHUTDOWN_GRACE_S", 30.0),
            "job_concurrency": _env_int("BATCHOPS_JOB_CONCURRENCY", 2),
            "job_lease_s": float(os.environ.get("BATCHOPS_JOB_LEASE_S") or 30.0),
            "job_max_attempts": _env_int("BATCHOPS_JOB_MAX_ATTEMPTS", 3),
            "job_retention_s": _env_float("BATCHOPS_JOB_RETENTION_S", 7 * 86400.0),
            "idempotency_retention_s": _env_float("BATCHOPS_IDEMPOTENCY_RETENTION_S", 86400.0),
            "cleanup_interval_s": _env_float("BATCHOPS_CLEANUP_INTERVAL_S", 300.0),
            "job_poll_s": _env_float("BATCHOPS_JOB_POLL_S", 1.0),
            "max_upload_bytes": _env_int("BATCHOPS_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024),
            "bulk_inline_max": _env_int("BATCHOPS_BULK_INLINE_MAX", 1000),
            "upload_storage": os.environ.get("BATCHOPS_UPLOAD_STORAGE") or None,
            "data_dir": os.environ.get("BATCHOPS_DATA_DIR") or None,
            "allow_private_webhooks": _env_bool("BATCHOPS_ALLOW_PRIVATE_WEBHOOKS"),
            "webhook_max_attempts": _env_int("BATCHOPS_WEBHOOK_MAX_ATTEMPTS", 10),
            "webhook_retry_base_s": float(os.environ.get("BATCHOPS_WEBHOOK_RETRY_BASE_S") or 5.0),
            "webhook_timeout_s": float(os.environ.get("BATCHOPS_WEBHOOK_TIMEOUT_S") or 10.0),
            "webhook_concurrency": _env_int("BATCHOPS_WEBHOOK_CONCURRENCY", 8),
            "webhook_retry_max_s": _env_float("BATCHOPS_WEBHOOK_RETRY_MAX_S", 3600.0),
            "webhook_poll_s": _env_float("BATCHOPS_WEBHOOK_POLL_S", 1.0),
            "max_inflation_ratio": float(os.environ.get("BATCHOPS_MAX_INFLATION_RATIO") or 100.0),
            "body_read_timeout_s": float(os.environ.get("BATCHOPS_BODY_READ_TIMEOUT_S") or 30.0),
            "graphql_max_depth": _env_int("BATCHOPS_GRAPHQL_MAX_DEPTH", 12),
            "graphql_max_aliases": _env_int("BATCHOPS_GRAPHQL_MAX_ALIASES", 1000),
            "graphql_max_tokens": _env_int("BATCHOPS_GRAPHQL_MAX_TOKENS", 100_000),
            "graphql_introspection": os.environ.get("BATCHOPS_GRAPHQL_INTROSPECTION") is None
            or _env_bool("BATCHOPS_GRAPHQL_INTROSPECTION"),
            # Observability
            "log_format": (os.environ.get("BATCHOPS_LOG_FORMAT") or "text").strip(),
            "log_level": (os.environ.get("BATCHOPS_LOG_LEVEL") or "info").strip(),
            "metrics_token": os.environ.get("BATCHOPS_METRICS_TOKEN") or None,
            "metrics_port": _env_int("BATCHOPS_METRICS_PORT", 0) or None,
            "tracing": _env_bool("BATCHOPS_TRACING"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
