"""The OpenAPI document's promises that hold for every operation, read off the document."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from batchops.server import openapi
from batchops.server.app import create_app
from batchops.server.settings import Settings

ENVELOPE = "#/components/schemas/ErrorEnvelope"
# An atomic batch that fails answers its failing operation's status with the batch's own
# answer, whose failing result carries the envelope's `error` (docs/batch.md).
BATCH_ANSWER = "#/components/schemas/BatchResponse"


def document(tmp_path: Path) -> dict[str, Any]:
    app = create_app(Settings(db_url=f"sqlite:///{tmp_path / 'doc.db'}", print_first_key=False))
    found: dict[str, Any] = app.openapi()
    return found


def alternatives(schema: dict[str, Any]) -> set[str]:
    """The component references a schema is, or is one of."""
    refs = {schema["$ref"]} if "$ref" in schema else set()
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        refs |= alternatives(branch)
    return refs


def operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    ]


OPEN = {"GET /healthz", "GET /readyz"}
"""The probes of load balancers and orchestrators: no API key."""


def test_every_operation_but_the_health_probes_needs_the_bearer_key_and_every_error_is_the_envelope(
    tmp_path: Path,
) -> None:
    doc = document(tmp_path)
    schemes = doc["components"]["securitySchemes"]
    bearer = schemes[openapi.BEARER]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    for name, operation in operations(doc):
        security = [scheme for requirement in operation["security"] for scheme in requirement]
        assert (openapi.BEARER in security) is (name not in OPEN), name
        for status, answer in operation["responses"].items():
            if status.startswith("2"):
                continue
            schema = answer["content"]["application/json"]["schema"]
            refs = alternatives(schema)
            allowed = {ENVELOPE, BATCH_ANSWER} if name == "POST /v1/batch" else {ENVELOPE}
            assert refs, (name, status, schema)
            assert refs <= allowed, (name, status, schema)
            if not (name == "POST /v1/batch" and status == "405"):
                assert ENVELOPE in refs, (name, status, schema)


def test_every_error_status_is_described(tmp_path: Path) -> None:
    for name, operation in operations(document(tmp_path)):
        for status, answer in operation["responses"].items():
            assert answer.get("description"), (name, status)


def test_the_documents_whitespace_is_pythons(tmp_path: Path) -> None:
    # Patterns the server applies with Python's \s are spelled out for JSON Schema (ECMA
    # 262), whose \s is another set of characters.
    spelled = re.compile(f"[{openapi._PY_SPACE}]")
    python = re.compile(r"\s")
    assert all(
        bool(spelled.match(c)) is bool(python.match(c)) for c in map(chr, range(sys.maxunicode))
    )
