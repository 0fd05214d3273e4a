"""The ``batchops`` command: ``serve``, ``migrate``, ``keys``, ``config``, ``batch``,
``import``, ``jobs`` and ``demo``.

Expected errors (an API error, an unreachable server or database, a busy port, a bad config
file…) end every command the same way, in :class:`_Commands`: one line on stderr naming the
error code, and the exit status of :data:`EXIT_CODES` (docs/cli.md, "Exit codes");
``batchops --debug`` shows the traceback instead.
"""

from __future__ import annotations

import asyncio
import errno
import random
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from batchops._exceptions import (
    APIError,
    BatchopsError,
    CheckpointError,
    ConfigurationError,
    ConnectionFailedError,
    StoreError,
)

__all__ = ["EXIT_CODES", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "the command ran but some operations or rows failed (batch, import, a job "
    "that ended failed), or a key to revoke was not found",
    EXIT_USAGE: "usage or bad input: an unknown flag, a bad value, an unreadable or invalid "
    "input or config file, an unknown config key",
    EXIT_SERVICE: "the server or the database failed: an API error answer (unknown id, "
    "finished job, refused request…), the server unreachable, the database unreachable or "
    "not migratable, or `serve` could not start (the port busy)",
}
"""Every exit status of ``batchops`` and what it means (docs/cli.md has this table)."""


def _expected(exc: BaseException) -> tuple[int, str, str] | None:
    """(exit status, error code, message) of an error a user can cause and fix; None for
    anything else, which is a bug and keeps its traceback."""
    if isinstance(exc, APIError):
        return EXIT_SERVICE, exc.code, f"{exc.message} (HTTP {exc.status_code})"
    if isinstance(exc, ConnectionFailedError):
        return EXIT_SERVICE, "CONNECTION_FAILED", str(exc)
    if isinstance(exc, StoreError):
        return EXIT_SERVICE, "DATABASE_ERROR", str(exc)
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE, "CONFIG_ERROR", str(exc)
    if isinstance(exc, CheckpointError):
        return EXIT_USAGE, "CHECKPOINT_ERROR", str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return EXIT_SERVICE, "PORT_UNAVAILABLE", str(exc.strerror or exc)
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        where = f"{exc.filename}: " if exc.filename else ""
        return EXIT_USAGE, "FILE_ERROR", f"{where}{exc.strerror or exc}"
    if isinstance(exc, BatchopsError):
        return EXIT_FAILED, type(exc).__name__, str(exc)
    return None


class _Commands(click.Group):
    """The ``batchops`` group: every subcommand runs inside one handler of expected errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.UsageError, click.exceptions.Exit, click.Abort):
            raise  # click's own: a flag misused prints the usage, exit 2
        except Exception as exc:
            if isinstance(exc, click.ClickException):  # a command's bad input
                known: tuple[int, str, str] | None = (
                    exc.exit_code,
                    "BAD_INPUT",
                    exc.format_message(),
                )
            else:
                known = _expected(exc)
            if known is None or ctx.params.get("debug"):
                raise
            status, code, message = known
            message = " ".join(message.split())  # one line, whatever the driver wrote
            command = f"batchops {ctx.invoked_subcommand or ''}".strip()
            click.echo(f"{command}: error {code}: {message}", err=True)
            ctx.exit(status)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchops")
@click.option(
    "--debug",
    is_flag=True,
    envvar="BATCHOPS_DEBUG",
    show_envvar=True,
    help="Show the traceback of an error instead of its one line.",
)
def main(debug: bool) -> None:
    """batchops: fast, safe bulk API work from both ends of the wire.

    Exit status: 0 success; 1 some operations or rows failed; 2 usage or bad input (flags,
    files, config); 3 the server or database failed (an API error, unreachable, a busy
    port). See docs/cli.md."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _config_option(fn: _F) -> _F:
    return click.option(
        "--config",
        "config_file",
        envvar="BATCHOPS_CONFIG",
        show_envvar=True,
        type=click.Path(dir_okay=False),
        default=None,
        help="A batchops.toml of settings (docs/configuration.md); flags and BATCHOPS_* "
        "variables override it.",
    )(fn)


