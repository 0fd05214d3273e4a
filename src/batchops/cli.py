"""The ``batchops`` command: ``serve``, ``migrate``, ``keys``, ``batch``, ``import``, ``jobs``
and ``demo``."""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import click

__all__ = ["main"]


# Every command that opens the database takes it the same way.
_db_option = click.option(
    "--db",
    "db_url",
    envvar="BATCHOPS_DB",
    default=None,
    help="Database URL: a SQLite path/URL (default ./batchops.db) or postgresql://…",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchops")
def main() -> None:
    """batchops: fast, safe bulk API work from both ends of the wire."""


@main.command()
@_db_option
@click.option("--host", envvar="BATCHOPS_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="BATCHOPS_PORT", default=8000, show_default=True, type=int)
@click.option(
    "--role",
    type=click.Choice(["all", "api", "worker"]),
    default=None,
    help="all: the API and the jobs; api: the API, no jobs or webhooks; worker: the jobs "
    "and webhooks, and only /healthz and /readyz over HTTP (env BATCHOPS_ROLE; default all).",
)
@click.option(
    "--workers",
    envvar="BATCHOPS_WORKERS",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes serving on the one port (env BATCHOPS_WORKERS); each has its own "
    "database pool and job runner.",
)
@click.option("--max-batch-operations", type=int, default=None, help="Default 1000.")
@click.option("--max-batch-bytes", type=int, default=None, help="Default 10 MiB.")
@click.option("--rate-limit-requests", type=int, default=None, help="Per key per minute (0: off).")
@click.option(
    "--rate-limit-operations", type=int, default=None, help="Per key per minute (0: off)."
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
    envvar="BATCHOPS_LOG_LEVEL",
    default="info",
    show_default=True,
    help="Every logger's level (env BATCHOPS_LOG_LEVEL); warning turns the access log off.",
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
    host: str,
    port: int,
    role: str | None,
    workers: int,
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
    log_level: str,
    log_format: str | None,
    metrics_token: str | None,
    metrics_port: int | None,
    tracing: bool | None,
) -> None:
    """Run the records service (OpenAPI docs at /docs). SIGTERM/SIGINT stop it in two
    steps: /readyz turns 503 while requests are still served (--drain-delay-s), then no
    connection is accepted and in-flight work ends (--shutdown-grace-s); exit status 0.
    See docs/deploy.md."""
    from batchops.server import serve as serving
    from batchops.server.settings import Settings

    try:
        settings = Settings.from_env(
            db_url=db_url,
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
            log_level=log_level,
            log_format=log_format,
            metrics_token=metrics_token,
            metrics_port=metrics_port,
            tracing=tracing,
        )
    except ValueError as exc:  # an environment variable that is not a setting's value
        raise click.UsageError(str(exc)) from exc
    serving.serve(settings, host=host, port=port, log_level=settings.log_level)


@main.command()
@_db_option
def migrate(db_url: str | None) -> None:
    """Bring the database schema up to date, then exit (a deploy step; ``serve`` does it
    too when it starts). Prints each migration it applied; safe to run concurrently and
    again. Exits 1 with the reason when the database cannot be migrated."""
    from batchops._exceptions import StoreError
    from batchops.store import migrate as run_migrations

    try:
        applied = run_migrations(db_url)
    except (StoreError, ValueError) as exc:
        click.echo(f"batchops migrate: {exc}", err=True)
        sys.exit(1)
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
def keys_create(tenant: str, name: str | None, db_url: str | None) -> None:
    """Create a key; prints the key alone on stdout (it is not shown again)."""
    from batchops.server.auth import create_api_key

    key, _ = _with_store(db_url, lambda tx: create_api_key(tx, tenant, name))
    click.echo(key)


@keys.command("list")
@click.option("--tenant", default=None)
@_db_option
def keys_list(tenant: str | None, db_url: str | None) -> None:
    """List keys (ids, tenants, state — never the secrets)."""
    rows = _with_store(db_url, lambda tx: tx.list_api_keys(tenant))
    for row in rows:
        state = f"revoked {row.revoked_at}" if row.revoked_at else "active"
        click.echo(f"{row.key_id}\t{row.tenant}\t{row.name or ''}\t{row.created_at}\t{state}")


@keys.command("revoke")
@click.argument("key_id")
@_db_option
def keys_revoke(key_id: str, db_url: str | None) -> None:
    """Revoke a key by its id (the part after ``bo_``)."""
    from batchops.server._ids import now_iso

    if not _with_store(db_url, lambda tx: tx.revoke_api_key(key_id, now_iso())):
        click.echo(f"no active key with id {key_id!r}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


@main.command("batch")
@click.argument("file")
@click.option("--url", envvar="BATCHOPS_URL", required=True, help="Server base URL.")
@click.option("--key", envvar="BATCHOPS_KEY", required=True, help="API key.")
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
    from batchops.client._cli import UsageError, run

    try:
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
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    sys.exit(code)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not taken from the env)."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


_url_option = click.option("--url", envvar="BATCHOPS_URL", required=True, help="Server base URL.")
_key_option = click.option("--key", envvar="BATCHOPS_KEY", required=True, help="API key.")


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
    "action", type=click.Choice(["list", "show", "watch", "cancel", "results", "failures"])
)
@click.argument("job_id", required=False)
@click.option("--state", default=None, help="list: only jobs in this state.")
@click.option("--csv", "as_csv", is_flag=True, help="failures: CSV instead of NDJSON.")
@_url_option
@_key_option
def jobs(
    action: str, job_id: str | None, state: str | None, as_csv: bool, url: str, key: str
) -> None:
    """Bulk jobs: list | show ID | watch ID | cancel ID | results ID | failures ID [--csv]."""
    from batchops.client._jobs_cli import run_jobs

    if action != "list" and not job_id:
        raise click.UsageError(f"'jobs {action}' needs a job id")
    options: dict[str, Any] = {}
    if action == "list":
        options["state"] = state
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
