"""Server settings: one frozen model, read from flags, ``BATCHOPS_*`` variables and a TOML file.

``Settings(...)`` is pure: it takes keyword fields and defaults, nothing else, so a test's
settings never depend on the environment it runs in. :meth:`Settings.load` is what
``batchops serve`` (and every command that opens the database) uses; it reads, in order of
precedence, the flags it is given, the environment, the ``--config`` TOML file, then the
defaults. An unknown key in the TOML file is an error naming it; an unknown ``BATCHOPS_*``
variable is not, because the CLI's own variables (``BATCHOPS_URL``, ``BATCHOPS_API_KEY``,
``BATCHOPS_CONFIG``…) and other tools' share the prefix.

Adding a setting is one declaration below: ``name: type = Field(default=default, description=…)``.
Its variable is ``BATCHOPS_<NAME>`` and its TOML key ``name``; docs/configuration.md's table
is generated from the fields (``python -m batchops.server.settings --markdown``, checked by
tests/server/test_settings.py). A secret says so with ``json_schema_extra=SECRET`` (masked
whole) or ``SECRET_URL`` (the URL's password masked) and ``batchops config show`` masks it.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from batchops._exceptions import ConfigurationError

__all__ = [
    "SECRET",
    "SECRET_URL",
    "UPLOAD_STORAGES",
    "LogFormat",
    "LogLevel",
    "Role",
    "Settings",
    "env_names",
    "markdown_table",
    "masked",
]

Role = Literal["all", "api", "worker"]
"""What a ``batchops serve`` process does (docs/deploy.md, "Roles"): ``all`` answers the
API and runs jobs; ``api`` answers the API and runs no job and sends no webhook; ``worker``
runs jobs and sends webhooks, and answers only ``/healthz`` and ``/readyz``."""

ROLES: tuple[Role, ...] = get_args(Role)

UploadStorage = Literal["database", "directory"]
UPLOAD_STORAGES: tuple[UploadStorage, ...] = get_args(UploadStorage)
"""The values of ``Settings.upload_storage`` (None picks the database's default)."""

ENV_PREFIX = "BATCHOPS_"

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
"""``log_level``'s values (``trace``: uvicorn's, below ``debug``)."""
LogFormat = Literal["text", "json"]
"""``log_format``'s values."""

SECRET: dict[str, Any] = {"secret": "value"}
"""``json_schema_extra`` of a setting whose whole value is a secret (a token)."""
SECRET_URL: dict[str, Any] = {"secret": "url"}
"""``json_schema_extra`` of a URL setting whose password is a secret."""


def _env(*names: str) -> AliasChoices:
    """A setting read from variables whose names are not ``BATCHOPS_<FIELD>``: the first
    name is the one documented, the others older names that keep working."""
    return AliasChoices(*names)


class Settings(BaseSettings):
    """How ``batchops serve`` behaves. Every limit is configurable.

    >>> Settings(db_url="sqlite:///tmp/x.db", max_batch_operations=500).max_batch_operations
    500
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        # BATCHOPS_X= (set but empty) means the default, as `export X=` usually intends.
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        str_strip_whitespace=True,
        validate_default=True,
    )

    db_url: str | None = Field(
        default=None,
        validation_alias=_env("BATCHOPS_DB", "BATCHOPS_DB_URL"),
        description="Database URL: a SQLite path or `sqlite:///path.db` (default "
        "`./batchops.db`) or `postgresql://user:password@host:port/db`.",
        json_schema_extra=SECRET_URL,
    )
    host: str = Field(default="127.0.0.1", description="The address `serve` listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="The port `serve` listens on.")
    log_level: LogLevel = Field(
        default="info",
        description="Log records (ours and uvicorn's) at this level and above; `warning` "
        "turns the access log off (docs/operations.md).",
    )
    max_batch_operations: int = Field(
        default=1000, ge=1, description="Most operations in one `POST /v1/batch`."
    )
    max_batch_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest `POST /v1/batch` body, in bytes."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest body of any other request, in bytes."
    )
    rate_limit_requests_per_minute: int = Field(
        default=6000,
        ge=0,
        validation_alias=_env("BATCHOPS_RATE_LIMIT_REQUESTS"),
        description="Requests per API key per minute; 0 disables the limit.",
    )
    rate_limit_operations_per_minute: int = Field(
        default=600_000,
        ge=0,
        validation_alias=_env("BATCHOPS_RATE_LIMIT_OPERATIONS"),
        description="Operations per API key per minute (a batch costs its operation "
        "count); 0 disables the limit.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Where the rate limits' counters live: a Redis URL "
        "(`redis://host:6379/0`) shares them between every process that uses it; unset "
        'keeps them per process (docs/limits.md, "Rate limits").',
        json_schema_extra=SECRET_URL,
    )
    redis_timeout_ms: int = Field(
        default=250,
        ge=1,
        description="The longest one Redis call may take; past it (or when Redis is down) a "
        "hit is counted in the process instead.",
    )
    batch_timeout_ms: int = Field(default=30_000, ge=1, description="Deadline of one batch.")
    statement_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description="The longest one database statement may run (0: no bound), so that no "
        "request can hold the database and stall the others (docs/limits.md).",
    )
    db_pool_size: int = Field(
        default=0,
        ge=0,
        description="PostgreSQL connections (and database threads) of this process; 0: "
        "twice the cores plus one, from 4 to 32. SQLite has one writer and ignores it.",
    )
    idempotency_stale_after_s: float = Field(
        default=30.0,
        gt=0,
        description="An in-flight Idempotency-Key claim silent this long is presumed dead "
        "and a retry may take it over (fencing makes that safe whatever the value).",
    )
    auth_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a checked API key is trusted without a lookup."
    )
    print_first_key: bool = Field(
        default=True,
        description="On first start with no API key, create one and print it "
        "(`BATCHOPS_API_KEY=bo_…`).",
    )
    role: Role = Field(
        default="all",
        description="What this process does: `all` (the API and the jobs), `api` (no jobs "
        "or webhooks) or `worker` (jobs and webhooks; only /healthz and /readyz).",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Processes serving on one port; each has its own pool, runner and, "
        "without redis_url, its own rate-limit counters.",
    )
    drain_delay_s: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM/SIGINT, answer /readyz 503 but go on serving this long, so a "
        "load balancer stops sending here (docs/deploy.md).",
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="Then how long in-flight requests, the jobs' current chunks and the "
        "webhooks in flight have to end.",
    )
    job_concurrency: int = Field(default=2, ge=1, description="Jobs each process runs at once.")
    job_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A job's lease; a runner that stops renewing it loses the job.",
    )
    job_poll_s: float = Field(
        default=1.0, gt=0, description="How often an idle runner looks for jobs."
    )
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        description="A job claimed more often than this (its process died each time) ends "
        "failed ATTEMPTS_EXHAUSTED; a clean shutdown's hand-back is no attempt.",
    )
    job_retention_s: float = Field(
        default=7 * 86400.0,
        ge=0,
        description="Jobs that ended this long ago are deleted with everything that hangs on "
        'them (docs/jobs.md, "Retention").',
    )
    idempotency_retention_s: float = Field(
        default=86400.0,
        ge=0,
        description="Idempotency-Keys last used this long ago are deleted; 0 keeps them.",
    )
    cleanup_interval_s: float = Field(
        default=300.0, ge=0, description="How often retention runs; 0: never."
    )
    max_upload_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="Largest import upload, in bytes."
    )
    bulk_inline_max: int = Field(
        default=1000,
        ge=0,
        description="`POST /v1/bulk/*` handles at most this many matching records inline "
        "(200); more become a job (202).",
    )
    upload_storage: str | None = Field(
        default=None,
        description="Where uploaded import files wait for their job: `database` (any process "
        "can run the job) or `directory` (in data_dir, which the job runners must share); "
        "unset: `database` on PostgreSQL, `directory` on SQLite.",
    )
    data_dir: str | None = Field(
        default=None,
        description="The uploads directory and the runners' local copies; unset: beside the "
        "SQLite file, or ./batchops-uploads for PostgreSQL.",
    )
    allow_private_webhooks: bool = Field(
        default=False,
        description="Let webhooks target loopback, private or link-local addresses (an SSRF "
        "guard when off).",
    )
    webhook_max_attempts: int = Field(
        default=10, ge=1, description="Deliveries of one webhook event."
    )
    webhook_retry_base_s: float = Field(
        default=5.0,
        gt=0,
        description="Attempt n waits base * 2**(n-1), capped at webhook_retry_max_s.",
    )
    webhook_retry_max_s: float = Field(
        default=3600.0, gt=0, description="The longest wait between two attempts."
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="One delivery's time bound.")
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="How often the sender looks for due deliveries."
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, description="Webhook deliveries each process sends at once."
    )
    max_inflation_ratio: float = Field(
        default=100.0,
        ge=0,
        description="A gzip body that inflates more than this many times its compressed size "
        "(past its first MiB) is refused with 413; 0 turns the guard off.",
    )
    body_read_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="A request whose body sends nothing for this long is answered 408; 0 "
        "turns the timeout off.",
    )
    graphql_max_depth: int = Field(
        default=12,
        ge=1,
        description='`POST /graphql`: deepest document (docs/graphql.md, "Limits").',
    )
    graphql_max_aliases: int = Field(
        default=1000, ge=1, description="`POST /graphql`: most aliases."
    )
    graphql_max_tokens: int = Field(
        default=100_000, ge=1, description="`POST /graphql`: most tokens in a document."
    )
    graphql_introspection: bool = Field(
        default=True,
        description="Answer introspection (GraphiQL's schema view) on `POST /graphql`.",
    )

    # --- Observability (docs/operations.md) -------------------------------------------
    log_format: LogFormat = Field(
        default="text",
        description="Every log record (ours and uvicorn's) as `text` or `json` lines on "
        "stderr; one access line per request (logger `batchops.access`).",
    )
    metrics_token: str | None = Field(
        default=None,
        description="`GET /metrics` wants `Authorization: Bearer <token>` when set; open "
        "otherwise.",
        json_schema_extra=SECRET,
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve `/metrics` only on this port (the API's port then answers it "
        "404); unset: on the API's port.",
    )
    tracing: bool = Field(
        default=False,
        description="OpenTelemetry spans per request, batch and job chunk (needs "
        "opentelemetry-api and an SDK the operator configures); off: batchops imports no "
        "opentelemetry module.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _no_metrics_port(cls, value: object) -> object:
        # BATCHOPS_METRICS_PORT=0 means "none", as 0 means "off" for the other settings.
        return None if value in (0, "0") else value

    @field_validator("upload_storage")
    @classmethod
    def _one_of_the_storages(cls, value: str | None) -> str | None:
        if value is not None and value not in UPLOAD_STORAGES:
            raise ValueError(f"must be one of {', '.join(UPLOAD_STORAGES)}")
        return value

    # Plain construction reads nothing but its arguments; load() adds the other sources.
    _config_file: ClassVar[Path | None] = None
    _read_environment: ClassVar[bool] = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (the keyword arguments), then the environment, then the TOML file; only the
        arguments for plain construction."""
        if not cls._read_environment:
            return (init_settings,)
        sources = [init_settings, env_settings]
        if cls._config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._config_file))
        return tuple(sources)

    @property
    def run_jobs(self) -> bool:
        """Whether this process runs jobs and sends webhooks (roles ``all`` and ``worker``)."""
        return self.role != "api"

    @property
    def serves_api(self) -> bool:
        """Whether this process answers the API (roles ``all`` and ``api``); a ``worker``
        answers only the health probes."""
        return self.role != "worker"

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes``, checked as the constructor checks (``dataclasses.replace``
        for this frozen model)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def to_json(self) -> str:
        """Every field, as JSON (:meth:`from_json` reads it back): how ``serve --workers``
        hands one process's settings to the others."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings :meth:`to_json` wrote (nothing else is read)."""
        return cls.model_validate_json(text)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **flags: object) -> Settings:
        """The effective settings: ``flags`` (a ``None`` flag was not given), then the
        ``BATCHOPS_*`` environment, then ``config_file`` (TOML), then the defaults.

        Raises :class:`ConfigurationError` naming the key or variable at fault: an unknown
        key in the file, a value that is not the setting's type, an unreadable file.
        """
        path = Path(config_file) if config_file is not None else None
        if path is not None:
            try:
                tomllib.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read the config file {path}: {exc.strerror or exc}"
                ) from exc
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc

        # A throwaway subclass carries the file to settings_customise_sources (pydantic
        # builds the sources from the class, not the call); its values make a plain Settings.
        loading = type("Settings", (cls,), {"_config_file": path, "_read_environment": True})
        given = {name: value for name, value in flags.items() if value is not None}
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"Settings.load() got unknown settings: {', '.join(unknown)}")
        try:
            loaded = loading(**given)
        except ValidationError as exc:
            raise ConfigurationError(_explain(exc, path)) from exc
        return cls.model_validate(loaded.model_dump())

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``BATCHOPS_*`` environment variables, then ``overrides`` (no file):
        :meth:`load` without ``config_file``."""
        return cls.load(None, **overrides)


def env_names(name: str) -> tuple[str, ...]:
    """The environment variables of setting ``name``, the documented one first."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (ENV_PREFIX + name.upper(),)