def _db_option(fn: _F) -> _F:
    """Every command that opens the database takes it the same way (and a config file)."""
    fn = click.option(
        "--db",
        "db_url",
        default=None,
        help="Database URL: a SQLite path/URL (default ./batchops.db) or postgresql://… "
        "(env BATCHOPS_DB, or db_url in the config file).",
    )(fn)
    return _config_option(fn)


def _database(db_url: str | None, config_file: str | None) -> str | None:
    """The database URL: the flag, else the environment, else the config file."""
    from batchops.server.settings import Settings

    return Settings.load(config_file, db_url=db_url).db_url


@main.command()
@_db_option
@click.option("--host", default=None, help="Listen address (env BATCHOPS_HOST; default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (env BATCHOPS_PORT; default 8000).")
@click.option(
    "--role",
    type=click.Choice(["all", "api", "worker"]),
    default=None,
    help="all: the API and the jobs; api: the API, no jobs or webhooks; worker: the jobs "
    "and webhooks, and only /healthz and /readyz over HTTP (env BATCHOPS_ROLE; default all).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes serving on the one port (env BATCHOPS_WORKERS; default 1); each has "
    "its own database pool and job runner.",
)
@click.option(
    "--max-batch-operations",
    type=int,
    default=None,
    help="Env BATCHOPS_MAX_BATCH_OPERATIONS; default 1000.",
)
@click.option(
    "--max-batch-bytes",
    type=int,
    default=None,
    help="Env BATCHOPS_MAX_BATCH_BYTES; default 10 MiB.",
)
@click.option(
    "--rate-limit-requests",
    type=int,
    default=None,
    help="Per key per minute (env BATCHOPS_RATE_LIMIT_REQUESTS; default 6000; 0: off).",
)
@click.option(
    "--rate-limit-operations",
    type=int,
    default=None,
    help="Per key per minute (env BATCHOPS_RATE_LIMIT_OPERATIONS; default 600000; 0: off).",
)
@click.option(
    "--redis",
    "redis_url",
    default=None,
    help="Share the rate limits between processes on this Redis "
    "(env BATCHOPS_REDIS_URL; e.g. redis://127.0.0.1:6379/0). Without it they are per process.",
)
@click.option(
    "--allow-private-webhooks",
    is_flag=True,
    default=False,
    help="Let webhooks target loopback/private/link-local addresses "
    "(env BATCHOPS_ALLOW_PRIVATE_WEBHOOKS=1). Off by default: an SSRF guard.",
)
@click.option(
    "--max-inflation-ratio",
    type=float,
    default=None,
    help="Refuse a gzip body that inflates more than this many times its size "
    "(env BATCHOPS_MAX_INFLATION_RATIO; default 100; 0: off).",
)
@click.option(
    "--body-read-timeout-s",
    type=float,
    default=None,
    help="Answer 408 when a request body sends nothing for this many seconds "
    "(env BATCHOPS_BODY_READ_TIMEOUT_S; default 30; 0: off).",
)
@click.option(
    "--db-pool-size",
    type=click.IntRange(min=1),
    default=None,
    help="PostgreSQL connections of each process (env BATCHOPS_DB_POOL_SIZE; default: "
    "twice the cores plus one, 4 to 32).",
)
@click.option(
    "--job-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs each process runs at once (env BATCHOPS_JOB_CONCURRENCY; default 2).",
)
@click.option(
    "--webhook-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Webhook deliveries each process sends at once "
    "(env BATCHOPS_WEBHOOK_CONCURRENCY; default 8).",
)
@click.option(
    "--drain-delay-s",
    type=click.FloatRange(min=0),
    default=None,
    help="On SIGTERM/SIGINT, answer /readyz with 503 but go on serving this long, so a "
    "load balancer stops sending here first (env BATCHOPS_DRAIN_DELAY_S; default 5).",
)
@click.option(
    "--shutdown-grace-s",
    type=click.FloatRange(min=0),
    default=None,
    help="Then, once no connection is accepted, how long in-flight requests, the jobs' "
    "current chunks and webhooks have to end (env BATCHOPS_SHUTDOWN_GRACE_S; default 30).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
    default=None,
    help="Every logger's level (env BATCHOPS_LOG_LEVEL; default info); warning turns the "
    "access log off.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as human text or JSON, the access log included "
    "(env BATCHOPS_LOG_FORMAT; default text).",
)
@click.option(
    "--metrics-token",
    default=None,
    help="GET /metrics wants 'Authorization: Bearer <token>' (env BATCHOPS_METRICS_TOKEN; "
    "default: open).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    help="Serve GET /metrics on this port only (env BATCHOPS_METRICS_PORT; default: on "
    "the API's port).",
)
@click.option(
    "--tracing/--no-tracing",
    default=None,
    help="OpenTelemetry spans per request, batch and job chunk (env BATCHOPS_TRACING=1; "
    "default off; needs opentelemetry installed and configured).",
)
def serve(
    db_url: str | None,
    config_file: str | None,
    host: str | None,
    port: int | None,
    role: str | None,
    workers: int | None,
    max_batch_operations: int | None,
    max_batch_bytes: int | None,
    rate_limit_requests: int | None,
    rate_limit_operations: int | None,
    redis_url: str | None,
    allow_private_webhooks: bool,
    max_inflation_ratio: float | None,
    body_read_timeout_s: float | None,
    db_pool_size: int | None,
    job_concurrency: int | None,
    webhook_concurrency: int | None,
    drain_delay_s: float | None,
    shutdown_grace_s: float | None,
    log_level: str | None,
    log_format: str | None,
    metrics_token: str | None,
    metrics_port: int | None,
    tracing: bool | None,
) -> None:
    """Run the records service (OpenAPI docs at /docs). Settings come from the flags, then
    BATCHOPS_* variables, then --config FILE (docs/configuration.md). SIGTERM/SIGINT stop
    it in two steps: /readyz turns 503 while requests are still served (--drain-delay-s),
    then no connection is accepted and in-flight work ends (--shutdown-grace-s); exit
    status 0. A busy port or an unreachable database: exit status 3, before any key is
    created. See docs/deploy.md."""
    from batchops.server import serve as serving
    from batchops.server.settings import Settings

    settings = Settings.load(
        config_file,
        db_url=db_url,
        host=host,
        port=port,
        log_level=log_level,
        role=role,
        workers=workers,
        max_batch_operations=max_batch_operations,
        max_batch_bytes=max_batch_bytes,
        rate_limit_requests_per_minute=rate_limit_requests,
        rate_limit_operations_per_minute=rate_limit_operations,
        redis_url=redis_url,
        allow_private_webhooks=True if allow_private_webhooks else None,
        max_inflation_ratio=max_inflation_ratio,
        body_read_timeout_s=body_read_timeout_s,
        db_pool_size=db_pool_size,
        job_concurrency=job_concurrency,
        webhook_concurrency=webhook_concurrency,
        drain_delay_s=drain_delay_s,
        shutdown_grace_s=shutdown_grace_s,
        log_format=log_format,
        metrics_token=metrics_token,
        metrics_port=metrics_port,
        tracing=tracing,
    )
    serving.serve(settings, host=settings.host, port=settings.port, log_level=settings.log_level)


@main.command()
@_db_option
def migrate(db_url: str | None, config_file: str | None) -> None:
    """Bring the database schema up to date, then exit (a deploy step; ``serve`` does it
    too when it starts). Prints each migration it applied; safe to run concurrently and
    again. Exits 3 with the reason when the database cannot be migrated."""
    from batchops.store import migrate as run_migrations

    applied = run_migrations(_database(db_url, config_file))
    for migration_id in applied:
        click.echo(f"applied {migration_id}")
    if not applied:
        click.echo("nothing to apply: the schema is up to date")


@main.group()
def keys() -> None:
    """Manage API keys (stored hashed, each bound to a tenant)."""


def _with_store(db_url: str | None, fn: Any) -> Any:
    from batchops.store import open_store

    async def go() -> Any:
        store = await open_store(db_url)
        try:
            return await store.run(fn)
        finally:
            await store.close()

    return asyncio.run(go())


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option("--name", default=None, help="A label to recognise the key by.")
@_db_option
def keys_create(tenant: str, name: str | None, db_url: str | None, config_file: str | None) -> None:
    """Create a key; prints the key alone on stdout (it is not shown again)."""
    from batchops.server.auth import create_api_key

    key, _ = _with_store(
        _database(db_url, config_file), lambda tx: create_api_key(tx, tenant, name)
    )
    click.echo(key)


@keys.command("list")
@click.option("--tenant", default=None)
@_db_option
def keys_list(tenant: str | None, db_url: str | None, config_file: str | None) -> None:
    """List keys (ids, tenants, state — never the secrets)."""
    rows = _with_store(_database(db_url, config_file), lambda tx: tx.list_api_keys(tenant))
    for row in rows:
        state = f"revoked {row.revoked_at}" if row.revoked_at else "active"
        click.echo(f"{row.key_id}\t{row.tenant}\t{row.name or ''}\t{row.created_at}\t{state}")


@keys.command("revoke")
@click.argument("key_id")
@_db_option
def keys_revoke(key_id: str, db_url: str | None, config_file: str | None) -> None:
    """Revoke a key by its id (the part after ``bo_``); exits 1 when no active key has it."""
    from batchops.server._ids import now_iso

    database = _database(db_url, config_file)
    if not _with_store(database, lambda tx: tx.revoke_api_key(key_id, now_iso())):
        click.echo(f"no active key with id {key_id!r}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not taken from the env)."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


# The client commands' server and key: the names `serve` prints (BATCHOPS_API_KEY=bo_…);
# BATCHOPS_KEY, the name before it, still works.
_url_option = click.option(
    "--url", envvar="BATCHOPS_URL", show_envvar=True, required=True, help="Server base URL."
)
_key_option = click.option(
    "--key",
    envvar=["BATCHOPS_API_KEY", "BATCHOPS_KEY"],
    show_envvar=True,
    required=True,
    help="API key (the BATCHOPS_API_KEY=… line serve printed; BATCHOPS_KEY also works).",
)


@main.group()
def config() -> None:
    """The server's settings (docs/configuration.md)."""


@config.command("show")
@_config_option
def config_show(config_file: str | None) -> None:
    """Print the effective settings as TOML (flags aside: BATCHOPS_* variables, then
    --config FILE, then the defaults), passwords and tokens masked. An unset setting is
    printed commented out."""
    from batchops.server.settings import Settings, masked

    for name, value in masked(Settings.load(config_file)).items():
        if value is None:
            click.echo(f"# {name} = (unset)")
        else:
            click.echo(f"{name} = {_toml_value(value)}")


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string is a TOML basic string for everything a setting holds.
    return json.dumps(str(value), ensure_ascii=False)


@main.command("batch")
@click.argument("file")
@_url_option
@_key_option
@click.option("--out", default=None, help="Results NDJSON file (default: stdout).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None, help="Ops per request.")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--atomic", is_flag=True, help="All or nothing (must fit one request).")
@click.option("--dry-run", is_flag=True, help="Validate on the server, run nothing.")
@click.option("--resume", is_flag=True, help="Continue a killed run (needs --out).")
def batch(
    file: str,
    url: str,
    key: str,
    out: str | None,
    chunk_size: int | None,
    concurrency: int,
    atomic: bool,
    dry_run: bool,
    resume: bool,
) -> None:
    """Run the operations of FILE (NDJSON, one per line; - for stdin) through /v1/batch.

    Writes one result per line ({"index", "status", "body"|"error"}), prints a summary,
    and exits 1 if any operation failed (2 on bad input). See docs/client.md."""
    from batchops.client._cli import run

    code = run(
        file,
        url=url,
        key=key,
        out=out,
        chunk_size=chunk_size,
        concurrency=concurrency,
        atomic=atomic,
        dry_run=dry_run,
        resume=resume,
    )
    sys.exit(code)


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson", "json"]), default=None)
@click.option("--mapping", type=click.Path(exists=True), default=None, help="JSON mapping file.")
@click.option("--upsert-key", default=None, help="Data field that identifies a record.")
@click.option("--lenient", is_flag=True, help="Import good rows, report bad ones.")
@click.option("--dry-run", is_flag=True, help="Validate and count, write nothing.")
@click.option("--chunk-size", type=click.IntRange(1, 10_000), default=None)
@click.option("--notify-url", default=None, help="Webhook the server calls when the job ends.")
@click.option(
    "--notify-secret",
    envvar="BATCHOPS_NOTIFY_SECRET",
    default=None,
    help="The webhook's signing secret, 16-256 characters (or env BATCHOPS_NOTIFY_SECRET, "
    "which keeps it out of the shell history).",
)
@click.option(
    "--notify-event",
    "notify_events",
    multiple=True,
    type=click.Choice(["job.succeeded", "job.failed", "job.cancelled"]),
    help="Only call the webhook for this event (repeatable; default: all).",
)
@_url_option
@_key_option
def import_(
    file: str,
    collection: str,
    fmt: str | None,
    mapping: str | None,
    upsert_key: str | None,
    lenient: bool,
    dry_run: bool,
    chunk_size: int | None,
    notify_url: str | None,
    notify_secret: str | None,
    notify_events: tuple[str, ...],
    url: str,
    key: str,
) -> None:
    """Import FILE (CSV, NDJSON or a JSON array) as a server job and follow its progress."""
    import json
    from pathlib import Path

    from batchops.client._jobs import NotificationWebhook
    from batchops.client._jobs_cli import run_import

    hook: NotificationWebhook | None = None
    if notify_url is not None:
        if not notify_secret:
            raise click.UsageError(
                "--notify-url needs a signing secret: pass --notify-secret or set "
                "BATCHOPS_NOTIFY_SECRET (16-256 characters; your receiver checks "
                "signatures with it)"
            )
        hook = NotificationWebhook(notify_url, notify_secret, list(notify_events) or None)
    elif notify_events or _given(click.get_current_context(), "notify_secret"):
        raise click.UsageError("--notify-event and --notify-secret need --notify-url")
    sys.exit(
        run_import(
            file,
            url=url,
            key=key,
            collection=collection,
            format=fmt,
            mapping=json.loads(Path(mapping).read_text()) if mapping else None,
            upsert_key=upsert_key,
            lenient=lenient,
            dry_run=dry_run,
            chunk_size=chunk_size,
            notification_webhook=hook,
        )
    )


@main.command("jobs")
@click.argument(
    "action",
    type=click.Choice(["list", "show", "watch", "cancel", "results", "failures", "retry-failures"]),
)
@click.argument("job_id", required=False)
@click.option("--state", default=None, help="list: only jobs in this state.")
@click.option("--type", "job_type", default=None, help="list: only jobs of this type.")
@click.option("--csv", "as_csv", is_flag=True, help="failures: CSV instead of NDJSON.")
@_url_option
@_key_option
def jobs(
    action: str,
    job_id: str | None,
    state: str | None,
    job_type: str | None,
    as_csv: bool,
    url: str,
    key: str,
) -> None:
    """Bulk jobs: list (every page) | show ID | watch ID | cancel ID | results ID |
    failures ID [--csv] | retry-failures ID (prints the new import job)."""
    from batchops.client._jobs_cli import run_jobs

    if action != "list" and not job_id:
        raise click.UsageError(f"'jobs {action}' needs a job id")
    options: dict[str, Any] = {}
    if action == "list":
        options["state"] = state
        options["type"] = job_type
    elif action == "failures":
        options["format"] = "csv" if as_csv else "ndjson"
    sys.exit(run_jobs(action, job_id, url=url, key=key, **options))


@main.command()
@click.option("-n", "--items", default=200, show_default=True)
@click.option("--concurrency", default=20, show_default=True)
@click.option("--fail-rate", default=0.05, show_default=True)
def demo(items: int, concurrency: int, fail_rate: float) -> None:
    """Show the engine at work on a simulated flaky API (no network)."""
    from batchops import RetryPolicy, run_batch

    class Flaky(Exception):
        status_code = 503

    async def call(i: int) -> int:
        await asyncio.sleep(random.uniform(0.001, 0.02))
        if random.random() < fail_rate:
            raise Flaky(f"item {i}: 503 from the simulated API")
        return i * i

    result = run_batch(
        range(items),
        call,
        max_concurrent=concurrency,
        retry=RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.1),
        progress=True,
    )
    s = result.summary
    click.echo(
        f"{s.total} items: {s.succeeded} succeeded, {s.failed} failed, {s.skipped} skipped "
        f"in {s.duration_s:.2f}s; results are in input order: {result.values()[:5]}…"
    )
