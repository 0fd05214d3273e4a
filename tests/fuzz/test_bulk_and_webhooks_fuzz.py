"""Fuzzing ``POST /v1/bulk/update``, ``POST /v1/bulk/delete`` and the webhook routes.

Bulk requests run inline or as jobs (the inline maximum is lowered to 5 here so that most
selections become jobs); a job must end ``succeeded`` or ``failed`` with a specific code,
and its results must be JSON. Webhook targets are never reached: the machine has no DNS,
so a host name is ``WEBHOOK_TARGET_UNRESOLVABLE`` and an address is judged as it is.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import examples
from tests.fuzz.harness import JSON, Answer, Fuzzer
from tests.fuzz.strategies import (
    Raw,
    dumps,
    extreme_shapes,
    hostile_body,
    hostile_query_values,
    hostile_segments,
    hostile_values,
)

PEOPLE = "/v1/collections/people/records"
NOTIFY = {
    "url": "https://hooks.example.com/batchops",
    "events": ["job.succeeded", "job.failed"],
    "secret": "0123456789abcdef0123",
}
UPDATE = {
    "collection": "people",
    "filter": {"profile.team": "core", "age": 36},
    "update": {"status": "seen", "profile": {"city": None}},
    "dry_run": False,
    "limit": 10,
    "chunk_size": 3,
}
DELETE_IDS = {
    "collection": "people",
    "ids": ["p1", "p2", "p3", "nope"],
    "soft": True,
    "dry_run": True,
    "limit": 5,
    "chunk_size": 2,
}
DELETE_FILTER = {"collection": "people", "filter": {"age": 36}, "soft": True, "dry_run": True}
BULK = [
    ("/v1/bulk/update", UPDATE),
    ("/v1/bulk/update", {**UPDATE, "notification_webhook": NOTIFY}),
    ("/v1/bulk/delete", DELETE_IDS),
    ("/v1/bulk/delete", DELETE_FILTER),
    ("/v1/bulk/delete", {**DELETE_FILTER, "notification_webhook": NOTIFY}),
]


async def seed(fuzzer: Fuzzer, count: int = 20) -> None:
    """``count`` records ``p1``… of team ``core``, aged 36."""
    operations = [
        {
            "type": "create",
            "collection": "people",
            "id": f"p{i}",
            "data": {"age": 36, "profile": {"team": "core", "city": "Paris"}, "n": i},
        }
        for i in range(1, count + 1)
    ]
    response = await fuzzer.client.post("/v1/batch", json={"operations": operations})
    assert response.status_code == 200, response.text


def check_bulk(fuzzer: Fuzzer, answer: Answer) -> None:
    """Inline: the plain rule. A job: it ends ``succeeded`` or ``failed`` with a
    specific code, and its results are JSON."""
    body = fuzzer.check(answer)
    if answer.status != 202:
        return
    assert isinstance(body, dict), str(answer)
    job = fuzzer.wait_job(body["id"])
    fuzzer.check_job_end(job)
    results = fuzzer.send("GET", f"/v1/jobs/{body['id']}/results")
    fuzzer.check(results)
    if results.status == 200:
        results.json()  # streamed: must still be one JSON document


def bulk_values() -> st.SearchStrategy[Any]:
    """Replacements for a bulk body: filters of 1,000 paths, 10,001 ids, ..."""
    return st.one_of(hostile_values(), extreme_shapes())


@pytest.mark.limits(bulk_inline_max=5)
async def test_hostile_bulk_requests_are_answered_or_end_as_jobs_without_internal_errors(
    fuzzer: Fuzzer,
) -> None:
    await seed(fuzzer)
    requests = st.sampled_from(BULK).flatmap(
        lambda r: st.tuples(st.just(r[0]), hostile_body(r[1], bulk_values()))
    )

    @examples(250)
    @given(request=requests)
    def example(request: tuple[str, bytes]) -> None:
        url, body = request
        check_bulk(fuzzer, fuzzer.send("POST", url, content=body, headers=JSON))

    await fuzzer.run(example)


WEBHOOK = {
    "url": "https://hooks.example.com/batchops",
    "events": ["job.succeeded", "job.failed", "job.cancelled"],
    "secret": "0123456789abcdef",
}
URLS = (
    "https://" + "a" * 64 + ".example.com/",  # a DNS label over 63 characters
    "https://a..b/",
    "https://./",
    "https://" + "a." * 130 + "com/",
    "https://é.example/",
    "https://xn--/",
    "https://a%00b/",
    "https://a b/",
    "http://127.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://169.254.169.254/latest",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://0/",
    "http://[v1.x]/",
    "http://[::1/",
    "http://h:65536/",
    "http://h:-1/",
    "http://user:pass@h:0/",
    "ftp://example.com/",
    "javascript:alert(1)",
    "http://",
    "//example.com/",
    "https://example.com/" + "p" * 3000,
)


@st.composite
def built_urls(draw: st.DrawFn) -> str:
    """A URL put together from hostile parts: scheme, user info, host labels (long, empty,
    non-ASCII, numeric), IP literals, port and path."""
    scheme = draw(st.sampled_from(("https", "http", "HTTP", "ftp", "", "https:")))
    label = st.one_of(
        st.sampled_from(("a", "", "a" * 63, "a" * 64, "xn--", "é", "-a", "a-", "0", "*")),
        st.text(max_size=6),
    )
    host = draw(
        st.one_of(
            st.lists(label, min_size=1, max_size=4).map(".".join),
            st.sampled_from(("127.1", "[::1]", "[fe80::1%25eth0]", "10.0.0.1", "1.1.1.1.1")),
        )
    )
    userinfo = draw(st.sampled_from(("", "user@", "user:pass@", "@", "a@b@")))
    port = draw(st.sampled_from(("", ":0", ":443", ":65535", ":65536", ":x", ":")))
    path = draw(st.sampled_from(("/", "", "/hook?x=1#f", "/%00", "/" + "p" * 2100)))
    return f"{scheme}://{userinfo}{host}{port}{path}"


def webhook_values() -> st.SearchStrategy[Any]:
    """Replacements for a webhook body: hostile URLs first, then any hostile value."""
    return st.one_of(
        st.sampled_from(URLS),
        built_urls(),
        st.sampled_from(URLS).map(lambda u: u.replace("/", "\\/")),
        st.just(Raw(b'"https://\\ud800.example/"')),
        hostile_values(),
    )


def webhook_bodies(template: dict[str, Any], where: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """``template`` with its webhook's ``url`` (at ``where``) replaced by a hostile URL
    half the time, else mutated anywhere."""

    def with_url(url: str) -> bytes:
        body: dict[str, Any] = dict(template)
        node = body
        for key in where[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node[where[-1]] = url
        return dumps(body)

    urls = st.one_of(st.sampled_from(URLS), built_urls()).map(with_url)
    mutated = hostile_body(template, webhook_values())
    return st.booleans().flatmap(lambda b: urls if b else mutated)


async def test_hostile_webhook_subscriptions_are_answered_without_a_5xx(fuzzer: Fuzzer) -> None:
    @examples(300)
    @given(body=webhook_bodies(WEBHOOK, ("url",)))
    def example(body: bytes) -> None:
        fuzzer.request("POST", "/v1/webhooks", content=body, headers=JSON)

    await fuzzer.run(example)


async def test_hostile_notification_webhooks_on_bulk_requests_make_no_job_or_a_sound_one(
    fuzzer: Fuzzer,
) -> None:
    await seed(fuzzer, 3)
    template = {**DELETE_FILTER, "notification_webhook": NOTIFY}

    @examples(120)
    @given(body=webhook_bodies(template, ("notification_webhook", "url")))
    def example(body: bytes) -> None:
        check_bulk(fuzzer, fuzzer.send("POST", "/v1/bulk/delete", content=body, headers=JSON))

    await fuzzer.run(example)


async def test_hostile_webhook_ids_and_limits_are_answered_without_a_5xx(fuzzer: Fuzzer) -> None:
    calls = st.sampled_from(
        [("GET", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", ""), ("PUT", "")]
    )
    limits = st.sampled_from(["", "?limit=1"]) | hostile_query_values().map(lambda v: f"?limit={v}")

    @examples(200)
    @given(call=calls, webhook_id=hostile_segments(), query=limits)
    def example(call: tuple[str, str], webhook_id: str, query: str) -> None:
        method, tail = call
        fuzzer.request(method, f"/v1/webhooks/{webhook_id}{tail}{query}")

    await fuzzer.run(example)
