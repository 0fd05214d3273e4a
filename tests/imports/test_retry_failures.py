"""``POST /v1/jobs/{id}/retry-failures``: a finished import's failed rows become a new import
job, same collection and options (batchops.server.imports.retry). Both backends, both upload
storages (chunk rows in the database, files in the uploads directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchops.server import _ids
from batchops.server.imports.retry import retryable
from batchops.server.settings import Settings
from batchops.store.base import JobFailureRow, JobRow, Tx
from tests.jobs.conftest import (
    Service,
    records,
    settings_for,
    stored_upload,
    upload,
    uploads_left,
    wait_done,
)


@pytest.fixture(params=["database", "directory"])
def settings(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The jobs suite's settings (fast polls, uploads in the test's directory), for each
    upload storage; ``@pytest.mark.limits(**overrides)`` changes them for a test."""
    overrides: dict[str, object] = {
        "job_poll_s": 0.05,
        "data_dir": str(tmp_path / "uploads"),
        "upload_storage": request.param,
    }
    marker = request.node.get_closest_marker("limits")
    if marker is not None:
        overrides.update(marker.kwargs)
    return settings_for(db_url, **overrides)


MAPPING = {"name": {"field": "name"}, "age": {"field": "profile.age", "type": "int"}}
CSV = b"name,age\nAda,36\nBob,old\nCy,41\nDee,29\n"  # row 2: age is not an int


async def _finished(client: httpx.AsyncClient, body: bytes, **params: Any) -> dict[str, Any]:
    response = await upload(client, body, **params)
    assert response.status_code == 202, response.text
    return await wait_done(client, response.json()["id"])


