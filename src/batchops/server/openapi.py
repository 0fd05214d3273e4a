"""The OpenAPI document, told true: every shared component schema (the error envelope
among them), the security schemes, and :func:`install`, which puts them in the document
``/openapi.json`` serves.

The routes (``responses=`` and ``openapi_extra=`` on FastAPI routes, ``OPENAPI_PATHS`` for
the plain Starlette ``POST /v1/batch``) declare their part with the helpers of
:mod:`batchops.server.openapi_routes` and refer to the components here by name, so a
shape is written once. Bounds come from the constants the server enforces
(:mod:`batchops.server.limits`, the domains' rules, the settings of the running app),
never from copies: this module reads every domain, so only the app (the top) imports it.

Why it matters: ``tests/contract/test_schemathesis.py`` runs schemathesis against a real
``batchops serve`` with every check on — a status, a header, a content type or a body the
document does not declare is a failure, and so is a request the document calls valid that
the server refuses (or one it calls invalid that the server takes).

(One module past 500 lines on purpose: it is the one table of the document's shared
schemas, read top to bottom; the routes' own parts live with the routes.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from fastapi import FastAPI

from batchops.server.batch.refs import NAME_RE
from batchops.server.bulk.service import MAX_IDS
from batchops.server.jobs.schemas import JOB_STATES, JOB_TYPES, MAX_CHUNK_SIZE
from batchops.server.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_FILTER_PATH_CHARS,
    MAX_FILTER_SEGMENTS,
    MAX_FILTERS,
    MAX_JSON_DEPTH,
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    MAX_SEARCH_TERMS,
    UINT64_MAX,
)
from batchops.server.openapi_routes import RATE_HEADERS, anchored, ref
from batchops.server.records.params import FLAG_VALUES, IF_MATCH_PARAM
from batchops.server.records.schemas import (
    COLLECTION_PATTERN,
    DEFAULT_SEARCH_SIZE,
    RECORD_ID_PATTERN,
)
from batchops.server.settings import Settings
from batchops.server.webhooks.schemas import EVENTS, MAX_SECRET_LENGTH, MIN_SECRET_LENGTH
from batchops.server.webhooks.targets import MAX_URL_LENGTH, URL_PATTERN

__all__ = [
    "BEARER",
    "SCHEMAS",
    "SECURITY_SCHEMES",
    "install",
]


# -- values -------------------------------------------------------------------------------

_NO_NUL = "^[^\\u0000]*$"
"""Text without U+0000, which PostgreSQL cannot hold (refused on both backends)."""
_PY_SPACE = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
"""What Python calls whitespace (``str.isspace``, ``\\s``, ``str.strip``) as a regex class
body: JSON Schema's ``\\s`` (ECMA 262) is another set (no U+001C-U+001F or U+0085, but
U+FEFF), so the document spells the server's out."""
_NOT_BLANK = f"[^{_PY_SPACE}]"
"""Holds a character that is not whitespace (``text.strip()`` is not empty)."""
_RFC3339 = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}
_OUTCOMES = ("total", "succeeded", "failed", "skipped")

_URL: dict[str, Any] = {
    "type": "string",
    "maxLength": MAX_URL_LENGTH,
    "description": "An absolute http(s) URL of printable ASCII, e.g. "
    "https://hooks.example.com/batchops: its host a name (IDN names as xn--) or an IP address.",
    "pattern": anchored(URL_PATTERN),
}
_EVENTS: dict[str, Any] = {
    "type": ["array", "null"],
    "description": "The events to be called for (null or absent: all).",
    "items": {"type": "string", "enum": list(EVENTS)},
    "minItems": 1,
    "default": list(EVENTS),
}

_SCALAR: dict[str, Any] = {
    "description": "A JSON scalar: text without U+0000, a number (an integer written as one "
    f"must lie within signed 64 bits, {INT64_MIN} to {INT64_MAX}), a boolean or null.",
    "type": ["string", "number", "boolean", "null"],
    "pattern": _NO_NUL,  # binds strings only
}

