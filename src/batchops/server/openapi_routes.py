"""What a route declares its part of the OpenAPI document with: references to the shared
component schemas, parameters, JSON bodies, and its answers (the error envelope under
every error status, the rate-limit headers, where a job's id leads).

Every domain's router uses these, so this module imports no domain — the routes sit above
it and :mod:`batchops.server.openapi`, which assembles the document from the domains'
bounds, above them all. A route names a component schema by ``ref("Name")``: the schema
itself is defined in :mod:`batchops.server.openapi`, which refuses a document whose
references do not all resolve. A parameter or body whose rule a domain owns is declared by
that domain (a record's path, flag and header parameters in
:mod:`batchops.server.records.params`, an import's options in
:mod:`batchops.server.imports.openapi`); every list's page size is the one rule of
:mod:`batchops.server.limits`, declared here (:data:`LIMIT_PARAM`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from batchops.server.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

__all__ = [
    "AUTH",
    "BODY",
    "ERROR_STATUSES",
    "JOB_LINKS",
    "LIMIT_PARAM",
    "LOCATION",
    "RATE_HEADERS",
    "STORE",
    "anchored",
    "json_answer",
    "json_body",
    "param",
    "ref",
    "responses",
]


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name`` (one of
    :data:`batchops.server.openapi.SCHEMAS`)."""
    return {"$ref": f"#/components/schemas/{name}"}


def anchored(pattern: str) -> str:
    """``pattern``, which the server applies with ``re.fullmatch``, as JSON Schema reads it."""
    # Python's fullmatch is JSON Schema's (ECMA 262) search with both ends anchored.
    return f"^(?:{pattern})$"


# -- parameters ---------------------------------------------------------------------------

_PARAMETERS: dict[str, dict[str, Any]] = {
    "job_id": {"in": "path", "required": True, "schema": {"type": "string"}},
    "webhook_id": {"in": "path", "required": True, "schema": {"type": "string"}},
}
"""The shared parameters no domain bounds (a record's are in
:mod:`batchops.server.records.params`)."""

LIMIT_PARAM: Final[dict[str, Any]] = {
    "name": "limit",
    "in": "query",
    "description": "Page size.",
    "schema": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PAGE_SIZE,
        "default": DEFAULT_PAGE_SIZE,
    },
}
"""``?limit=`` of every list — records, jobs, webhook deliveries — by one rule
(:func:`batchops.server.limits.validate_limit`)."""


def param(name: str, **overrides: Any) -> dict[str, Any]:
    """The OpenAPI parameter ``name`` (a shared one, adjusted by ``overrides``; or a new one
    when ``overrides`` give at least ``in`` and ``schema``)."""
    return {"name": name, **_PARAMETERS.get(name, {}), **overrides}


# -- bodies -------------------------------------------------------------------------------


def json_body(schema: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is JSON of ``schema`` (declared by hand:
    the routes read the body themselves, to bound it and to answer the error envelope)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": dict(schema), **extra}},
        }
    }


# -- answers ------------------------------------------------------------------------------

RATE_HEADERS: Final = {
    "RateLimit-Policy": {
        "schema": {"type": "string"},
        "description": "The key's quota policies (IETF draft-ietf-httpapi-ratelimit-headers, "
        'a Structured Field List): `"requests";q=<per minute>;w=60` and, when '
        'operations are limited, `"operations";q=<per minute>;w=60;'
        'batchops-unit="operations"` (a batch costs its operation count).',
    },
    "RateLimit": {
        "schema": {"type": "string"},
        "description": "What is left of the policies this request was charged against: "
        '`"requests";r=<remaining>;t=<seconds until more quota>`, followed on a batch '
        'by `"operations";r=…;t=…`.',
    },
}
"""The key's budget: on a 429, and on every answer past the key when the server counts
requests (:func:`batchops.server.openapi.install` adds them there)."""
_RETRY_AFTER: Final = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
}