async def _failures(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/jobs/{job_id}/failures")
    return [orjson.loads(line) for line in response.content.splitlines()]


async def _retry(client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    return await client.post(f"/v1/jobs/{job_id}/retry-failures")


async def test_retrying_a_csv_imports_failures_queues_a_job_of_those_rows_with_its_options(
    service: Service,
) -> None:
    source = await _finished(
        service.client,
        CSV,
        collection="people",
        validation="lenient",
        chunk_size=3,
        mapping=json.dumps(MAPPING),
    )
    assert (source["state"], source["succeeded"], source["failed"]) == ("succeeded", 3, 1)
    response = await _retry(service.client, source["id"])
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["id"] != source["id"]
    assert response.headers["location"] == f"/v1/jobs/{queued['id']}"
    assert (queued["type"], queued["collection"]) == ("import", "people")
    kept = ("format", "validation", "dry_run", "upsert_key", "chunk_size", "mapping", "header")
    assert {k: queued["options"][k] for k in kept} == {k: source["options"][k] for k in kept}
    assert (queued["options"]["retry_of"], queued["options"]["retry_skipped"]) == (
        source["id"],
        0,
    )
    retried = await wait_done(service.client, queued["id"])
    assert (retried["total"], retried["succeeded"], retried["failed"]) == (1, 0, 1)


async def test_a_retried_csv_row_fails_again_with_the_same_input_under_the_kept_header(
    service: Service,
) -> None:
    # With the mapping, the row can only be read under its header: were the header lost, the
    # failed line would be taken as the header and no row would be read at all.
    source = await _finished(
        service.client, CSV, collection="people", validation="lenient", mapping=json.dumps(MAPPING)
    )
    queued = (await _retry(service.client, source["id"])).json()
    await wait_done(service.client, queued["id"])
    (before,) = await _failures(service.client, source["id"])
    (after,) = await _failures(service.client, queued["id"])
    assert before["input"] == after["input"] == "Bob,old"
    assert (after["row"], after["code"]) == (1, before["code"]) == (1, "BAD_VALUE")
    names = sorted(r["data"]["name"] for r in await records(service.client, "people"))
    assert names == ["Ada", "Cy", "Dee"]


async def test_a_retried_ndjson_row_fails_again_with_the_same_input(service: Service) -> None:
    body = b'{"n": 1}\n{"n": 2}\n[3]\n{"n": 4}\n'
    source = await _finished(
        service.client,
        body,
        content_type="application/x-ndjson",
        collection="nums",
        validation="lenient",
    )
    queued = (await _retry(service.client, source["id"])).json()
    assert queued["options"]["format"] == "ndjson"
    retried = await wait_done(service.client, queued["id"])
    assert (retried["total"], retried["failed"]) == (1, 1)
    (before,) = await _failures(service.client, source["id"])
    (after,) = await _failures(service.client, queued["id"])
    assert (
        (after["input"], after["code"])
        == (before["input"], before["code"])
        == ("[3]", "NOT_AN_OBJECT")
    )


async def test_a_retried_json_array_row_fails_again_with_the_same_input(service: Service) -> None:
    body = b'[{"n": 1}, "two", {"n": 3}, {"n": 4}]'
    source = await _finished(
        service.client,
        body,
        content_type="application/json",
        collection="nums",
        validation="lenient",
    )
    queued = (await _retry(service.client, source["id"])).json()
    assert queued["options"]["format"] == "json"
    retried = await wait_done(service.client, queued["id"])
    assert (retried["state"], retried["total"], retried["failed"]) == ("succeeded", 1, 1)
    (before,) = await _failures(service.client, source["id"])
    (after,) = await _failures(service.client, queued["id"])
    assert after["input"] == before["input"] == '"two"'


async def _stored_import(
    service: Service, fmt: str, failures: list[tuple[str, str]], **options: Any
) -> str:
    """A finished import of ``service``'s tenant, stored as it is (no upload, no runner),
    with ``failures`` ((code, input) for rows 1, 2, …): its id."""
    job = JobRow(
        id=_ids.new_record_id(),
        tenant=service.tenant,
        type="import",
        state="succeeded",
        collection="people",
        options={
            "format": fmt,
            "validation": "lenient",
            "dry_run": False,
            "upsert_key": None,
            "chunk_size": 10,
            "mapping": None,
            "bytes": 100,
            **options,
        },
        created_at=_ids.now_iso(),
        total=len(failures),
        processed=len(failures),
        failed=len(failures),
        revision=1,
    )
    rows = [
        JobFailureRow(job.id, n, text, code, "why")
        for n, (code, text) in enumerate(failures, start=1)
    ]

    def insert(tx: Tx) -> None:
        tx.insert_job(job)
        if rows:
            tx.insert_job_failures(rows)

    await service.store.run(insert)
    return job.id


@pytest.mark.limits(role="api")  # (no runner: the new job stays queued, its upload kept)
@pytest.mark.parametrize(
    ("fmt", "header", "failures", "expected"),
    [
        (
            "csv",
            ["name", "note"],
            [("COLUMN_COUNT", "a,b,c"), ("BAD_VALUE", '"x, y","he said ""hi"""')],
            b'name,note\na,b,c\n"x, y","he said ""hi"""\n',
        ),
        ("ndjson", None, [("NOT_AN_OBJECT", "[1]"), ("INVALID_JSON", '{"a": ')], b'[1]\n{"a": \n'),
        ("json", None, [("NOT_AN_OBJECT", "1"), ("NOT_AN_OBJECT", '"s"')], b'[\n1,\n"s"\n]\n'),
    ],
    ids=["csv", "ndjson", "json"],
)
async def test_the_new_upload_is_the_failed_rows_in_the_sources_format(
    service: Service,
    fmt: str,
    header: list[str] | None,
    failures: list[tuple[str, str]],
    expected: bytes,
) -> None:
    extra = {"header": header} if header is not None else {}
    source = await _stored_import(service, fmt, failures, **extra)
    response = await _retry(service.client, source)
    assert response.status_code == 202, response.text
    job = response.json()
    assert await stored_upload(service, job["id"]) == expected
    assert job["options"]["bytes"] == len(expected)


@pytest.mark.limits(role="api")
async def test_failures_whose_input_is_not_the_row_are_skipped_and_counted(
    service: Service,
) -> None:
    source = await _stored_import(
        service,
        "ndjson",
        [
            ("VALIDATION_ERROR", "(a dict that cannot be shown as JSON)"),
            ("NOT_AN_OBJECT", "[2]"),
            ("INVALID_JSON", '{"bad": "\ufffd'),
        ],
    )
    job = (await _retry(service.client, source)).json()
    assert job["options"]["retry_skipped"] == 2
    assert await stored_upload(service, job["id"]) == b"[2]\n"


@pytest.mark.parametrize(
    ("fmt", "code", "text", "expected"),
    [
        ("csv", "BAD_VALUE", "a,b", True),
        ("csv", "UNTERMINATED_QUOTE", '"a,b\nc…', False),
        ("csv", "VALIDATION_ERROR", "a\\u0000b,c", False),
        ("ndjson", "NOT_AN_OBJECT", "[1]", True),
        ("ndjson", "INVALID_JSON", '{"a": 1', True),
        ("ndjson", "INVALID_JSON", '{"a": "\ufffd"}', False),
        ("json", "VALIDATION_ERROR", "(an int that cannot be shown as JSON)", False),
        ("json", "VALIDATION_ERROR", '{"n": "\\u0000"}', True),
    ],
)
def test_a_failure_is_retried_only_when_its_input_is_the_row_as_the_file_had_it(
    fmt: Any, code: str, text: str, expected: bool
) -> None:
    assert retryable(JobFailureRow("j", 1, text, code, "why"), fmt) is expected


# -- refusals --------------------------------------------------------------------------------


async def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_another_tenants_or_an_unknown_job_is_job_not_found(service: Service) -> None:
    source = await _finished(
        service.client, CSV, collection="people", validation="lenient", mapping=json.dumps(MAPPING)
    )
    other = await service.client_for(f"{service.tenant}_other")
    for client, job_id in (
        (other, source["id"]),
        (service.client, _ids.new_record_id()),
        (service.client, "nope"),
    ):
        assert await _error(await _retry(client, job_id)) == (404, "JOB_NOT_FOUND")
    jobs = (await other.get("/v1/jobs")).json()["jobs"]
    assert jobs == []


async def test_a_job_that_is_not_an_import_is_not_an_import(service: Service) -> None:
    response = await service.client.post(
        "/v1/batch",
        json={"operations": [{"type": "read", "collection": "x", "id": "y"}]},
        headers={"Prefer": "respond-async"},
    )
    job = await wait_done(service.client, response.json()["id"])
    assert await _error(await _retry(service.client, job["id"])) == (409, "NOT_AN_IMPORT")


@pytest.mark.limits(role="api")  # (no runner: the import stays queued)
async def test_an_import_that_has_not_finished_is_job_not_finished(service: Service) -> None:
    response = await upload(service.client, CSV, collection="people")
    answer = await _retry(service.client, response.json()["id"])
    assert await _error(answer) == (409, "JOB_NOT_FINISHED")
    assert answer.headers["retry-after"] == "1"


async def test_an_import_without_failures_is_no_failures(service: Service) -> None:
    source = await _finished(service.client, b"name\nAda\n", collection="people")
    assert source["failed"] == 0
    assert await _error(await _retry(service.client, source["id"])) == (409, "NO_FAILURES")


@pytest.mark.limits(role="api")
async def test_an_import_whose_failures_are_all_skipped_is_no_failures(service: Service) -> None:
    source = await _stored_import(service, "csv", [("UNTERMINATED_QUOTE", '"a…')], header=["a"])
    response = await _retry(service.client, source)
    assert await _error(response) == (409, "NO_FAILURES")
    assert response.json()["error"]["details"]["skipped"] == 1
    assert [job["id"] for job in (await service.client.get("/v1/jobs")).json()["jobs"]] == [source]
    assert await uploads_left(service) == []  # (what was written of the new upload is gone)


@pytest.mark.limits(role="api")
async def test_a_csv_import_stored_without_its_header_is_csv_header_unknown(
    service: Service,
) -> None:
    source = await _stored_import(service, "csv", [("COLUMN_COUNT", "a,b")])
    assert await _error(await _retry(service.client, source)) == (409, "CSV_HEADER_UNKNOWN")
