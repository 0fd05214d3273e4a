"""The other fields: bulk changes (at once or as a job), jobs (one, and pages of them),
and ``batch``, which runs exactly the ``POST /v1/batch`` contract."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.graphql_api.conftest import gql, seed
from tests.server.conftest import Service


async def test_bulk_update_changes_the_matching_records_at_once(service: Service) -> None:
    await seed(service, "people", {"p1": {"t": "a"}, "p2": {"t": "b"}, "p3": {"t": "a"}})
    answer = await gql(
        service.client,
        'mutation { bulkUpdate(collection: "people", filter: {t: "a"}, update: {seen: true}) '
        "{ dryRun matched updatedCount ids job { id } } }",
    )
    assert answer["data"]["bulkUpdate"] == {
        "dryRun": False,
        "matched": 2,
        "updatedCount": 2,
        "ids": ["p1", "p3"],
        "job": None,
    }
    p3 = await service.client.get("/v1/collections/people/records/p3")
    assert p3.json()["data"] == {"t": "a", "seen": True}


async def test_a_dry_run_bulk_update_writes_nothing(service: Service) -> None:
    await seed(service, "people", {"p1": {"t": "a"}})
    answer = await gql(
        service.client,
        'mutation { bulkUpdate(collection: "people", filter: {}, update: {x: 1}, dryRun: true) '
        "{ matched updatedCount ids } }",
    )
    assert answer["data"]["bulkUpdate"] == {"matched": 1, "updatedCount": 0, "ids": ["p1"]}
    p1 = await service.client.get("/v1/collections/people/records/p1")
    assert p1.json()["version"] == 1


async def test_bulk_delete_by_ids_names_each_id_it_did_not_find(service: Service) -> None:
    await seed(service, "people", {"p1": {}, "p2": {}})
    answer = await gql(
        service.client,
        'mutation { bulkDelete(collection: "people", ids: ["p2", "zz", "p1"]) '
        "{ soft deletedCount deletedIds errors { id code message } } }",
    )
    result = answer["data"]["bulkDelete"]
    assert result["soft"] is True
    assert result["deletedCount"] == 2
    assert result["deletedIds"] == ["p1", "p2"]
    assert [(e["id"], e["code"]) for e in result["errors"]] == [("zz", "NOT_FOUND")]
    page = await service.client.get("/v1/collections/people/records")
    assert page.json()["records"] == []


async def test_a_bulk_field_with_a_bad_value_is_its_own_error_naming_the_argument(
    service: Service,
) -> None:
    answer = await gql(
        service.client,
        'mutation { ok: bulkDelete(collection: "people", filter: {}) { deletedCount } '
        'bad: bulkDelete(collection: "people", filter: {}, ids: ["a"]) { deletedCount } '
        'worse: bulkUpdate(collection: "people", filter: {}, update: [1]) { updatedCount } }',
    )
    assert answer["data"] == {"ok": {"deletedCount": 0}, "bad": None, "worse": None}
    found = {
        e["path"][0]: (e["extensions"]["code"], e["extensions"]["details"]["path"])
        for e in answer["errors"]
    }
    assert found == {"bad": ("INVALID_REQUEST", "ids"), "worse": ("VALIDATION_ERROR", "update")}


@pytest.mark.limits(bulk_inline_max=1, role="api")
async def test_a_bulk_delete_of_more_than_the_inline_limit_is_a_job(service: Service) -> None:
    await seed(service, "people", {"p1": {}, "p2": {}})
    answer = await gql(
        service.client,
        'mutation { bulkDelete(collection: "people", filter: {}) '
        "{ deletedCount job { id type state total } } }",
    )
    result = answer["data"]["bulkDelete"]
    assert result["deletedCount"] is None
    job = result["job"]
    assert (job["type"], job["state"], job["total"]) == ("bulk_delete", "queued", 2)
    rest = await service.client.get(f"/v1/jobs/{job['id']}")
    assert rest.json()["type"] == "bulk_delete"
    again = await gql(
        service.client, "query($id: ID!) { job(id: $id) { id state } }", {"id": job["id"]}
    )
    assert again["data"]["job"] == {"id": job["id"], "state": "queued"}


async def test_a_missing_or_another_tenants_job_is_null(service: Service) -> None:
    other = await service.client_for("another_tenant")
    response = await other.post(
        "/v1/batch",
        json={"operations": [{"type": "read", "collection": "x", "id": "y"}]},
        headers={"Prefer": "respond-async"},
    )
    theirs = response.json()["id"]
    answer = await gql(
        service.client,
        'query($a: ID!) { a: job(id: $a) { id } b: job(id: "nope") { id } }',
        {"a": theirs},
    )
    assert answer == {"data": {"a": None, "b": None}}


@pytest.mark.limits(role="api")
async def test_jobs_page_newest_first_with_a_cursor(service: Service) -> None:
    made = []
    for _ in range(5):
        response = await service.client.post(
            "/v1/batch",
            json={"operations": [{"type": "read", "collection": "x", "id": "y"}]},
            headers={"Prefer": "respond-async"},
        )
        made.append(response.json()["id"])
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        answer = await gql(
            service.client,
            'query($after: String) { jobs(type: "batch", first: 2, after: $after) '
            "{ jobs { id type } nextCursor } }",
            {"after": after},
        )
        page = answer["data"]["jobs"]
        seen += [job["id"] for job in page["jobs"]]
        pages += 1
        after = page["nextCursor"]
        if after is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))


@pytest.mark.parametrize(
    ("arguments", "path"),
    [
        ('state: "asleep"', "state"),
        ('type: "nap"', "type"),
        ("first: 0", "first"),
        ('after: "x!"', "after"),
    ],
)
async def test_a_bad_jobs_argument_is_an_error_naming_it(
    service: Service, arguments: str, path: str
) -> None:
    answer = await gql(service.client, f"{{ jobs({arguments}) {{ nextCursor }} }}")
    (error,) = answer["errors"]
    assert error["extensions"]["details"]["path"] == path
    assert error["extensions"]["status"] in (400, 422)


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _without_timing(payload: dict[str, Any]) -> str:
    """The answer as JSON but for what differs run to run: timestamps, the duration."""
    meta = {k: v for k, v in payload["meta"].items() if k != "duration_ms"}
    return _TIME.sub("<time>", json.dumps({**payload, "meta": meta}, sort_keys=True))


BATCHES: list[dict[str, Any]] = [
    {
        "operations": [
            {"ref": "a", "type": "create", "collection": "people", "id": "p9", "data": {"n": 1}},
            {"type": "read", "collection": "people", "id": "${a.body.id}"},
            {
                "type": "update",
                "collection": "people",
                "id": "p9",
                "data": {"n": 2},
                "depends_on": ["a"],
            }
            | {"ref": "b"},
        ]
    },
    {
        "operations": [
            {"type": "create", "collection": "people", "id": "q1", "data": {}},
            {"type": "create", "collection": "people", "id": "q1", "data": {}},
        ],
        "options": {"atomic": True},
    },
    {
        "operations": [{"type": "create", "collection": "-bad", "data": {}}],
        "options": {"validate_only": True},
    },
]


@pytest.mark.parametrize("body", BATCHES, ids=["references", "atomic failure", "validate only"])
async def test_the_batch_field_answers_what_post_v1_batch_answers(
    service: Service, body: dict[str, Any]
) -> None:
    variables: dict[str, Any] = {"ops": body["operations"], "options": body.get("options")}
    answer = await gql(
        service.client,
        "mutation($ops: [JSON!]!, $options: JSON) { batch(operations: $ops, options: $options) "
        "{ batchId status committed results meta } }",
        variables,
    )
    via_graphql = answer["data"]["batch"]
    # The same batch again over REST, on a fresh collection state: rerun in another tenant.
    other = await service.client_for("parity_tenant")
    rest = await other.post("/v1/batch", json=body)
    expected = rest.json()
    assert via_graphql["status"] == rest.status_code
    fields = ("committed", "results", "meta")
    assert _without_timing({k: via_graphql[k] for k in fields}) == _without_timing(
        {k: expected[k] for k in fields}
    )


async def test_the_batch_fields_atomic_argument_is_options_atomic(service: Service) -> None:
    answer = await gql(
        service.client,
        'mutation { batch(atomic: true, operations: [{type: "create", collection: "p", id: "a", '
        'data: {}}, {type: "read", collection: "p", id: "missing"}]) { status committed } }',
    )
    assert answer["data"]["batch"] == {"status": 404, "committed": False}
    page = await service.client.get("/v1/collections/p/records")
    assert page.json()["records"] == []


async def test_a_batch_that_is_not_a_batch_is_its_fields_400_naming_the_fault(
    service: Service,
) -> None:
    answer = await gql(
        service.client,
        'mutation { batch(operations: [{type: "read", collection: "p", id: "x"}], '
        "options: {sometimes: true}) { status } }",
    )
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "INVALID_BATCH_REQUEST"
    assert error["extensions"]["status"] == 400
    assert error["extensions"]["details"]["path"] == "options.sometimes"