_BULK_OPTIONS: dict[str, Any] = {
    "dry_run": {"type": "boolean", "default": False},
    "limit": {"type": ["integer", "null"], "minimum": 1, "maximum": INT64_MAX},
    "chunk_size": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CHUNK_SIZE},
    "notification_webhook": {
        "description": "Given, the request always runs as a job (202).",
        "anyOf": [{"$ref": "#/components/schemas/NotificationWebhook"}, {"type": "null"}],
    },
}
"""What both bulk requests take besides their selection."""

SCHEMAS: dict[str, Any] = {
    # -- the error envelope (every non-2xx answer) ------------------------------------------
    "Error": {
        "type": "object",
        "description": "What went wrong: a stable machine-readable `code`, a message for "
        "people, and `details` (`path` names the faulty field, when there is one).",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
        "additionalProperties": False,
    },
    "ErrorEnvelope": {
        "type": "object",
        "description": 'Every error, anywhere: `{"error": {"code", "message", "details"}}`.',
        "required": ["error"],
        "properties": {"error": {"$ref": "#/components/schemas/Error"}},
        "additionalProperties": False,
    },
    # -- JSON record data -------------------------------------------------------------------
    "JsonValue": {
        "description": "Any JSON value a record can hold: no U+0000 in text, an integer "
        f"written as one from {INT64_MIN} to {UINT64_MAX} (send larger ones as strings; a "
        "float may be any size), at most "
        f"{MAX_JSON_DEPTH} levels of nested objects and arrays.",
        # One schema over every JSON type (each keyword binds only its own type) rather
        # than a union of one schema per type: the same values, and no union to negate.
        "type": ["string", "number", "boolean", "null", "array", "object"],
        "pattern": _NO_NUL,
        "items": {"$ref": "#/components/schemas/JsonValue"},
        "propertyNames": {"pattern": _NO_NUL},
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    },
    "RecordData": {
        "type": "object",
        "description": "A record's data: any JSON object (see JsonValue for what it may hold).",
        "propertyNames": {"pattern": _NO_NUL},
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    },
    "Filters": {
        "type": "object",
        "description": "Equality filters: a dot path into `data` → the value it must equal.",
        "maxProperties": MAX_FILTERS,
        "propertyNames": {
            "maxLength": MAX_FILTER_PATH_CHARS,
            "pattern": anchored(
                f"[A-Za-z0-9_-]+(?:\\.[A-Za-z0-9_-]+){{0,{MAX_FILTER_SEGMENTS - 1}}}"
            ),
        },
        "additionalProperties": _SCALAR,
    },
    # -- records ----------------------------------------------------------------------------
    "Record": {
        "type": "object",
        "required": ["id", "collection", "data", "version", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "pattern": anchored(RECORD_ID_PATTERN)},
            "collection": {"type": "string", "pattern": anchored(COLLECTION_PATTERN)},
            "data": {"$ref": "#/components/schemas/RecordData"},
            "version": {"type": "integer", "minimum": 1},
            "created_at": _RFC3339,
            "updated_at": _RFC3339,
            "deleted_at": {
                **_RFC3339,
                "description": "Only on a soft-deleted record (read with include_deleted).",
            },
        },
        "additionalProperties": False,
    },
    "RecordCreate": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": anchored(RECORD_ID_PATTERN),
                "description": "Your own id; without one the server makes a time-ordered one.",
            },
            "data": {"$ref": "#/components/schemas/RecordData"},
        },
        "additionalProperties": False,
    },
    "RecordWrite": {
        "type": "object",
        "description": "PATCH: an RFC 7386 merge patch of `data` (null removes a member); "
        "PUT: the new `data`, whole.",
        "required": ["data"],
        "properties": {"data": {"$ref": "#/components/schemas/RecordData"}},
        "additionalProperties": False,
    },
    "RecordDeleted": {
        "type": "object",
        "required": ["id", "collection", "deleted", "hard", "version"],
        "properties": {
            "id": {"type": "string"},
            "collection": {"type": "string"},
            "deleted": {"const": True},
            "hard": {"type": "boolean"},
            "version": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": False,
    },
    "RecordPage": {
        "type": "object",
        "required": ["records", "next_cursor"],
        "properties": {
            "records": {
                "type": "array",
                "maxItems": MAX_PAGE_SIZE,
                "items": {"$ref": "#/components/schemas/Record"},
            },
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last one.",
            },
        },
        "additionalProperties": False,
    },
    "SearchRequest": {
        "type": "object",
        "required": ["query"],
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUERY_CHARS,
                "pattern": _NOT_BLANK,
                "description": "Every word must occur in the record's text values (whole "
                f"words, case ignored); at most {MAX_SEARCH_TERMS} distinct words.",
            },
            "filters": {
                "anyOf": [{"$ref": "#/components/schemas/Filters"}, {"type": "null"}],
            },
            "limit": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "default": DEFAULT_SEARCH_SIZE,
            },
        },
        "additionalProperties": False,
    },
    "SearchResult": {
        "type": "object",
        "required": ["results", "total"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["record", "score"],
                    "properties": {
                        "record": {"$ref": "#/components/schemas/Record"},
                        "score": {"type": "number"},
                    },
                    "additionalProperties": False,
                },
            },
            "total": _COUNT,
        },
        "additionalProperties": False,
    },
    # -- webhooks ---------------------------------------------------------------------------
    "NotificationWebhook": {
        "type": "object",
        "description": "A job's own webhook, called when the job ends (docs/jobs.md#webhooks). "
        "Its host must resolve to public addresses only (422 WEBHOOK_TARGET_NOT_ALLOWED "
        "otherwise) unless the server allows private webhooks.",
        "required": ["url", "secret"],
        "properties": {
            "url": _URL,
            "events": _EVENTS,
            "secret": {
                "type": "string",
                "minLength": MIN_SECRET_LENGTH,
                "maxLength": MAX_SECRET_LENGTH,
                "pattern": _NO_NUL,
            },
        },
        "additionalProperties": False,
    },
    "WebhookCreate": {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": _URL,
            "events": _EVENTS,
            "secret": {
                "type": ["string", "null"],
                "minLength": MIN_SECRET_LENGTH,
                "maxLength": MAX_SECRET_LENGTH,
                "pattern": _NO_NUL,
                "description": "Omit it (or null) to have one generated (shown once, in the 201).",
            },
        },
        "additionalProperties": False,
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "events", "created_at", "links"],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENTS)}},
            "created_at": _RFC3339,
            "links": {
                "type": "object",
                "required": ["self", "deliveries"],
                "properties": {"self": {"type": "string"}, "deliveries": {"type": "string"}},
                "additionalProperties": False,
            },
            "secret": {
                "type": "string",
                "description": "Only in the 201 that created the subscription.",
            },
        },
        "additionalProperties": False,
    },
    "WebhookList": {
        "type": "object",
        "required": ["webhooks"],
        "properties": {
            "webhooks": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}}
        },
        "additionalProperties": False,
    },
    "Delivery": {
        "type": "object",
        "required": [
            "id",
            "webhook_id",
            "job_id",
            "event",
            "url",
            "state",
            "attempt_count",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "finished_at",
            "attempts",
        ],
        "properties": {
            "id": {"type": "string"},
            "webhook_id": {"type": "string"},
            "job_id": {"type": ["string", "null"]},
            "event": {"type": "string", "enum": list(EVENTS)},
            "url": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "succeeded", "failed", "cancelled"]},
            "attempt_count": _COUNT,
            "next_attempt_at": _NULLABLE_TIME,
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "created_at": _RFC3339,
            "finished_at": _NULLABLE_TIME,
            "attempts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "attempt",
                        "at",
                        "status_code",
                        "error",
                        "duration_ms",
                        "next_retry_at",
                    ],
                    "properties": {
                        "attempt": {"type": "integer", "minimum": 1},
                        "at": _RFC3339,
                        "status_code": {"type": ["integer", "null"]},
                        "error": {"type": ["string", "null"]},
                        "duration_ms": {"type": "number", "minimum": 0},
                        "next_retry_at": _NULLABLE_TIME,
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
    "DeliveryList": {
        "type": "object",
        "required": ["deliveries"],
        "properties": {
            "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}
        },
        "additionalProperties": False,
    },
    "WebhookEvent": {
        "type": "object",
        "description": "The body of the POST a webhook target receives when a job ends "
        "(signed: X-Batchops-Signature, see docs/jobs.md#webhooks).",
        "required": ["delivery_id", "webhook_id", "event", "created_at", "job"],
        "properties": {
            "delivery_id": {"type": "string"},
            "webhook_id": {"type": "string"},
            "event": {"type": "string", "enum": list(EVENTS)},
            "created_at": _RFC3339,
            "job": {
                "type": "object",
                "description": "The job as it ended (the counters of GET /v1/jobs/{id}).",
                "required": ["id", "type", "state", "links"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string", "enum": list(JOB_TYPES)},
                    "state": {"type": "string", "enum": list(JOB_STATES)},
                    "links": {"type": "object"},
                },
            },
        },
    },
    # -- jobs -------------------------------------------------------------------------------
    "Job": {
        "type": "object",
        "required": [
            "id",
            "type",
            "state",
            "collection",
            "total",
            "processed",
            "succeeded",
            "failed",
            "percentage",
            "eta_s",
            "checkpoint",
            "attempts",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "options",
            "links",
        ],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "enum": list(JOB_TYPES)},
            "state": {"type": "string", "enum": list(JOB_STATES)},
            "collection": {"type": ["string", "null"]},
            "total": {"type": ["integer", "null"], "minimum": 0},
            "processed": _COUNT,
            "succeeded": _COUNT,
            "failed": _COUNT,
            "percentage": {"type": "number", "minimum": 0, "maximum": 100},
            "eta_s": {"type": ["number", "null"], "minimum": 0},
            "checkpoint": _COUNT,
            "attempts": {
                **_COUNT,
                "description": "How many times a server started running the job (a clean "
                "shutdown's hand-back does not count). Past BATCHOPS_JOB_MAX_ATTEMPTS the job "
                "fails ATTEMPTS_EXHAUSTED.",
            },
            "cancel_requested": {"type": "boolean"},
            "created_at": _RFC3339,
            "started_at": _NULLABLE_TIME,
            "finished_at": _NULLABLE_TIME,
            "error": {
                "type": ["object", "null"],
                "description": 'Why a failed job failed (docs/jobs.md, "Job errors"): '
                "e.g. VALIDATION_FAILED, INVALID_CSV, INVALID_JSON, STORE_BUSY, "
                "ATTEMPTS_EXHAUSTED (with `attempts`), UNKNOWN_JOB_TYPE, INTERNAL_ERROR.",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "options": {"type": "object", "description": "What the job was asked to do."},
            "links": {
                "type": "object",
                "required": ["self", "events", "failures"],
                "properties": {
                    "self": {"type": "string"},
                    "events": {"type": "string"},
                    "failures": {"type": "string"},
                    "results": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "next_cursor"],
        "properties": {
            "jobs": {
                "type": "array",
                "maxItems": MAX_PAGE_SIZE,
                "items": {"$ref": "#/components/schemas/Job"},
            },
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last one.",
            },
        },
        "additionalProperties": False,
    },
    "JobEvent": {
        "type": "object",
        "description": "One Server-Sent Event of GET /v1/jobs/{id}/events.",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["progress", "complete", "error"]},
            "id": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "The job's revision (resume with Last-Event-ID).",
            },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": "#/components/schemas/Job"},
            },
        },
    },
    "JobFailure": {
        "type": "object",
        "description": "One line of the NDJSON failures stream.",
        "required": ["row", "code", "message", "input"],
        "properties": {
            "row": {"type": "integer", "minimum": 1},
            "code": {"type": "string"},
            "message": {"type": "string"},
            "input": {"type": "string"},
        },
        "additionalProperties": False,
    },
    # -- bulk -------------------------------------------------------------------------------
    "BulkUpdateRequest": {
        "type": "object",
        "required": ["collection", "filter", "update"],
        "properties": {
            "collection": {"type": "string", "pattern": anchored(COLLECTION_PATTERN)},
            "filter": {"$ref": "#/components/schemas/Filters"},
            "update": {"$ref": "#/components/schemas/RecordData"},
            **_BULK_OPTIONS,
        },
        "additionalProperties": False,
    },
    "BulkDeleteRequest": {
        "type": "object",
        "description": "Select the records by `filter` or by `ids`, not both.",
        "required": ["collection"],
        "properties": {
            "collection": {"type": "string", "pattern": anchored(COLLECTION_PATTERN)},
            "filter": {"$ref": "#/components/schemas/Filters"},
            "ids": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_IDS,
                "items": {"type": "string", "pattern": anchored(RECORD_ID_PATTERN)},
            },
            "soft": {"type": "boolean", "default": True},
            **_BULK_OPTIONS,
        },
        "oneOf": [{"required": ["filter"]}, {"required": ["ids"]}],
        "additionalProperties": False,
    },
    "BulkResult": {
        "type": "object",
        "description": "What an inline bulk request did (and a finished bulk job's results).",
        "required": ["operation", "collection", "dry_run", "matched", "ids"],
        "properties": {
            "operation": {"type": "string", "enum": ["update", "delete"]},
            "collection": {"type": "string"},
            "dry_run": {"type": "boolean"},
            "matched": _COUNT,
            "updated": _COUNT,
            "deleted": _COUNT,
            "soft": {"type": "boolean"},
            "ids": {"type": "array", "items": {"type": "string"}},
            "not_found": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": False,
    },
    # -- POST /v1/batch ---------------------------------------------------------------------
    "BatchOptions": {
        "type": "object",
        "properties": {
            "atomic": {"type": "boolean", "default": False},
            "continue_on_error": {
                "type": "boolean",
                "default": True,
                "description": "Must not be true with atomic: true (400).",
            },
            "parallel": {
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": "Independent reads (read, list, search without depends_on "
                "or a reference) run first, this many at once counting the batch's own "
                "connection; they see the data as committed before the batch's writes.",
            },
            "timeout_ms": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "The deadline of the whole batch (default: the server's).",
            },
            "suppress_success": {"type": "boolean", "default": False},
            "validate_only": {"type": "boolean", "default": False},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 0},
        },
        "additionalProperties": False,
        "not": {
            "description": "atomic with continue_on_error: true is contradictory (400).",
            "required": ["atomic", "continue_on_error"],
            "properties": {"atomic": {"const": True}, "continue_on_error": {"const": True}},
        },
    },
    "BatchResult": {
        "type": "object",
        "description": "One operation's result, in input order: `body` (what the REST route "
        "answers) on success, `error` otherwise.",
        "required": ["index", "type", "status"],
        "properties": {
            "index": _COUNT,
            "id": {"type": "string", "description": "The operation's name, if it has one."},
            "type": {
                "type": "string",
                "enum": [
                    "create",
                    "read",
                    "update",
                    "replace",
                    "delete",
                    "restore",
                    "search",
                    "list",
                    "invalid",
                ],
            },
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "body": {},
            "error": {"$ref": "#/components/schemas/Error"},
        },
        "additionalProperties": False,
    },
    "BatchMeta": {
        "type": "object",
        "required": ["total", "succeeded", "failed", "skipped", "duration_ms", "by_type", "cost"],
        "properties": {
            "total": _COUNT,
            "succeeded": _COUNT,
            "failed": _COUNT,
            "skipped": _COUNT,
            "duration_ms": {"type": "number", "minimum": 0},
            "by_type": {
                "type": "object",
                "description": "Per operation type: how many, and how they ended.",
                "additionalProperties": {
                    "type": "object",
                    "required": list(_OUTCOMES),
                    "properties": dict.fromkeys(_OUTCOMES, _COUNT),
                    "additionalProperties": False,
                },
            },
            "cost": {
                "type": "object",
                "required": ["operations", "reads", "writes", "searches", "invalid", "units"],
                "properties": dict.fromkeys(
                    ("operations", "reads", "writes", "searches", "invalid", "units"), _COUNT
                ),
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "BatchResponse": {
        "type": "object",
        "required": ["batch_id", "committed", "results", "meta"],
        "properties": {
            "batch_id": {"type": "string"},
            "committed": {"type": "boolean"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/BatchResult"}},
            "meta": {"$ref": "#/components/schemas/BatchMeta"},
        },
        "additionalProperties": False,
    },
    "BatchStreamLine": {
        "description": "One line of an NDJSON batch answer: a result as it commits, then one "
        "final line with the status the plain answer would have had (or an error envelope "
        "if the batch failed after the stream began).",
        "anyOf": [
            {"$ref": "#/components/schemas/BatchResult"},
            {
                "type": "object",
                "required": ["batch_id", "committed", "status", "meta"],
                "properties": {
                    "batch_id": {"type": "string"},
                    "committed": {"type": "boolean"},
                    "status": {"type": "integer"},
                    "meta": {"$ref": "#/components/schemas/BatchMeta"},
                },
                "additionalProperties": False,
            },
            {"$ref": "#/components/schemas/ErrorEnvelope"},
        ],
    },
}
"""Every component schema of the document (``#/components/schemas/<name>``); the batch
request's own schemas are added by :func:`_batch_schemas`."""


# -- POST /v1/batch: the operations of both dialects --------------------------------------

_NAME_PATTERN = anchored(NAME_RE.pattern.replace("\\s", _PY_SPACE))
_OP_NAME = {
    "type": "string",
    "pattern": _NAME_PATTERN,
    "description": "Names the operation, for depends_on and ${name.path} references: "
    "unique within the batch.",
}
_COMMON_OP: dict[str, Any] = {
    "depends_on": {
        "type": ["array", "null"],
        "items": {"type": "string", "pattern": _NAME_PATTERN},
        "description": "Names of EARLIER operations that must succeed first (else 424).",
    },
    "atomicity_group": {
        "type": ["string", "null"],
        "minLength": 1,
        "description": "Operations of one group are all or nothing, the rest independent.",
    },
}
_REST_PATH_PREFIX = f"/v1/collections/{COLLECTION_PATTERN}"
_REST_RECORD = f"{_REST_PATH_PREFIX}/records/{RECORD_ID_PATTERN}"
_BOOL_QUERY = f"(?:{'|'.join(FLAG_VALUES)})"
_REST_KINDS: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    # (operation type, method, path, body schema or None for no body)
    ("create", "POST", f"{_REST_PATH_PREFIX}/records", ref("RecordCreate")),
    ("list", "GET", f"{_REST_PATH_PREFIX}/records(?:\\?limit=(?:1000|[1-9][0-9]{{0,2}}))?", None),
    ("read", "GET", f"{_REST_RECORD}(?:\\?include_deleted={_BOOL_QUERY})?", None),
    ("update", "PATCH", _REST_RECORD, ref("RecordWrite")),
    ("replace", "PUT", _REST_RECORD, ref("RecordWrite")),
    ("delete", "DELETE", f"{_REST_RECORD}(?:\\?hard={_BOOL_QUERY})?", None),
    ("restore", "POST", f"{_REST_RECORD}/restore", None),
    ("search", "POST", f"{_REST_PATH_PREFIX}/search", ref("SearchRequest")),
)
_IF_MATCH_NAME = "^[Ii][Ff]-[Mm][Aa][Tt][Cc][Hh]$"  # header names ignore case
_IF_MATCH_HEADER = {
    "type": ["object", "null"],
    "description": "Request headers of the operation: only If-Match is read.",
    "patternProperties": {_IF_MATCH_NAME: IF_MATCH_PARAM["schema"]},
    "additionalProperties": {"type": "string"},
}
_NO_IF_MATCH_HEADER = {
    "type": ["object", "null"],
    "description": "Request headers of the operation: ignored (If-Match is refused here).",
    "propertyNames": {"not": {"pattern": _IF_MATCH_NAME}},
    "additionalProperties": {"type": "string"},
}
_TYPED_FIELDS: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "pattern": anchored(RECORD_ID_PATTERN)},
    "data": ref("RecordData"),
    "query": SCHEMAS["SearchRequest"]["properties"]["query"],
    "if_match": {"type": ["integer", "null"], "minimum": 0, "maximum": INT64_MAX},
}
_IF_MATCH_KINDS = frozenset({"update", "replace", "delete", "restore"})
_LIST_OPTIONS = {
    "filters": ref("Filters"),
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    "cursor": {"type": "string"},
}
_TYPED_KINDS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], dict[str, Any]], ...] = (
    # (type, required fields, optional fields, options)
    ("create", ("data",), ("id",), {}),
    ("read", ("id",), (), {"include_deleted": {"type": "boolean"}}),
    ("update", ("id", "data"), ("if_match",), {}),
    ("replace", ("id", "data"), ("if_match",), {}),
    ("delete", ("id",), ("if_match",), {"hard": {"type": "boolean"}}),
    ("restore", ("id",), ("if_match",), {}),
    ("search", ("query",), (), {"filters": ref("Filters"), "limit": _LIST_OPTIONS["limit"]}),
    ("list", (), (), _LIST_OPTIONS),
)


