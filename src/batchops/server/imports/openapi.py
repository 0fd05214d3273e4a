"""What the OpenAPI document says of ``POST /v1/imports``: its options (query parameters,
or text fields of a multipart body) and the four shapes of its body, bound by the rules
:mod:`batchops.server.imports.options` applies (the formats and field types of
:mod:`batchops.server.imports.rows`, the jobs' chunk size, the records' collection names).
"""

from __future__ import annotations

from typing import Any, Final

from batchops.server.imports.rows import FIELD_TYPES, FORMATS
from batchops.server.jobs.schemas import MAX_CHUNK_SIZE
from batchops.server.openapi_routes import anchored, ref
from batchops.server.records.schemas import COLLECTION_PATTERN

__all__ = ["import_parameters"]

_FIELD_PATH = anchored("[A-Za-z0-9_-]+(?:\\.[A-Za-z0-9_-]+)*")
_IMPORT_OPTIONS: Final[dict[str, dict[str, Any]]] = {
    "collection": {"type": "string", "pattern": anchored(COLLECTION_PATTERN)},
    "format": {
        "type": "string",
        "enum": list(FORMATS),
        "description": "Default: from the media type, else the file name's extension.",
    },
    "validation": {
        "type": "string",
        "enum": ["strict", "lenient"],
        "default": "strict",
        "description": "strict: one bad row fails the job and nothing is imported; "
        "lenient: bad rows are skipped and listed as failures.",
    },
    "dry_run": {"type": "boolean", "default": False},
    "upsert_key": {
        "type": "string",
        "pattern": _FIELD_PATH,
        "description": "A data field: a row whose value matches a record's replaces it.",
    },
    "chunk_size": {"type": "integer", "minimum": 1, "maximum": MAX_CHUNK_SIZE},
}


def _field_spec(*, field_required: bool) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "pattern": _FIELD_PATH},
            {
                "type": "object",
                "required": ["field"] if field_required else [],
                "properties": {
                    "field": {"type": "string", "pattern": _FIELD_PATH},
                    "type": {"type": "string", "enum": list(FIELD_TYPES), "default": "string"},
                },
                "additionalProperties": False,
            },
        ]
    }


_MAPPING: Final = {
    "type": "object",
    "description": "JSON: CSV column → the field it fills (a name or dot path) and its type "
    "(default: the column name, string); every column named must be in the CSV header "
    "(422 otherwise). A column that is not itself a field name must name its field.",
    "minProperties": 1,
    "patternProperties": {_FIELD_PATH: _field_spec(field_required=False)},
    "additionalProperties": _field_spec(field_required=True),
}


def import_parameters() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /v1/imports``: its options (query parameters, or text
    fields of a multipart body) and the four shapes of its body."""
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": name == "collection",
            "schema": schema,
        }
        for name, schema in _IMPORT_OPTIONS.items()
    ]
    parameters += [
        {"name": "mapping", "in": "query", "content": {"application/json": {"schema": _MAPPING}}},
        {
            "name": "notification_webhook",
            "in": "query",
            "description": "JSON: a webhook called when the job ends.",
            "content": {"application/json": {"schema": ref("NotificationWebhook")}},
        },
    ]
    # A raw body is bytes, not a JSON value: no `type` (a JSON type means nothing on the
    # wire here). What the server needs of it: a byte that bytes.strip() keeps (else 400
    # EMPTY_UPLOAD).
    text = {"minLength": 1, "pattern": "[^\\t\\n\\u000b\\u000c\\r ]"}
    return {
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "description": "The file, raw (its media type names the format, unless format= "
            "does: also application/csv, application/ndjson, application/jsonl and "
            "application/x-jsonlines; gzip with Content-Encoding), or the `file` part of a "
            "multipart body whose other parts may carry the options instead of the query "
            "string.",
            "content": {
                "text/csv": {
                    "schema": {
                        **text,
                        "description": "A header row, then one record per row.",
                    }
                },
                "application/x-ndjson": {
                    "schema": {**text, "description": "One JSON object per line."}
                },
                "application/json": {
                    "schema": {
                        "description": "One array of record data objects (read as the "
                        "format= parameter says, when it is given).",
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            **_IMPORT_OPTIONS,
                            "mapping": _MAPPING,
                            "notification_webhook": ref("NotificationWebhook"),
                        },
                        "additionalProperties": False,
                    },
                    "encoding": {
                        "file": {"contentType": "text/csv"},
                        "mapping": {"contentType": "application/json"},
                        "notification_webhook": {"contentType": "application/json"},
                    },
                },
            },
        },
    }
