"""OpenTelemetry spans: one per request, per batch and per job chunk (none per operation),
seen with the SDK's in-memory exporter; with tracing off, no batchops module imports
opentelemetry (FastAPI and redis-py import it themselves when it is installed). On both
backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from batchops.server.observability import tracing
from tests.jobs.conftest import upload, wait_done
from tests.server.observability.conftest import Service

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The exporter of this module's provider, emptied; tracing on for the test (the app
    turns it on from its settings; the provider is the test's, not the global one)."""
    EXPORTER.clear()
    tracing.configure_tracing(True, tracer_provider=PROVIDER)
    yield EXPORTER
    tracing.configure_tracing(False)


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_a_request_is_one_span_named_by_its_route_template(
    service: Service, spans: InMemorySpanExporter
) -> None:
    created = await service.client.post("/v1/collections/people/records", json={"data": {}})
    spans.clear()
    await service.client.get(f"/v1/collections/people/records/{created.json()['id']}")

    (span,) = spans.get_finished_spans()
    route = "/v1/collections/{collection}/records/{record_id}"
    assert span.name == f"GET {route}"
    assert span.attributes is not None
    assert span.attributes["http.route"] == route
    assert span.attributes["http.response.status_code"] == 200


async def test_a_batch_is_one_span_inside_its_request_span(
    service: Service, spans: InMemorySpanExporter
) -> None:
    operations = [{"type": "create", "collection": "people", "data": {"n": i}} for i in range(50)]
    response = await service.client.post(
        "/v1/batch", json={"operations": operations}, headers={"X-Batch-Id": "b-1"}
    )
    assert response.status_code == 200

    (batch,) = named(spans, "batch")
    (request,) = named(spans, "POST /v1/batch")
    assert batch.attributes is not None
    assert batch.attributes["batchops.batch_id"] == "b-1"
    assert batch.attributes["batchops.batch.operations"] == 50
    assert batch.parent is not None
    assert batch.parent.span_id == request.context.span_id
    assert len(spans.get_finished_spans()) == 2  # no span per operation


async def test_a_job_is_one_span_per_chunk(service: Service, spans: InMemorySpanExporter) -> None:
    response = await upload(service.client, b"email\na@x.org\nb@x.org\n", collection="people")
    job_id = response.json()["id"]
    assert (await wait_done(service.client, job_id))["state"] == "succeeded"

    chunks = named(spans, "job chunk")
    assert len(chunks) == 1  # two rows: one chunk, and no span per row
    assert chunks[0].attributes is not None
    assert chunks[0].attributes["batchops.job_id"] == job_id
    assert chunks[0].attributes["batchops.job_type"] == "import"


_IMPORTS_BY_BATCHOPS = """
import asyncio, builtins, sys
import httpx

# Every import of an opentelemetry module made by batchops' own code. (Other libraries
# import opentelemetry whenever it is installed — FastAPI, redis-py — whatever we do.)
by_batchops = set()
original = builtins.__import__

def watching(name, globals=None, *args, **kwargs):
    importer = (globals or {{}}).get("__name__", "")
    if name.startswith("opentelemetry") and importer.startswith("batchops"):
        by_batchops.add(importer)
    return original(name, globals, *args, **kwargs)

builtins.__import__ = watching

from batchops.server.app import create_app
from batchops.server.auth import create_api_key
from batchops.server.settings import Settings

async def main():
    settings = Settings(db_url="sqlite:///{db}", print_first_key=False, tracing={tracing})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        key, _ = await app.state.services.store.run(lambda tx: create_api_key(tx, "t"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test",
            headers={{"Authorization": f"Bearer {{key}}"}},
        ) as client:
            ops = [{{"type": "create", "collection": "c", "data": {{}}}}]
            assert (await client.post("/v1/batch", json={{"operations": ops}})).status_code == 200
            assert (await client.get("/v1/collections/c/records")).status_code == 200
    print(sorted(by_batchops))

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("on", "expected"), [(False, "[]"), (True, "['batchops.server.observability.tracing']")]
)
def test_batchops_imports_opentelemetry_only_with_tracing_on(
    tmp_path: Path, on: bool, expected: str
) -> None:
    script = _IMPORTS_BY_BATCHOPS.format(db=tmp_path / "t.db", tracing=on)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == expected