def _rest_operation(kind: str, method: str, path: str, body: dict[str, Any] | None) -> Any:
    properties: dict[str, Any] = {
        "method": {"const": method},
        "path": {"type": "string", "pattern": anchored(path)},
        "id": {**_OP_NAME, "type": ["string", "null"]},
        "headers": _IF_MATCH_HEADER if kind in _IF_MATCH_KINDS else _NO_IF_MATCH_HEADER,
        **_COMMON_OP,
    }
    if body is not None:
        properties["body"] = body
    return {
        "type": "object",
        "title": f"REST {kind}",
        "required": ["method", "path", *(["body"] if body is not None else [])],
        "properties": properties,
        "additionalProperties": False,
    }


def _typed_operation(
    kind: str, required: tuple[str, ...], optional: tuple[str, ...], options: dict[str, Any]
) -> Any:
    properties: dict[str, Any] = {
        "type": {"const": kind},
        "collection": {"type": "string", "pattern": anchored(COLLECTION_PATTERN)},
        "ref": {**_OP_NAME, "type": ["string", "null"]},
        **{name: _TYPED_FIELDS[name] for name in (*required, *optional)},
        **_COMMON_OP,
    }
    if options:
        properties["options"] = {
            "type": ["object", "null"],
            "properties": options,
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "title": f"typed {kind}",
        "required": ["type", "collection", *required],
        "properties": properties,
        "additionalProperties": False,
    }


