"""The jobs console over HTTP (no browser): sign-in and its cookie, the cross-site check,
tenant isolation, each page and action and their errors, on both backends."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from batchops.server import _ids
from batchops.server.console.router import CSP, PAGE_SIZE
from batchops.server.console.session import COOKIE
from batchops.server.imports.options import ImportOptions
from batchops.store.base import JobRow, Tx, WebhookDeliveryRow, WebhookRow
from tests.jobs.conftest import upload, wait_done
from tests.server.conftest import Service
from tests.server.console.conftest import ORIGIN, browser_client, sign_in

CSV_ONE_BAD = b"name,age\nAda,36\nBob,not-a-number\nCy,41\n"
MAPPING = '{"name": {"field": "name"}, "age": {"field": "age", "type": "int"}}'

queued_only = pytest.mark.limits(role="api")  # no job runner: jobs stay queued


def set_cookie_header(answer: httpx.Response) -> str:
    found = [v for k, v in answer.headers.multi_items() if k == "set-cookie"]
    assert len(found) == 1, found
    return found[0]


async def queued_job(service: Service, tenant: str | None = None) -> JobRow:
    """A queued import job of ``tenant`` (default: the service's), written to the store."""
    job = JobRow(
        id=_ids.new_record_id(),
        tenant=tenant or service.tenant,
        type="import",
        state="queued",
        collection="people",
        options=ImportOptions(format="csv").to_dict(),
        created_at=_ids.now_iso(),
        revision=1,
    )
    await service.store.run(lambda tx: tx.insert_job(job))
    return job


async def import_with_one_bad_row(service: Service) -> dict[str, Any]:
    """A finished lenient import with one failed row (through the REST API)."""
    answer = await upload(
        service.client, CSV_ONE_BAD, collection="people", validation="lenient", mapping=MAPPING
    )
    assert answer.status_code == 202, answer.text
    return await wait_done(service.client, answer.json()["id"])


# -- sign-in, the cookie, sign-out ---------------------------------------------------------------


async def test_signing_in_with_a_live_key_sets_an_httponly_strict_session_cookie(
    service: Service,
) -> None:
    async with browser_client(service) as client:
        answer = await sign_in(client, service.key)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/jobs"
    cookie = set_cookie_header(answer).lower()
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    assert "secure" not in cookie  # plain http: a Secure cookie would never come back
    assert "max-age" not in cookie  # a browser-session cookie


async def test_the_session_cookie_is_secure_when_the_console_is_served_over_https(
    service: Service,
) -> None:
    async with browser_client(service, base_url="https://test") as client:
        answer = await sign_in(client, service.key)
    assert answer.status_code == 303
    assert "secure" in set_cookie_header(answer).lower()


async def test_signing_in_with_an_unknown_key_is_refused_and_sets_no_cookie(
    service: Service,
) -> None:
    async with browser_client(service) as client:
        answer = await sign_in(client, "bo_nope_not-a-key")
    assert answer.status_code == 401
    assert "unknown or revoked" in answer.text
    assert "set-cookie" not in answer.headers


async def test_a_page_asked_for_without_a_session_redirects_to_the_sign_in_page(
    service: Service,
) -> None:
    async with browser_client(service) as client:
        answer = await client.get("/console/jobs")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


async def test_an_api_key_header_does_not_open_the_console(service: Service) -> None:
    # The console reads its session cookie only: a page is never answered to a header key.
    answer = await service.client.get("/console/jobs")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


async def test_a_revoked_key_signs_the_console_out_on_its_next_request(
    service: Service, console: httpx.AsyncClient
) -> None:
    key_id = service.key.split("_")[1]
    await service.store.run(lambda tx: tx.revoke_api_key(key_id, _ids.now_iso()))
    service.app.state.services.authenticator._cache.clear()  # what its TTL does in time
    answer = await console.get("/console/jobs")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    assert f'{COOKIE}=""' in set_cookie_header(answer)  # the cookie is expired


async def test_signing_out_expires_the_cookie(console: httpx.AsyncClient) -> None:
    answer = await console.post("/console/logout")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    assert "max-age=0" in set_cookie_header(answer).lower()
    assert (await console.get("/console/jobs")).headers["location"] == "/console/login"


# -- cross-site requests ----------------------------------------------------------------------


@queued_only
async def test_a_form_posted_from_another_site_is_refused(
    service: Service, console: httpx.AsyncClient
) -> None:
    job = await queued_job(service)
    answer = await console.post(
        f"/console/jobs/{job.id}/cancel", headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert "CROSS_SITE_REQUEST" in answer.text
    still = await service.client.get(f"/v1/jobs/{job.id}")
    assert still.json()["state"] == "queued"
    assert still.json()["cancel_requested"] is False


@queued_only
async def test_a_form_post_naming_no_origin_and_no_referer_is_refused(
    service: Service, console: httpx.AsyncClient
) -> None:
    job = await queued_job(service)
    del console.headers["Origin"]
    answer = await console.post(f"/console/jobs/{job.id}/cancel")
    assert answer.status_code == 403


@queued_only
async def test_a_form_post_with_a_same_origin_referer_and_no_origin_is_accepted(
    service: Service, console: httpx.AsyncClient
) -> None:
    job = await queued_job(service)
    del console.headers["Origin"]
    answer = await console.post(
        f"/console/jobs/{job.id}/cancel", headers={"Referer": f"{ORIGIN}/console/jobs/{job.id}"}
    )
    assert answer.status_code == 303


async def test_a_sign_in_posted_from_another_site_is_refused(service: Service) -> None:
    # A forged sign-in would put the victim's browser in the attacker's tenant.
    async with browser_client(service) as client:
        answer = await client.post(
            "/console/login", data={"key": service.key}, headers={"Origin": "https://evil.example"}
        )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


# -- headers and what a page holds --------------------------------------------------------------


async def test_console_pages_carry_a_strict_content_security_policy(
    console: httpx.AsyncClient,
) -> None:
    for path in ("/console/jobs", "/console/imports/new", "/console/collections", "/console/login"):
        answer = await console.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP
        assert "unsafe-inline" not in CSP
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"


async def test_no_page_holds_the_key_or_an_inline_script(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    for path in ("/console/jobs", f"/console/jobs/{done['id']}", "/console/collections"):
        html = (await console.get(path)).text
        assert service.key not in html
        assert service.key.split("_", 2)[2] not in html  # not even the secret part
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path


async def test_console_routes_are_not_in_the_openapi_document(service: Service) -> None:
    paths = (await service.client.get("/openapi.json")).json()["paths"]
    assert [p for p in paths if p.startswith("/console")] == []


async def test_the_static_files_are_served_and_nothing_else_of_the_package(
    console: httpx.AsyncClient,
) -> None:
    js = await console.get("/console/static/console.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert (await console.get("/console/static/router.py")).status_code == 404
    assert (await console.get("/console/static/..%2Frouter.py")).status_code == 404


# -- the jobs list ------------------------------------------------------------------------------


@queued_only
async def test_the_jobs_list_shows_the_tenants_jobs_and_never_another_tenants(
    service: Service, console: httpx.AsyncClient
) -> None:
    mine = await queued_job(service)
    theirs = await queued_job(service, tenant=f"{service.tenant}_other")
    html = (await console.get("/console/jobs")).text
    assert f"/console/jobs/{mine.id}" in html
    assert theirs.id not in html


@queued_only
async def test_the_jobs_list_filters_by_state_and_type(
    service: Service, console: httpx.AsyncClient
) -> None:
    queued = await queued_job(service)
    cancelled = await queued_job(service)
    assert (await console.post(f"/console/jobs/{cancelled.id}/cancel")).status_code == 303
    html = (await console.get("/console/jobs", params={"state": "cancelled"})).text
    assert cancelled.id in html
    assert queued.id not in html
    html = (await console.get("/console/jobs", params={"type": "bulk_update"})).text
    assert cancelled.id not in html
    assert queued.id not in html


async def test_an_unknown_state_filter_is_a_422_page(console: httpx.AsyncClient) -> None:
    answer = await console.get("/console/jobs", params={"state": "exploded"})
    assert answer.status_code == 422
    assert "state" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


async def test_a_cursor_the_console_did_not_hand_out_is_a_400_page(
    console: httpx.AsyncClient,
) -> None:
    answer = await console.get("/console/jobs", params={"cursor": "not-a-cursor"})
    assert answer.status_code == 400


@queued_only
async def test_the_jobs_list_pages_through_every_job_once(
    service: Service, console: httpx.AsyncClient
) -> None:
    made = {(await queued_job(service)).id for _ in range(PAGE_SIZE + 3)}
    seen: list[str] = []
    url: str | None = "/console/jobs"
    while url is not None:
        html = (await console.get(url)).text
        seen += re.findall(r'data-job-row="([^"]+)"', html)
        found = re.search(r'href="([^"]+)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert sorted(seen) == sorted(made)


# -- a job's page, its events and downloads ----------------------------------------------------


async def test_a_jobs_page_shows_its_summary_and_first_failures(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    html = (await console.get(f"/console/jobs/{done['id']}")).text
    assert done["state"] == "succeeded"
    assert done["failed"] == 1
    assert "Bob,not-a-number" in html
    assert f"/console/jobs/{done['id']}/failures.csv" in html
    assert 'value="100.0"' in html  # the bar


@queued_only
async def test_another_tenants_job_is_a_404_on_every_console_route(
    service: Service, console: httpx.AsyncClient
) -> None:
    theirs = await queued_job(service, tenant=f"{service.tenant}_other")
    for path in ("", "/events", "/failures.csv"):
        answer = await console.get(f"/console/jobs/{theirs.id}{path}")
        assert answer.status_code == 404, path
        assert "JOB_NOT_FOUND" in answer.text
    assert (await console.post(f"/console/jobs/{theirs.id}/cancel")).status_code == 404
    assert (await service.client.get(f"/v1/jobs/{theirs.id}")).status_code == 404
    owner = await service.client_for(f"{service.tenant}_other")
    assert (await owner.get(f"/v1/jobs/{theirs.id}")).json()["state"] == "queued"  # untouched


async def test_the_failures_download_holds_every_failure_as_csv_or_ndjson(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    csv_answer = await console.get(f"/console/jobs/{done['id']}/failures.csv")
    assert csv_answer.status_code == 200
    assert csv_answer.headers["content-disposition"] == (
        f'attachment; filename="failures-{done["id"]}.csv"'
    )
    lines = csv_answer.text.splitlines()
    assert lines[0] == "row,code,message,input"
    assert lines[1].startswith("2,")
    assert "Bob,not-a-number" in lines[1]
    assert len(lines) == 2
    api = await service.client.get(f"/v1/jobs/{done['id']}/failures", params={"format": "ndjson"})
    ndjson = await console.get(f"/console/jobs/{done['id']}/failures.ndjson")
    assert ndjson.content == api.content


async def test_a_failures_download_in_an_unknown_format_is_a_404(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    assert (await console.get(f"/console/jobs/{done['id']}/failures.xlsx")).status_code == 404


async def test_the_events_of_a_finished_job_are_its_complete_snapshot(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    answer = await console.get(f"/console/jobs/{done['id']}/events")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "event: complete" in answer.text
    assert '"percentage":100.0' in answer.text


async def test_the_events_without_a_session_are_a_401_not_a_redirect(service: Service) -> None:
    async with browser_client(service) as client:
        answer = await client.get(f"/console/jobs/{_ids.new_record_id()}/events")
    assert answer.status_code == 401


@queued_only
async def test_a_jobs_page_shows_its_webhook_deliveries(
    service: Service, console: httpx.AsyncClient
) -> None:
    job = await queued_job(service)
    hook = WebhookRow(
        id=_ids.new_record_id(),
        tenant=service.tenant,
        url="https://hooks.example/jobs",
        events=["job.succeeded"],
        secret="s" * 32,
        created_at=_ids.now_iso(),
        job_id=job.id,
    )
    delivery = WebhookDeliveryRow(
        id=_ids.new_record_id(),
        tenant=service.tenant,
        webhook_id=hook.id,
        job_id=job.id,
        event="job.succeeded",
        url=hook.url,
        payload="{}",
        state="pending",
        created_at=_ids.now_iso(),
        next_attempt_at=0.0,
    )

    def insert(tx: Tx) -> None:
        tx.insert_webhook(hook)
        tx.insert_webhook_deliveries([delivery])

    await service.store.run(insert)
    html = (await console.get(f"/console/jobs/{job.id}")).text
    assert "https://hooks.example/jobs" in html
    assert "job.succeeded" in html


# -- cancel -------------------------------------------------------------------------------------


@queued_only
async def test_cancelling_a_queued_job_cancels_it_and_shows_it(
    service: Service, console: httpx.AsyncClient
) -> None:
    job = await queued_job(service)
    answer = await console.post(f"/console/jobs/{job.id}/cancel")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/jobs/{job.id}"
    assert (await service.client.get(f"/v1/jobs/{job.id}")).json()["state"] == "cancelled"


async def test_cancelling_a_finished_job_is_a_409_page(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    answer = await console.post(f"/console/jobs/{done['id']}/cancel")
    assert answer.status_code == 409
    assert "JOB_FINISHED" in answer.text


# -- upload -------------------------------------------------------------------------------------


async def test_uploading_a_file_starts_an_import_with_the_forms_options(
    service: Service, console: httpx.AsyncClient
) -> None:
    form = {
        "collection": "people",
        "format": "",
        "validation": "lenient",
        "mapping": MAPPING,
        "upsert_key": "",
        "chunk_size": "",
    }
    answer = await console.post(
        "/console/imports",
        data=form,
        files={"file": ("people.csv", CSV_ONE_BAD, "text/csv")},
    )
    assert answer.status_code == 303, answer.text
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    done = await wait_done(service.client, job_id)
    assert (done["state"], done["succeeded"], done["failed"]) == ("succeeded", 2, 1)
    assert done["options"]["validation"] == "lenient"
    assert done["options"]["format"] == "csv"  # from the file's name and type


async def test_an_upload_with_a_bad_option_shows_the_form_again_with_the_reason(
    console: httpx.AsyncClient,
) -> None:
    answer = await console.post(
        "/console/imports",
        data={"collection": "people", "chunk_size": "zero"},
        files={"file": ("people.csv", CSV_ONE_BAD, "text/csv")},
    )
    assert answer.status_code == 422
    assert "chunk_size" in answer.text
    assert 'action="/console/imports"' in answer.text


async def test_an_upload_without_a_file_is_refused_with_the_reason(
    console: httpx.AsyncClient,
) -> None:
    answer = await console.post(
        "/console/imports",
        data={"collection": "people"},
        files={"file": ("", b"", "application/octet-stream")},
    )
    assert 400 <= answer.status_code < 500
    assert 'class="error"' in answer.text


# -- collections --------------------------------------------------------------------------------


async def test_the_collections_page_counts_each_collections_live_records(
    service: Service, console: httpx.AsyncClient
) -> None:
    for collection, n in (("people", 3), ("teams", 1)):
        for i in range(n):
            created = await service.client.post(
                f"/v1/collections/{collection}/records", json={"data": {"i": i}}
            )
            assert created.status_code == 201
    deleted = await service.client.post("/v1/collections/gone/records", json={"data": {}})
    await service.client.delete(f"/v1/collections/gone/records/{deleted.json()['id']}")
    other = await service.client_for(f"{service.tenant}_other")
    await other.post("/v1/collections/secret/records", json={"data": {}})
    html = (await console.get("/console/collections")).text
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([^<]+)</td></tr>", html)
    assert rows == [("people", "3"), ("teams", "1")]


# -- retry failed rows --------------------------------------------------------------------------


async def test_retrying_failed_rows_starts_a_new_import_of_just_those_rows(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    page = (await console.get(f"/console/jobs/{done['id']}")).text
    assert f'action="/console/jobs/{done["id"]}/retry-failures"' in page
    answer = await console.post(f"/console/jobs/{done['id']}/retry-failures")
    assert answer.status_code == 303
    retry_id = answer.headers["location"].rsplit("/", 1)[1]
    assert retry_id != done["id"]
    retried = await wait_done(service.client, retry_id)
    assert retried["options"]["retry_of"] == done["id"]
    assert (retried["total"], retried["succeeded"], retried["failed"]) == (1, 0, 1)
    assert f"/console/jobs/{done['id']}" in (await console.get(f"/console/jobs/{retry_id}")).text


async def test_retrying_a_job_without_failures_is_a_409_page(
    service: Service, console: httpx.AsyncClient
) -> None:
    answer = await upload(service.client, b"name\nAda\n", collection="people")
    done = await wait_done(service.client, answer.json()["id"])
    assert "retry-failures" not in (await console.get(f"/console/jobs/{done['id']}")).text
    refused = await console.post(f"/console/jobs/{done['id']}/retry-failures")
    assert refused.status_code == 409
    assert "NO_FAILURES" in refused.text


@queued_only
async def test_retrying_another_tenants_job_is_a_404(
    service: Service, console: httpx.AsyncClient
) -> None:
    theirs = await queued_job(service, tenant=f"{service.tenant}_other")
    answer = await console.post(f"/console/jobs/{theirs.id}/retry-failures")
    assert answer.status_code == 404


async def test_retrying_from_another_site_is_refused(
    service: Service, console: httpx.AsyncClient
) -> None:
    done = await import_with_one_bad_row(service)
    answer = await console.post(
        f"/console/jobs/{done['id']}/retry-failures", headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    jobs = (await service.client.get("/v1/jobs")).json()["jobs"]
    assert [job["id"] for job in jobs] == [done["id"]]


@pytest.mark.limits(rate_limit_requests_per_minute=2)
async def test_console_pages_count_against_the_keys_request_budget(
    console: httpx.AsyncClient,
) -> None:
    assert (await console.get("/console/jobs")).status_code == 200
    assert (await console.get("/console/collections")).status_code == 200
    refused = await console.get("/console/jobs")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"].startswith("text/html")
