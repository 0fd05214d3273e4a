"""POST /v1/imports and the job routes, in process, on both backends."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from multiprocessing.process import BaseProcess
from typing import Any

import orjson
import pytest

from tests.jobs.conftest import Service, records, upload, uploads_left, wait_done


def _csv(rows: int) -> bytes:
    lines = ["email,age,active"] + [f"u{i}@x.org,{20 + i},true" for i in range(1, rows + 1)]
    return ("\n".join(lines) + "\n").encode()


async def test_a_csv_import_lands_exactly_its_rows_with_mapped_types(service: Service) -> None:
    mapping = {
        "email": {"field": "email", "type": "string"},
        "age": {"field": "profile.age", "type": "int"},
        "active": {"field": "active", "type": "bool"},
    }
    response = await upload(
        service.client, _csv(25), collection="people", chunk_size=10, mapping=json.dumps(mapping)
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    job = await wait_done(service.client, response.json()["id"])
    assert job["state"] == "succeeded"
    assert (job["total"], job["processed"], job["succeeded"], job["failed"]) == (25, 25, 25, 0)
    assert job["percentage"] == 100.0
    rows = await records(service.client, "people")
    assert sorted(r["data"]["email"] for r in rows) == sorted(f"u{i}@x.org" for i in range(1, 26))
    ada = next(r["data"] for r in rows if r["data"]["email"] == "u1@x.org")
    assert ada == {"email": "u1@x.org", "profile": {"age": 21}, "active": True}


async def test_ndjson_and_json_array_imports_land_exactly_their_rows(service: Service) -> None:
    ndjson = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(30))
    first = await upload(
        service.client, ndjson, content_type="application/x-ndjson", collection="nd", chunk_size=7
    )
    array = orjson.dumps([{"n": i, "x": 1.5} for i in range(30)])
    second = await upload(
        service.client, array, content_type="application/json", collection="js", chunk_size=7
    )
    for response in (first, second):
        assert response.status_code == 202, response.text
        assert (await wait_done(service.client, response.json()["id"]))["succeeded"] == 30
    assert sorted(r["data"]["n"] for r in await records(service.client, "nd")) == list(range(30))
    js = await records(service.client, "js")
    assert sorted(r["data"]["n"] for r in js) == list(range(30))
    assert {r["data"]["x"] for r in js} == {1.5}


BAD_CSV = b"email,age\na@x.org,1\nb@x.org,notanumber\nc@x.org,3\nd@x.org,4,extra\ne@x.org,5\n"
AGE_MAPPING = json.dumps({"email": {"field": "email"}, "age": {"field": "age", "type": "int"}})


async def test_strict_validation_fails_the_job_before_writing_and_names_the_bad_rows(
    service: Service,
) -> None:
    response = await upload(service.client, BAD_CSV, collection="strict", mapping=AGE_MAPPING)
    job = await wait_done(service.client, response.json()["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "VALIDATION_FAILED"
    assert (job["total"], job["failed"], job["processed"]) == (5, 2, 0)
    assert await records(service.client, "strict") == []
    failures = await service.client.get(f"/v1/jobs/{job['id']}/failures")
    assert failures.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in failures.text.splitlines()]
    assert [(f["row"], f["code"]) for f in lines] == [(2, "BAD_VALUE"), (4, "COLUMN_COUNT")]
    assert lines[0]["input"] == "b@x.org,notanumber"


async def test_lenient_validation_imports_the_good_rows_and_lists_the_bad_ones_as_csv(
    service: Service,
) -> None:
    response = await upload(
        service.client,
        BAD_CSV,
        collection="lenient",
        mapping=AGE_MAPPING,
        validation="lenient",
        chunk_size=2,
    )
    job = await wait_done(service.client, response.json()["id"])
    assert job["state"] == "succeeded"
    assert (job["total"], job["processed"], job["succeeded"], job["failed"]) == (5, 5, 3, 2)
    rows = await records(service.client, "lenient")
    assert sorted(r["data"]["age"] for r in rows) == [1, 3, 5]
    failures = await service.client.get(f"/v1/jobs/{job['id']}/failures", params={"format": "csv"})
    assert failures.headers["content-type"].startswith("text/csv")
    lines = failures.text.splitlines()
    assert lines[0] == "row,code,message,input"
    assert [line.split(",")[:2] for line in lines[1:]] == [
        ["2", "BAD_VALUE"],
        ["4", "COLUMN_COUNT"],
    ]
    assert lines[2].endswith('"d@x.org,4,extra"')


async def test_a_dry_run_validates_and_counts_but_writes_no_record(service: Service) -> None:
    response = await upload(
        service.client,
        BAD_CSV,
        collection="dry",
        mapping=AGE_MAPPING,
        validation="lenient",
        dry_run=True,
    )
    job = await wait_done(service.client, response.json()["id"])
    assert (job["state"], job["succeeded"], job["failed"]) == ("succeeded", 3, 2)
    assert await records(service.client, "dry") == []


async def test_upsert_key_replaces_existing_records_and_creates_the_others(
    service: Service,
) -> None:
    created = await service.client.post(
        "/v1/collections/users/records", json={"data": {"email": "a@x.org", "age": 1, "old": 1}}
    )
    record_id = created.json()["id"]
    body = b"email,age\na@x.org,40\nz@x.org,2\nz@x.org,3\n"
    response = await upload(
        service.client, body, collection="users", upsert_key="email", mapping=AGE_MAPPING
    )
    job = await wait_done(service.client, response.json()["id"])
    assert (job["state"], job["succeeded"]) == ("succeeded", 3)
    rows = {r["data"]["email"]: r for r in await records(service.client, "users")}
    assert set(rows) == {"a@x.org", "z@x.org"}
    assert rows["a@x.org"]["id"] == record_id
    assert rows["a@x.org"]["data"] == {"email": "a@x.org", "age": 40}
    assert rows["a@x.org"]["version"] == 2
    assert rows["z@x.org"]["data"]["age"] == 3


async def test_cancel_stops_a_running_job_at_a_chunk_boundary(service: Service) -> None:
    runner = service.app.state.services.jobs

    async def cancel_after_first_chunk(job: object) -> None:
        runner.after_chunk = None
        response = await service.client.post(f"/v1/jobs/{job_id}/cancel")
        assert response.status_code == 202
        assert response.json()["cancel_requested"] is True

    runner.after_chunk = cancel_after_first_chunk
    response = await upload(service.client, _csv(100), collection="cancelled", chunk_size=10)
    job_id = response.json()["id"]
    job = await wait_done(service.client, job_id)
    assert (job["state"], job["processed"], job["checkpoint"]) == ("cancelled", 10, 10)
    assert len(await records(service.client, "cancelled")) == 10
    again = await service.client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "JOB_FINISHED"


async def test_a_plain_import_is_prepared_in_a_worker_process_that_is_gone_at_the_end(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchops.server.imports import job as job_module
    from batchops.server.imports.prepare import ChunkPreparer, PreparedChunk

    workers: list[BaseProcess] = []
    received: list[int] = []

    class Watched(ChunkPreparer):
        """The runner's preparer, noting its worker process and every chunk it hands out.
        (Whether the worker is still alive when a chunk commits is timing: once it has sent
        the whole file down the pipe it exits by itself, ~60-90 ms later.)"""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            workers.append(self._process)

        async def next(self) -> PreparedChunk | None:
            chunk = await super().next()
            if chunk is not None:
                received.append(chunk.count)
            return chunk

    monkeypatch.setattr(job_module, "ChunkPreparer", Watched)
    runner = service.app.state.services.jobs
    seen: list[int] = []

    async def look(job: object) -> None:
        seen.append(len(received))

    runner.after_chunk = look
    response = await upload(service.client, _csv(30), collection="prepared", chunk_size=10)
    job = await wait_done(service.client, response.json()["id"])
    assert (job["state"], job["succeeded"]) == ("succeeded", 30)
    # One worker process prepared every chunk: each had come from it before it committed.
    assert [worker.name for worker in workers] == ["batchops-import-prepare"]
    assert received == [10, 10, 10]
    assert len(seen) == 3
    assert all(count >= n for n, count in enumerate(seen, 1))
    # The job stopped AND reaped its worker before reporting itself done: no process is
    # left, not even a zombie (active_children() below would reap a zombie itself).
    pid = workers[0].pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert multiprocessing.active_children() == []


async def test_an_upsert_import_leaves_an_index_on_its_key_for_the_lookups(
    service: Service,
) -> None:
    from batchops.store._query import field_index_name

    response = await upload(service.client, _csv(5), collection="keyed", upsert_key="email")
    assert (await wait_done(service.client, response.json()["id"]))["succeeded"] == 5
    name = field_index_name(service.tenant, "keyed", "email")
    catalog = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name = ?"
        if service.store.dialect == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE indexname = %s"
    )

    def look(tx: Any) -> list[Any]:
        return list(tx._execute(catalog, (name,)).fetchall())

    assert [row[0] for row in await service.store.run(look)] == [name]


async def test_an_upsert_import_is_converted_in_process(service: Service) -> None:
    runner = service.app.state.services.jobs
    seen: list[list[str]] = []

    async def look(job: object) -> None:
        seen.append([p.name for p in multiprocessing.active_children()])

    runner.after_chunk = look
    response = await upload(
        service.client, _csv(20), collection="upserted", chunk_size=10, upsert_key="email"
    )
    assert (await wait_done(service.client, response.json()["id"]))["succeeded"] == 20
    assert seen == [[], []]


async def test_a_cancelled_import_leaves_no_worker_process_behind(service: Service) -> None:
    runner = service.app.state.services.jobs

    async def cancel(job: object) -> None:
        runner.after_chunk = None
        await service.client.post(f"/v1/jobs/{job_id}/cancel")

    runner.after_chunk = cancel
    response = await upload(service.client, _csv(100), collection="stopped", chunk_size=10)
    job_id = response.json()["id"]
    assert (await wait_done(service.client, job_id))["state"] == "cancelled"
    # The cancelled state commits first; the runner then stops its worker (join: wait for it).
    for process in multiprocessing.active_children():
        await asyncio.to_thread(process.join, 10)
    assert multiprocessing.active_children() == []


async def test_imported_records_are_found_by_full_text_search(service: Service) -> None:
    # Row 7 is the one aged 27 (ages are text without a mapping, so they are searchable).
    response = await upload(service.client, _csv(12), collection="findme", chunk_size=5)
    assert (await wait_done(service.client, response.json()["id"]))["succeeded"] == 12
    found = await service.client.post("/v1/collections/findme/search", json={"query": "27"})
    assert found.status_code == 200, found.text
    assert [hit["record"]["data"]["email"] for hit in found.json()["results"]] == ["u7@x.org"]


async def test_jobs_are_invisible_to_other_tenants(service: Service) -> None:
    response = await upload(service.client, _csv(3), collection="mine")
    job_id = response.json()["id"]
    await wait_done(service.client, job_id)
    other = await service.client_for(f"{service.tenant}_other")
    for path in ("", "/failures", "/events"):
        answer = await other.get(f"/v1/jobs/{job_id}{path}")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "JOB_NOT_FOUND"
    assert (await other.post(f"/v1/jobs/{job_id}/cancel")).status_code == 404
    assert (await other.get("/v1/jobs")).json()["jobs"] == []
    mine = (await service.client.get("/v1/jobs", params={"state": "succeeded"})).json()["jobs"]
    assert [j["id"] for j in mine] == [job_id]


@pytest.mark.parametrize(
    ("params", "content_type", "body", "status", "code"),
    [
        ({}, "text/csv", b"a\n1\n", 422, "VALIDATION_ERROR"),
        ({"collection": "c"}, "text/plain", b"a\n1\n", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"collection": "c"}, "text/csv", b"", 400, "EMPTY_UPLOAD"),
        ({"collection": "c"}, "application/json", b'{"a": 1}', 400, "INVALID_JSON"),
        ({"collection": "c", "mapping": "{nope"}, "text/csv", b"a\n1\n", 422, "VALIDATION_ERROR"),
        (
            {"collection": "c", "mapping": '{"b": {"field": "b"}}'},
            "text/csv",
            b"a\n1\n",
            422,
            "VALIDATION_ERROR",
        ),
        ({"collection": "c", "chunk_size": "0"}, "text/csv", b"a\n1\n", 422, "VALIDATION_ERROR"),
        ({"collection": "c", "validation": "x"}, "text/csv", b"a\n1\n", 422, "VALIDATION_ERROR"),
        ({"collection": "c", "format": ""}, "text/csv", b"a\n1\n", 422, "VALIDATION_ERROR"),
        ({"collection": "c", "validation": ""}, "text/csv", b"a\n1\n", 422, "VALIDATION_ERROR"),
    ],
)
async def test_bad_uploads_are_refused_with_the_error_envelope(
    service: Service,
    params: dict[str, str],
    content_type: str,
    body: bytes,
    status: int,
    code: str,
) -> None:
    response = await upload(service.client, body, content_type=content_type, **params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert (await service.client.get("/v1/jobs")).json()["jobs"] == []


@pytest.mark.parametrize("option", ["format", "validation"])
async def test_an_empty_enumerated_option_is_refused_naming_it_not_read_as_absent(
    service: Service, option: str
) -> None:
    response = await upload(
        service.client, b"a\n1\n", content_type="text/csv", collection="c", **{option: ""}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["path"] == option


@pytest.mark.limits(max_upload_bytes=1000)
async def test_an_upload_over_the_limit_is_413_and_leaves_no_file(service: Service) -> None:
    response = await upload(service.client, _csv(200), collection="big")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "UPLOAD_TOO_LARGE"
    assert await uploads_left(service) == []