def _explain(error: ValidationError, path: Path | None) -> str:
    """One line per fault, naming the setting by its TOML key and variable."""
    lines = []
    for fault in error.errors():
        key = str(fault["loc"][0]) if fault["loc"] else "?"
        field = next(
            (n for n in Settings.model_fields if key == n or key.upper() in env_names(n)), None
        )
        if fault["type"] == "extra_forbidden":
            where = f" in {path}" if path is not None else ""
            lines.append(f"unknown setting {key!r}{where} (docs/configuration.md lists them)")
        elif field is not None:
            lines.append(
                f"setting {field} ({env_names(field)[0]}): {fault['msg']}, "
                f"got {fault.get('input')!r}"
            )
        else:
            lines.append(f"{key}: {fault['msg']}")
    return "; ".join(lines)


def masked(settings: Settings) -> dict[str, Any]:
    """Every setting, secrets hidden: a token as ``***``, a URL's password as ``***``."""
    values = settings.model_dump()
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        kind = extra.get("secret") if isinstance(extra, dict) else None
        value = values[name]
        if value is None or kind is None:
            continue
        values[name] = "***" if kind == "value" else _mask_url(str(value))
    return values


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _type_name(name: str) -> str:
    annotation = Settings.model_fields[name].annotation
    text = getattr(annotation, "__name__", None) or str(annotation)
    if "Literal" in str(annotation):
        text = " \\| ".join(repr(v).replace("'", '"') for v in _literal_values(annotation))
        if "None" in str(annotation):
            text += " (optional)"
    elif "None" in str(annotation):
        text = str(annotation).replace(" | None", "").replace("NoneType", "") + " (optional)"
    return text


def _literal_values(annotation: Any) -> list[object]:
    values: list[object] = []
    for arg in get_args(annotation) or ():
        values.extend(_literal_values(arg) if get_args(arg) else [arg])
    return [v for v in values if v is not type(None)] or list(get_args(annotation))


def _default(name: str) -> str:
    value = Settings.model_fields[name].default
    return "unset" if value is None else f"`{json.dumps(value)}`"


def markdown_table() -> str:
    """docs/configuration.md's table of every setting, generated from the fields."""
    lines = [
        "| TOML key | Environment variable | Type | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        env = " or ".join(f"`{n}`" for n in env_names(name))
        description = (field.description or "").replace("|", "\\|")
        lines.append(
            f"| `{name}` | {env} | {_type_name(name)} | {_default(name)} | {description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m batchops.server.settings --markdown
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m batchops.server.settings --markdown")
    sys.stdout.write(markdown_table())