def _batch_schemas(max_operations: int) -> dict[str, Any]:
    return {
        "BatchOperation": {
            "description": "One operation, in either dialect (docs/batch.md): REST (`method` "
            "+ `path`; `id` names it) or typed (`type` + `collection`; `id` is the record "
            "id, `ref` names it). A string may instead be a `${name.path}` reference to an "
            "earlier result. An operation that breaks these rules fails alone (its result "
            "carries the 4xx) unless the batch is atomic.",
            "oneOf": [
                *(_rest_operation(*kind) for kind in _REST_KINDS),
                *(_typed_operation(*kind) for kind in _TYPED_KINDS),
            ],
        },
        "BatchRequest": {
            "type": "object",
            "required": ["operations"],
            "properties": {
                "operations": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_operations,
                    "items": {"$ref": "#/components/schemas/BatchOperation"},
                },
                "options": ref("BatchOptions"),
                "notification_webhook": {
                    "description": "Only with `Prefer: respond-async` (400 otherwise): "
                    "called when the batch job ends.",
                    "anyOf": [ref("NotificationWebhook"), {"type": "null"}],
                },
            },
            "additionalProperties": False,
        },
    }


SCHEMAS.update(_batch_schemas(Settings().max_batch_operations))


# -- the document -------------------------------------------------------------------------

