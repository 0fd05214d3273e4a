"""Schemathesis hooks of the contract gate (loaded with ``SCHEMATHESIS_HOOKS``).

A JSON Schema describes one value; a few rules of this API are about how values relate,
which no schema can state. Schemathesis draws *positive* cases (which the server must
accept) from the schema alone, so such a case may break one of these rules and be
refused, rightly. For positive cases only, these hooks make the drawn request keep the
rules — the smallest change that does — and leave the rest of it as drawn:

- ``POST /v1/batch``: ``depends_on`` names only earlier operations, and names are unique
  (docs/batch.md, "Naming operations"); a string holding ``${`` is a reference to an
  earlier result, so a drawn one is escaped (``$${``) to mean the text it was drawn as;
  a ``notification_webhook`` comes with ``Prefer: respond-async``; an
  ``Idempotency-Key`` names one body (the same key with another body is 422
  ``IDEMPOTENCY_KEY_REUSED``), so it is made the key *of that body*: a case drawn twice
  is still replayed.
- a list ``cursor`` (a query parameter, or a typed list operation's option) is one the
  API handed out (an opaque token: the encoded id a page ends at), so a drawn one becomes
  the encoding of the drawn text; a jobs list's (a job's created_at and id) the encoding
  of a fixed time and an id made from the drawn text.

Negative cases are never touched: what makes them invalid must reach the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.generation import GenerationMode
from schemathesis.hooks import HookContext

_NAME = re.compile(r"[^.${}\s]{1,128}")
_RECORD_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}")


@schemathesis.hook
def map_case(context: HookContext, case: Case[Any]) -> Case[Any]:
    """Make a positive case keep the rules no schema states (see the module docstring)."""
    meta = case.meta
    if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
        return case
    where = f"{case.method.upper()} {case.operation.path}"
    if where == "POST /v1/batch" and isinstance(case.body, dict):
        _batch(case)
    elif where == "GET /v1/collections/{collection}/records" and case.query:
        case.query = _with_real_cursor(case.query)
    elif where == "GET /v1/jobs" and case.query:
        case.query = _with_real_job_cursor(case.query)
    return case


def _batch(case: Case[Any]) -> None:
    body = case.body
    assert isinstance(body, dict)
    operations = body.get("operations")
    if isinstance(operations, list):
        operations = body["operations"] = _escape(operations)
        _keep_names(operations)
        for op in operations:
            options = op.get("options") if isinstance(op, dict) else None
            if op.get("type") == "list" and isinstance(options, dict):
                op["options"] = _with_real_cursor(options)
    if body.get("notification_webhook") is not None:
        case.headers["Prefer"] = "respond-async"
    key = case.headers.get("Idempotency-Key")
    if key is not None:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        case.headers["Idempotency-Key"] = f"{str(key)[:200]}-{digest}"


def _escape(value: Any) -> Any:
    """``value`` with every ``${`` in its strings written ``$${``: the text as drawn."""
    if isinstance(value, str):
        return value.replace("${", "$${") if "${" in value else value
    if isinstance(value, list):
        return [_escape(item) for item in value]
    if isinstance(value, dict):
        return {key: _escape(item) for key, item in value.items()}
    return value


def _keep_names(operations: list[Any]) -> None:
    """Unique names; ``depends_on`` naming earlier operations only."""
    seen: set[str] = set()
    for index, op in enumerate(operations):
        if not isinstance(op, dict):
            continue
        field = "id" if "method" in op else "ref"
        name = op.get(field)
        if isinstance(name, str) and name in seen:
            name = op[field] = f"{name[:100]}~{index}"
        depends_on = op.get("depends_on")
        if isinstance(depends_on, list):
            op["depends_on"] = [n for n in depends_on if not isinstance(n, str) or n in seen]
        if isinstance(name, str) and _NAME.fullmatch(name):
            seen.add(name)


def _with_real_cursor(query: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(query.get("cursor"), str):
        return query
    text = query["cursor"]
    if not _RECORD_ID.fullmatch(text):
        return {name: value for name, value in query.items() if name != "cursor"}
    return {**query, "cursor": base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")}


def _with_real_job_cursor(query: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(query.get("cursor"), str):
        return query
    job_id = "j" + hashlib.sha256(query["cursor"].encode()).hexdigest()[:32]
    position = json.dumps(["2026-01-01T00:00:00.000Z", job_id]).encode()
    return {**query, "cursor": base64.urlsafe_b64encode(position).decode().rstrip("=")}
