"""One operation, three ways in, one answer: REST, ``POST /v1/batch`` in the REST dialect
and in the typed dialect, on both backends.

Each :class:`Case` states an operation once, in terms of no dialect (:class:`Op`), and the
outcome it must have: the status, and for an error its code and ``details.path``; for a
success the body. The test is parametrised over the three paths and the two backends, so
every cell of (case x path x backend) asserts the same expectation; a path that answers
differently fails its own cell. Inside a batch the operation is the batch's only one and
its result (``results[0]``) is compared without the envelope.

The cases are in :mod:`tests.parity.cases`; each case id reads as a sentence of the
contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx
import pytest

from tests.parity.cases import ABSENT, CASES, Case, Op
from tests.server.conftest import Service

# -- the three ways in ---------------------------------------------------------------------

_RECORD_OPS: Final = {
    "read": "GET",
    "update": "PATCH",
    "replace": "PUT",
    "delete": "DELETE",
    "restore": "POST",
}


@dataclass
class _Request:
    """An operation as an HTTP request (REST), or as the REST dialect's fields."""

    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = ABSENT
    headers: dict[str, str] = field(default_factory=dict)

    def url(self) -> str:
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path


def _query_text(value: Any) -> str:
    """A value as query-string text (numbers and booleans as JSON, strings as they are)."""
    return value if isinstance(value, str) else json.dumps(value)


def _as_rest(op: Op) -> _Request:
    base = f"/v1/collections/{quote(op.collection, safe='')}"
    records = f"{base}/records"
    request: _Request
    if op.type == "create":
        body: dict[str, Any] = {"data": op.data}
        if op.id is not ABSENT:
            body["id"] = op.id
        return _Request("POST", records, body=body)
    if op.type == "list":
        request = _Request("GET", records)
        if op.filters is not ABSENT:
            request.params += [(k, _query_text(v)) for k, v in op.filters.items()]
        if op.limit is not ABSENT:
            request.params.append(("limit", _query_text(op.limit)))
        if op.cursor is not ABSENT:
            request.params.append(("cursor", op.cursor))
        return request
    if op.type == "search":
        body = {"query": op.query}
        if op.filters is not ABSENT:
            body["filters"] = op.filters
        if op.limit is not ABSENT:
            body["limit"] = op.limit
        return _Request("POST", f"{base}/search", body=body)
    path = f"{records}/{quote(op.id, safe='!')}"
    request = _Request(_RECORD_OPS[op.type], path + ("/restore" if op.type == "restore" else ""))
    if op.type in ("update", "replace"):
        request.body = {"data": op.data}
    if op.hard is not ABSENT:
        request.params.append(("hard", _query_text(op.hard)))
    if op.include_deleted is not ABSENT:
        request.params.append(("include_deleted", _query_text(op.include_deleted)))
    if op.if_match is not ABSENT:
        request.headers["If-Match"] = str(op.if_match)
    return request


def _as_typed(op: Op) -> dict[str, Any]:
    typed: dict[str, Any] = {"type": op.type, "collection": op.collection}
    for name in ("id", "data", "query", "if_match"):
        value = getattr(op, name)
        if value is not ABSENT:
            typed[name] = value
    options = {
        name: getattr(op, name)
        for name in ("filters", "limit", "cursor", "hard", "include_deleted")
        if getattr(op, name) is not ABSENT
    }
    if options:
        typed["options"] = options
    return typed


def _as_rest_dialect(op: Op) -> dict[str, Any]:
    request = _as_rest(op)
    rest: dict[str, Any] = {"method": request.method, "path": request.url()}
    if request.body is not ABSENT:
        rest["body"] = request.body
    if request.headers:
        rest["headers"] = request.headers
    return rest


async def _post_batch(client: httpx.AsyncClient, operations: list[dict[str, Any]]) -> Any:
    # The standard encoder: orjson cannot write an integer beyond 64 bits.
    return await client.post(
        "/v1/batch",
        content=json.dumps({"operations": operations}),
        headers={"Content-Type": "application/json"},
    )


async def _via_rest(client: httpx.AsyncClient, op: Op) -> tuple[int, Any]:
    request = _as_rest(op)
    response = await client.request(
        request.method,
        request.url(),
        content=None if request.body is ABSENT else json.dumps(request.body),
        headers={**request.headers, "Content-Type": "application/json"},
    )
    return response.status_code, response.json()


async def _via_batch(client: httpx.AsyncClient, operation: dict[str, Any]) -> tuple[int, Any]:
    response = await _post_batch(client, [operation])
    assert response.status_code in (200, 207), response.text
    (result,) = response.json()["results"]
    if "error" in result:
        return result["status"], {"error": result["error"]}
    return result["status"], result["body"]


async def _via_batch_rest(client: httpx.AsyncClient, op: Op) -> tuple[int, Any]:
    return await _via_batch(client, _as_rest_dialect(op))


async def _via_batch_typed(client: httpx.AsyncClient, op: Op) -> tuple[int, Any]:
    return await _via_batch(client, _as_typed(op))


PATHS: Final = {
    "rest": _via_rest,
    "batch-rest-dialect": _via_batch_rest,
    "batch-typed-dialect": _via_batch_typed,
}


# -- the test ------------------------------------------------------------------------------


@pytest.mark.parametrize("way", list(PATHS))
@pytest.mark.parametrize("case", CASES, ids=[case.sentence for case in CASES])
async def test_every_way_in_answers_an_operation_alike(
    service: Service, case: Case, way: str
) -> None:
    if case.setup:
        seeded = await _post_batch(service.client, list(case.setup))
        assert seeded.status_code == 200, seeded.text
    status, body = await PATHS[way](service.client, case.op)
    if case.code is None:
        assert status == case.status, body
        if case.body is not ABSENT:
            assert body == case.body
        if case.check is not None:
            case.check(body)
        return
    assert set(body) == {"error"}, body
    error = body["error"]
    assert (status, error["code"], error["details"].get("path")) == (
        case.status,
        case.code,
        case.path,
    ), error
    if case.details is not None:
        assert error["details"] == case.details


def test_the_cases_have_unique_sentences() -> None:
    sentences = [case.sentence for case in CASES]
    assert len(sentences) == len(set(sentences))