BEARER: Final = "bearerAuth"
_API_KEY_HEADER: Final = "apiKeyHeader"
SECURITY_SCHEMES: Final[Mapping[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>`: an API key from `batchops keys create` "
        "(keys are per tenant; every route sees that tenant's data only).",
    },
    _API_KEY_HEADER: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key as `X-API-Key: <key>`.",
    },
}
_SECURITY: Final[list[dict[str, list[str]]]] = [{BEARER: []}, {_API_KEY_HEADER: []}]


def install(app: FastAPI, settings: Settings, extra_paths: Mapping[str, Any]) -> None:
    """Serve the true document at ``/openapi.json``: FastAPI's, with ``extra_paths`` (plain
    Starlette routes), the shared components, the security schemes on every operation
    that does not declare its own, and the limits of ``settings``.

    Every ``$ref`` to a component schema must name one (the routes write them with
    :func:`batchops.server.openapi_routes.ref`, which cannot check).

    Two artefacts of FastAPI are corrected, for every route at once:

    - its automatic 422 ``HTTPValidationError`` is dropped: this app answers request
      validation errors as 400 envelopes (see :func:`batchops.server.http.install_error_handlers`);
    - a parameter a route declares in ``openapi_extra`` replaces the one FastAPI
      derived from the signature (FastAPI would list both).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("paths", {}).update(extra_paths)
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for fastapi_own in ("HTTPValidationError", "ValidationError"):
                schemas.pop(fastapi_own, None)
            schemas.update(SCHEMAS)
            schemas.update(_batch_schemas(settings.max_batch_operations))
            components["securitySchemes"] = dict(SECURITY_SCHEMES)
            rate_limited = settings.rate_limit_requests_per_minute > 0
            for item in document["paths"].values():
                for operation in item.values():
                    _correct(operation, rate_limited=rate_limited)
            document["webhooks"] = _WEBHOOKS
            dangling = sorted(set(_dangling_refs(document, schemas)))
            assert not dangling, f"references to no schema: {dangling}"
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _correct(operation: dict[str, Any], *, rate_limited: bool) -> None:
    answers: dict[str, Any] = operation.setdefault("responses", {})
    for status, answer in list(answers.items()):
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref") == "#/components/schemas/HTTPValidationError":
            del answers[status]
    parameters = operation.get("parameters")
    if parameters:
        unique: dict[tuple[str, str], Any] = {}
        for parameter in parameters:  # FastAPI's first, then the route's own
            unique[(parameter["in"], parameter["name"].lower())] = parameter
        operation["parameters"] = list(unique.values())
    if "security" in operation:
        return  # a route that declares its own (``[]``: open to all)
    operation["security"] = _SECURITY
    for status, answer in answers.items():
        # Once the key is known, every answer carries the key's request budget (when the
        # server counts requests): only a 401 comes before it.
        if status != "401" and rate_limited:
            headers = answer.setdefault("headers", {})
            for name, header in RATE_HEADERS.items():
                headers.setdefault(name, {**header, "required": True})


_SCHEMA_REF: Final = "#/components/schemas/"


def _dangling_refs(node: Any, schemas: Mapping[str, Any]) -> Iterator[str]:
    """The references to a component schema under ``node`` that name none of ``schemas``."""
    if isinstance(node, dict):
        target = node.get("$ref")
        if (
            isinstance(target, str)
            and target.startswith(_SCHEMA_REF)
            and target.removeprefix(_SCHEMA_REF) not in schemas
        ):
            yield target
        for value in node.values():
            yield from _dangling_refs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            yield from _dangling_refs(value, schemas)


_WEBHOOKS: Final = {
    "jobEnded": {
        "post": {
            "summary": "A job ended (sent to webhook targets, signed)",
            "description": "Sent to a tenant's subscriptions and a job's own "
            "notification_webhook; headers X-Batchops-Event, X-Batchops-Delivery, "
            "X-Batchops-Attempt, X-Batchops-Timestamp and X-Batchops-Signature "
            "(sha256=HMAC-SHA256(secret, f'{timestamp}.{body}')). Answer any 2xx.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("WebhookEvent")}},
            },
            "responses": {"200": {"description": "Delivered (any 2xx)."}},
        }
    }
}
