"""The SSRF guard against IPv6 forms that embed an IPv4 address (IPv4-compatible, NAT64,
6to4, Teredo, …): judged by the IPv4 they embed, at registration and at delivery."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from batchops.server.webhooks.targets import PublicResolver, is_public
from tests.jobs.conftest import Service

SECRET = "s3cret-s3cret-s3cret"
ASYNC = {"Prefer": "respond-async"}

# Teredo: 2001:0:<server>:<flags>:<port ^ 0xffff>:<client ^ 0xffffffff>.
TEREDO_PUBLIC_SERVER_LOOPBACK_CLIENT = "2001:0:808:808:0:0:80ff:fffe"  # 8.8.8.8, 127.0.0.1
TEREDO_PUBLIC_SERVER_AND_CLIENT = "2001:0:808:808:0:0:f7f7:f7f7"  # 8.8.8.8, 8.8.8.8

NON_PUBLIC_EMBEDDINGS = [
    pytest.param("::127.0.0.1", "127.0.0.1", "loopback", id="ipv4-compatible-loopback"),
    pytest.param("::10.0.0.1", "10.0.0.1", "private", id="ipv4-compatible-private"),
    pytest.param("64:ff9b::7f00:1", "127.0.0.1", "loopback", id="nat64-loopback"),
    pytest.param("64:ff9b::a9fe:a9fe", "169.254.169.254", "link-local", id="nat64-metadata"),
    pytest.param("2002:7f00:1::", "127.0.0.1", "loopback", id="6to4-loopback"),
    pytest.param("2002:a9fe:a9fe::", "169.254.169.254", "link-local", id="6to4-metadata"),
    pytest.param(TEREDO_PUBLIC_SERVER_LOOPBACK_CLIENT, "127.0.0.1", "loopback", id="teredo-client"),
    pytest.param("2001:0:a00:1::f7f7:f7f7", "10.0.0.1", "private", id="teredo-server"),
    pytest.param("::ffff:0:7f00:1", "127.0.0.1", "loopback", id="ipv4-translated-loopback"),
]


@pytest.mark.parametrize(("address", "embedded", "kind"), NON_PUBLIC_EMBEDDINGS)
def test_an_ipv6_address_that_embeds_a_non_public_ipv4_is_not_public(
    address: str, embedded: str, kind: str
) -> None:
    assert is_public(address) is False


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("64:ff9b:1::808:808", id="local-use-nat64-of-a-public-ipv4"),
        pytest.param("64:ff9b:1:7f00:0:100::", id="local-use-nat64-of-loopback-at-bit-48"),
        pytest.param(TEREDO_PUBLIC_SERVER_AND_CLIENT, id="teredo-of-public-ipv4s"),
    ],
)
def test_a_local_use_nat64_or_teredo_address_is_never_public(address: str) -> None:
    assert is_public(address) is False


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("2606:4700:4700::1111", id="plain-global-ipv6"),
        pytest.param("64:ff9b::808:808", id="nat64-of-8.8.8.8"),
        pytest.param("2002:808:808::", id="6to4-of-8.8.8.8"),
        pytest.param("::ffff:8.8.8.8", id="ipv4-mapped-8.8.8.8"),
    ],
)
def test_an_ipv6_address_that_embeds_a_public_ipv4_stays_public(address: str) -> None:
    assert is_public(address) is True


@pytest.mark.parametrize("address", ["::", "::1"])
def test_the_unspecified_and_loopback_ipv6_addresses_stay_not_public(address: str) -> None:
    assert is_public(address) is False


# -- registration: POST /v1/webhooks and a job's notification_webhook ---------------------


@pytest.mark.parametrize(("address", "embedded", "kind"), NON_PUBLIC_EMBEDDINGS)
async def test_a_webhook_whose_ipv6_target_embeds_a_non_public_ipv4_is_refused_naming_it(
    service: Service, address: str, embedded: str, kind: str
) -> None:
    assert service.settings.allow_private_webhooks is False
    answer = await service.client.post("/v1/webhooks", json={"url": f"http://[{address}]/hook"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert error["details"]["path"] == "url"
    assert f"embeds {embedded}, a {kind} address" in error["message"]
    assert (await service.client.get("/v1/webhooks")).json() == {"webhooks": []}


@pytest.mark.parametrize(
    "address", ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "::127.0.0.1", "64:ff9b:1::7f00:1"]
)
async def test_an_async_batch_whose_webhook_embeds_a_non_public_ipv4_is_refused(
    service: Service, address: str
) -> None:
    hook = {"url": f"http://[{address}]/hook", "secret": SECRET}
    ops = [{"type": "create", "collection": "people", "data": {"n": 1}}]
    answer = await service.client.post(
        "/v1/batch", json={"operations": ops, "notification_webhook": hook}, headers=ASYNC
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert error["details"]["path"] == "notification_webhook.url"
    assert (await service.client.get("/v1/jobs")).json() == {"jobs": [], "next_cursor": None}


BAD_HOST_NAMES = [
    pytest.param("a" * 64 + ".example.com", id="label-over-63-characters"),
    pytest.param("a..example.com", id="empty-label"),
    pytest.param(".", id="only-a-dot"),
]


@pytest.mark.parametrize("host", BAD_HOST_NAMES)
async def test_a_webhook_whose_host_name_cannot_be_encoded_is_a_422_naming_the_url(
    service: Service, host: str
) -> None:
    # Found by tests/fuzz: getaddrinfo raised UnicodeError (IDNA) here, and answered 500.
    answer = await service.client.post("/v1/webhooks", json={"url": f"https://{host}/hook"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["path"] == "url"


@pytest.mark.parametrize("host", BAD_HOST_NAMES)
async def test_a_notification_webhook_whose_host_name_cannot_be_encoded_is_a_422(
    service: Service, host: str
) -> None:
    hook = {"url": f"https://{host}/hook", "secret": SECRET}
    for url, body, headers in [
        ("/v1/bulk/delete", {"collection": "c", "filter": {}, "notification_webhook": hook}, {}),
        (
            "/v1/batch",
            {
                "operations": [{"type": "read", "collection": "c", "id": "x"}],
                "notification_webhook": hook,
            },
            ASYNC,
        ),
    ]:
        answer = await service.client.post(url, json=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["details"]["path"] == "notification_webhook.url"
    assert (await service.client.get("/v1/jobs")).json() == {"jobs": [], "next_cursor": None}


async def test_a_webhook_whose_ipv6_target_embeds_a_public_ipv4_is_registered(
    service: Service,
) -> None:
    answer = await service.client.post("/v1/webhooks", json={"url": "http://[64:ff9b::808:808]/h"})
    assert answer.status_code == 201, answer.text


# -- delivery: the resolver the HTTP client connects through -------------------------------


def _answers(monkeypatch: pytest.MonkeyPatch, addresses: list[str]) -> None:
    """Make every DNS look-up of aiohttp's threaded resolver answer ``addresses``."""

    async def resolve(
        self: ThreadedResolver, host: str, port: int = 0, family: Any = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    monkeypatch.setattr(ThreadedResolver, "resolve", resolve)


async def test_delivery_refuses_a_host_that_resolves_only_to_ipv6_embedding_non_public_ipv4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _answers(monkeypatch, ["64:ff9b::a9fe:a9fe", "2002:7f00:1::", "::127.0.0.1"])
    with pytest.raises(OSError, match="resolves to no public address"):
        await PublicResolver().resolve("hooks.example.com", 443, socket.AF_UNSPEC)


async def test_delivery_connects_only_to_the_addresses_that_embed_no_non_public_ipv4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _answers(monkeypatch, ["64:ff9b::7f00:1", "2606:4700:4700::1111", "2002:a9fe:a9fe::"])
    kept = await PublicResolver().resolve("hooks.example.com", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in kept] == ["2606:4700:4700::1111"]