ERROR_STATUSES: Final[Mapping[int, str]] = {
    400: "The request is malformed (INVALID_REQUEST or a more precise code): not JSON, an "
    "unknown or missing field, a bad parameter; `details.path` names it.",
    401: "MISSING_API_KEY or INVALID_API_KEY (unknown or revoked).",
    403: "FORBIDDEN.",
    404: "Not found for this tenant (NOT_FOUND, JOB_NOT_FOUND, WEBHOOK_NOT_FOUND).",
    408: "REQUEST_TIMEOUT: no part of the body arrived for the server's read timeout; the "
    "connection is closed and nothing was applied.",
    409: "A conflict with the current state (CONFLICT, VERSION_MISMATCH, ...).",
    413: "The body is larger than the server takes (PAYLOAD_TOO_LARGE, "
    "INFLATION_RATIO_EXCEEDED for a gzip body).",
    415: "UNSUPPORTED_MEDIA_TYPE: the Content-Type or Content-Encoding is not taken here.",
    422: "VALIDATION_ERROR (or a more precise code): well-formed but invalid content; "
    "`details.path` names it.",
    429: "RATE_LIMITED: the key's budget is spent; retry after Retry-After seconds.",
    500: "INTERNAL_ERROR or STORE_ERROR: a fault of the server, never of the request.",
    503: "STORE_BUSY: the database is busy; retry after Retry-After seconds.",
    504: "TIMEOUT: a statement ran past the server's bound and was cancelled; narrow the request.",
}
"""What each error status means, anywhere (routes say more where they know more)."""

_STATUS_HEADERS: Final[Mapping[int, dict[str, Any]]] = {
    429: {"Retry-After": {**_RETRY_AFTER, "required": True}, **RATE_HEADERS},
    503: {"Retry-After": {**_RETRY_AFTER, "required": True}},
}

AUTH: Final = (401, 429)
"""Every route behind the API key: no or a bad key, the key's request budget."""
STORE: Final = (500, 503, 504)
"""Every route that runs a unit of work on the store."""
BODY: Final = (400, 408, 413, 415)
"""Every route that reads a request body."""


def _error(status: int, description: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description or ERROR_STATUSES[status],
        "content": {"application/json": {"schema": ref("ErrorEnvelope")}},
    }
    if status in _STATUS_HEADERS:
        answer["headers"] = dict(_STATUS_HEADERS[status])
    return answer


def responses(
    success: Mapping[int, Mapping[str, Any]],
    errors: Iterable[int],
    *,
    notes: Mapping[int, str] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: its ``success`` answers (status → OpenAPI response) and
    the error envelope under every status of ``errors``, described by ``notes`` where the
    route knows more than :data:`ERROR_STATUSES`."""
    out: dict[int | str, dict[str, Any]] = {code: dict(answer) for code, answer in success.items()}
    for status in sorted(set(errors)):
        out[status] = _error(status, (notes or {}).get(status))
    return out


def json_answer(
    schema: Mapping[str, Any],
    description: str,
    headers: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON success answer of ``schema``, with the ``links`` its body feeds."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": dict(schema)}},
    }
    if headers:
        answer["headers"] = dict(headers)
    if links:
        answer["links"] = dict(links)
    return answer


def _operation_ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


JOB_LINKS: Final = {
    name: {
        "operationRef": _operation_ref(path, method),
        "parameters": {"job_id": "$response.body#/id"},
        "description": description,
    }
    for name, path, method, description in (
        ("job", "/v1/jobs/{job_id}", "get", "The job's state and progress."),
        ("cancel", "/v1/jobs/{job_id}/cancel", "post", "Stop the job."),
        ("events", "/v1/jobs/{job_id}/events", "get", "Its progress, live."),
        ("failures", "/v1/jobs/{job_id}/failures", "get", "The rows it could not apply."),
        ("results", "/v1/jobs/{job_id}/results", "get", "What it did, once it ends."),
        ("deliveries", "/v1/jobs/{job_id}/deliveries", "get", "Its webhook deliveries."),
    )
}
"""Where a job's id leads (every answer that makes a job)."""


LOCATION: Final = {
    "Location": {
        "description": "Where the new resource is.",
        "required": True,
        "schema": {"type": "string"},
    }
}
