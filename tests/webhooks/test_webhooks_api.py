"""/v1/webhooks subscriptions and the SSRF rule, in process, on both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.jobs.conftest import BAD_LIMITS, Service, limit_error, upload

PUBLIC = "http://93.184.215.14/hook"  # a literal public address: no DNS in tests
SECRET = "s3cret-s3cret-s3cret"


@pytest.mark.limits(allow_private_webhooks=True)
async def test_a_subscription_shows_its_generated_secret_once_and_can_be_deleted(
    service: Service,
) -> None:
    created = await service.client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) > 40
    assert body["events"] == ["job.succeeded", "job.failed", "job.cancelled"]
    assert created.headers["location"] == f"/v1/webhooks/{body['id']}"
    chosen = await service.client.post(
        "/v1/webhooks",
        json={"url": PUBLIC, "events": ["job.failed"], "secret": SECRET},
    )
    assert chosen.json()["secret"] == SECRET
    listed = (await service.client.get("/v1/webhooks")).json()["webhooks"]
    assert [w["id"] for w in listed] == [body["id"], chosen.json()["id"]]
    assert all("secret" not in w for w in listed)
    one = await service.client.get(f"/v1/webhooks/{body['id']}")
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert (await service.client.delete(f"/v1/webhooks/{body['id']}")).status_code == 204
    gone = await service.client.get(f"/v1/webhooks/{body['id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "WEBHOOK_NOT_FOUND"
    assert (await service.client.delete(f"/v1/webhooks/{body['id']}")).status_code == 404
    listed = (await service.client.get("/v1/webhooks")).json()["webhooks"]
    assert [w["id"] for w in listed] == [chosen.json()["id"]]


async def test_subscriptions_are_invisible_to_other_tenants(service: Service) -> None:
    created = await service.client.post("/v1/webhooks", json={"url": PUBLIC})
    webhook_id = created.json()["id"]
    other = await service.client_for(f"{service.tenant}_other")
    assert (await other.get("/v1/webhooks")).json() == {"webhooks": []}
    for answer in (
        await other.get(f"/v1/webhooks/{webhook_id}"),
        await other.get(f"/v1/webhooks/{webhook_id}/deliveries"),
        await other.delete(f"/v1/webhooks/{webhook_id}"),
    ):
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "WEBHOOK_NOT_FOUND"
    mine = (await service.client.get("/v1/webhooks")).json()["webhooks"]
    assert [w["id"] for w in mine] == [webhook_id]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "non-public"),
    ],
)
async def test_non_public_targets_are_refused_without_the_allow_option(
    service: Service, url: str, kind: str
) -> None:
    answer = await service.client.post("/v1/webhooks", json={"url": url})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert kind in error["message"]
    assert "--allow-private-webhooks" in error["message"]
    assert error["details"]["path"] == "url"
    assert (await service.client.get("/v1/webhooks")).json() == {"webhooks": []}


async def test_an_import_with_a_private_notification_webhook_is_refused_and_creates_no_job(
    service: Service,
) -> None:
    hook = {"url": "http://127.0.0.1:9/hook", "secret": SECRET}
    answer = await upload(
        service.client, b"a\n1\n", collection="c", notification_webhook=json.dumps(hook)
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert answer.json()["error"]["details"]["path"] == "notification_webhook.url"
    assert (await service.client.get("/v1/jobs")).json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"url": "ftp://example.org/x"}, "url"),
        ({"url": "/relative"}, "url"),
        ({}, "url"),
        ({"url": PUBLIC, "events": []}, "events"),
        ({"url": PUBLIC, "events": ["job.exploded"]}, "events"),
        ({"url": PUBLIC, "secret": "short"}, "secret"),
        # Found by schemathesis (tests/contract): stored as is on SQLite, refused by
        # PostgreSQL as a 422 INVALID_VALUE naming nothing.
        ({"url": PUBLIC, "secret": "s3cret-s3cret-\x00-s3cret"}, "secret"),
        ({"url": PUBLIC, "colour": "red"}, "colour"),
        (["not", "an", "object"], ""),
    ],
)
async def test_bad_subscriptions_are_422_naming_the_field(
    service: Service, body: Any, path: str
) -> None:
    answer = await service.client.post("/v1/webhooks", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["path"] == path


@pytest.mark.limits(allow_private_webhooks=True)
@pytest.mark.parametrize(
    "url",
    ["http://host*/h", "http://a b/h", "http://h/\x01", "https://é.example/", "http://[::1/"],
)
async def test_a_malformed_url_is_a_422_even_where_private_targets_are_allowed(
    service: Service, url: str
) -> None:
    # Found by schemathesis (tests/contract): with private targets allowed no DNS lookup
    # refused them, so whatever urlsplit took was stored as a webhook.
    answer = await service.client.post("/v1/webhooks", json={"url": url})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["path"] == "url"


@pytest.mark.limits(allow_private_webhooks=True)
@pytest.mark.parametrize(
    "url",
    [
        "http://user:pass@localhost:8080/hook?x=1#f",
        "HTTP://127.0.0.1",
        "http://[::ffff:127.0.0.1]/hook",
        "https://xn--mnchen-3ya.example/",
        "http://my_service/hook",
    ],
)
async def test_a_well_formed_url_is_taken_where_private_targets_are_allowed(
    service: Service, url: str
) -> None:
    answer = await service.client.post("/v1/webhooks", json={"url": url})
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    ("hook", "path"),
    [
        ("{nope", "notification_webhook"),
        (json.dumps({"url": PUBLIC}), "notification_webhook.secret"),
        (json.dumps({"url": "mailto:a@b", "secret": SECRET}), "notification_webhook.url"),
        (
            json.dumps({"url": PUBLIC, "secret": SECRET, "events": "x"}),
            "notification_webhook.events",
        ),
    ],
)
async def test_a_bad_notification_webhook_is_422_naming_the_field(
    service: Service, hook: str, path: str
) -> None:
    answer = await upload(service.client, b"a\n1\n", collection="c", notification_webhook=hook)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["path"] == path


async def test_deliveries_of_an_unknown_job_are_404(service: Service) -> None:
    answer = await service.client.get("/v1/jobs/nope/deliveries")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "JOB_NOT_FOUND"


@pytest.mark.limits(allow_private_webhooks=True)
@pytest.mark.parametrize("limit", BAD_LIMITS, ids=repr)
async def test_a_deliveries_limit_no_list_takes_is_the_records_lists_422(
    service: Service, limit: str
) -> None:
    # One rule for every list's page size (the records list's), judged before the id.
    created = await service.client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"})
    webhook_id = created.json()["id"]
    expected = await limit_error(service.client, "/v1/collections/people/records", limit)
    assert expected[0] == 422
    assert (expected[1]["code"], expected[1]["details"]["path"]) == ("VALIDATION_ERROR", "limit")
    for path in (f"/v1/webhooks/{webhook_id}/deliveries", "/v1/webhooks/nope/deliveries"):
        assert await limit_error(service.client, path, limit) == expected, path


@pytest.mark.limits(allow_private_webhooks=True)
async def test_a_webhooks_deliveries_take_a_page_size_from_1_to_1000(service: Service) -> None:
    created = await service.client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"})
    path = f"/v1/webhooks/{created.json()['id']}/deliveries"
    for limit in ("1", "1000", None):
        response = await service.client.get(path, params={} if limit is None else {"limit": limit})
        assert response.json() == {"deliveries": []}, response.text
