"""``notification_webhook`` from the client side: the SDK's job-creating calls and
``batchops import --notify-url``, against a real server (both backends) and a real
receiver on 127.0.0.1 that checks every signature (tests/webhooks/webhook_receiver.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchops.client import AsyncClient, NotificationWebhook
from tests.client.conftest import Live, Tenant
from tests.webhooks.webhook_receiver import run_receiver

SECRET = "s3cret-s3cret-s3cret"
# The receiver listens on loopback: a private target the server refuses unless told.
FAST = {
    "allow_private_webhooks": True,
    "job_poll_s": 0.05,
    "webhook_poll_s": 0.05,
    "webhook_retry_base_s": 0.05,
}


async def wait_done(client: AsyncClient, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """Poll the job until it has ended; its final state."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        job = await client.jobs.get(job_id)
        if job["state"] not in ("queued", "running"):
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job still {job['state']}"
        await asyncio.sleep(0.02)


async def deliveries(live: Live, tenant: Tenant, job_id: str) -> list[dict[str, Any]]:
    """``GET /v1/jobs/{id}/deliveries`` (the SDK has no call for it)."""
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {tenant.key}"}
    ) as http:
        response = await http.get(f"/v1/jobs/{job_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def write_csv(path: Path, rows: int = 3) -> Path:
    path.write_text("name,n\n" + "".join(f"p{i},{i}\n" for i in range(rows)))
    return path


def import_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``batchops import …`` in a subprocess, without a BATCHOPS_NOTIFY_SECRET of ours."""
    base = {k: v for k, v in os.environ.items() if k != "BATCHOPS_NOTIFY_SECRET"}
    return subprocess.run(
        [sys.executable, "-m", "batchops", "import", *args],
        env={**base, **(env or {})},
        capture_output=True,
        timeout=120,
        check=False,
    )


# -- SDK ------------------------------------------------------------------------------------


@pytest.mark.limits(**FAST)
async def test_an_import_with_a_notification_webhook_is_called_signed_when_its_job_ends(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    async with run_receiver(SECRET) as receiver, AsyncClient(live.url, tenant_key.key) as client:
        job = await client.jobs.create_import(
            write_csv(tmp_path / "people.csv"),
            collection="people",
            notification_webhook=NotificationWebhook(receiver.url, SECRET),
        )
        await wait_done(client, job["id"])
        (payload,) = await receiver.wait_accepted(1)
    assert receiver.rejected == 0
    assert payload["event"] == "job.succeeded"
    assert (payload["job"]["id"], payload["job"]["type"]) == (job["id"], "import")
    assert payload["job"]["succeeded"] == 3


@pytest.mark.limits(**FAST)
async def test_a_notification_webhook_is_not_called_for_an_event_it_did_not_name(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    async with run_receiver(SECRET) as receiver, AsyncClient(live.url, tenant_key.key) as client:
        hook = NotificationWebhook(receiver.url, SECRET, events=["job.failed"])
        job = await client.jobs.create_import(
            write_csv(tmp_path / "people.csv"), collection="people", notification_webhook=hook
        )
        done = await wait_done(client, job["id"])
    assert done["state"] == "succeeded"
    # The delivery row would be written in the job's final transaction: none is final.
    assert await deliveries(live, tenant_key, job["id"]) == []
    assert receiver.hits == receiver.rejected == 0


@pytest.mark.limits(**FAST)
async def test_a_bulk_update_of_one_record_with_a_notification_webhook_runs_as_a_notified_job(
    live: Live, tenant_key: Tenant
) -> None:
    async with run_receiver(SECRET) as receiver, AsyncClient(live.url, tenant_key.key) as client:
        await client.collection("posts").create({"status": "draft"}, id="p1")
        job = await client.jobs.bulk_update(
            "posts",
            {"status": "draft"},
            {"archived": True},
            notification_webhook=NotificationWebhook(receiver.url, SECRET),
        )
        assert (job["type"], job["state"]) == ("bulk_update", "queued")
        (payload,) = await receiver.wait_accepted(1)
    assert (payload["job"]["id"], payload["job"]["processed"]) == (job["id"], 1)


@pytest.mark.limits(**FAST)
async def test_a_bulk_delete_by_one_id_with_a_notification_webhook_runs_as_a_notified_job(
    live: Live, tenant_key: Tenant
) -> None:
    async with run_receiver(SECRET) as receiver, AsyncClient(live.url, tenant_key.key) as client:
        await client.collection("posts").create({"n": 1}, id="p1")
        job = await client.jobs.bulk_delete(
            "posts", ids=["p1"], notification_webhook=NotificationWebhook(receiver.url, SECRET)
        )
        assert (job["type"], job["state"]) == ("bulk_delete", "queued")
        (payload,) = await receiver.wait_accepted(1)
    assert (payload["job"]["id"], payload["job"]["succeeded"]) == (job["id"], 1)


def test_a_notification_webhook_keeps_its_secret_out_of_its_repr() -> None:
    hook = NotificationWebhook("https://hooks.example.com/x", SECRET, events=["job.failed"])
    assert SECRET not in repr(hook)
    assert hook.events == ("job.failed",)


# -- CLI ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.limits(**FAST)
async def test_import_cli_notify_flags_register_a_signed_webhook_for_the_job(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "people.csv")
    async with run_receiver(SECRET) as receiver:
        done = await asyncio.to_thread(
            import_cli, str(csv), "--collection", "people", "--url", live.url,
            "--key", tenant_key.key, "--notify-url", receiver.url, "--notify-secret", SECRET,
            "--notify-event", "job.succeeded",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (payload,) = await receiver.wait_accepted(1)
    assert receiver.rejected == 0
    assert (payload["event"], payload["job"]["succeeded"]) == ("job.succeeded", 3)
    assert f"job {payload['job']['id']}".encode() in done.stdout


@pytest.mark.slow
@pytest.mark.limits(**FAST)
async def test_import_cli_takes_the_notify_secret_from_the_environment(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "people.csv")
    async with run_receiver(SECRET) as receiver:
        done = await asyncio.to_thread(
            import_cli, str(csv), "--collection", "people", "--url", live.url,
            "--key", tenant_key.key, "--notify-url", receiver.url,
            env={"BATCHOPS_NOTIFY_SECRET": SECRET},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        await receiver.wait_accepted(1)
    assert receiver.rejected == 0


@pytest.mark.slow
def test_import_cli_refuses_a_notify_url_without_a_secret_before_uploading(
    tmp_path: Path,
) -> None:
    csv = write_csv(tmp_path / "people.csv")
    # Port 9 (discard): were anything sent, the error would be a connection failure.
    done = import_cli(
        str(csv), "--collection", "people", "--url", "http://127.0.0.1:9", "--key", "k",
        "--notify-url", "https://hooks.example.com/x",
    )  # fmt: skip
    assert done.returncode == 2
    assert b"--notify-url needs a signing secret" in done.stderr
    assert b"BATCHOPS_NOTIFY_SECRET" in done.stderr


@pytest.mark.slow
async def test_import_cli_reports_a_webhook_the_server_refuses_in_one_line_and_exits_3(
    live: Live, tenant_key: Tenant, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "people.csv")
    # No allow_private_webhooks here: a loopback target is refused with a 422.
    done = await asyncio.to_thread(
        import_cli, str(csv), "--collection", "people", "--url", live.url,
        "--key", tenant_key.key, "--notify-url", "http://127.0.0.1:9/hook",
        "--notify-secret", SECRET,
    )  # fmt: skip
    assert done.returncode == 3  # an API error (docs/cli.md, "Errors and exit codes")
    assert done.stderr.startswith(b"batchops import: error WEBHOOK_TARGET_NOT_ALLOWED: ")
    assert done.stderr.count(b"\n") == 1
    assert b"Traceback" not in done.stderr
