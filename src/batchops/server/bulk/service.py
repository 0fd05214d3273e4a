"""Bulk update and delete: ``POST /v1/bulk/update`` and ``POST /v1/bulk/delete``.

A request selects live records of one collection — by ``filter`` (equality on dot paths,
the semantics of list filters) or, for delete, by ``ids`` — and changes them through the
records service (:func:`~batchops.server.records.service.update_where`,
``delete_where``, ``delete_ids``). At most ``Settings.bulk_inline_max`` matches are handled
inline, in ONE transaction, and answered at once (200); more become a job (202, see
:mod:`batchops.server.bulk.job`). A request with a ``notification_webhook`` always becomes
a job, however small: the webhook reports a job's end, and an inline answer has no job to
report on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from batchops._exceptions import InvalidRequestError, ValidationError
from batchops.server import _ids
from batchops.server.jobs.schemas import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE
from batchops.server.limits import INT64_MAX, whole_number
from batchops.server.records import service
from batchops.server.records.schemas import (
    encode_data,
    validate_collection,
    validate_data,
    validate_filters,
)
from batchops.server.webhooks.schemas import (
    NOTIFICATION_WEBHOOK,
    WebhookSpec,
    job_webhook_row,
    parse_notification_webhook_field,
)
from batchops.store.base import JobRow, Tx

__all__ = [
    "BULK_TYPES",
    "MAX_IDS",
    "BulkOptions",
    "Operation",
    "answer",
    "apply",
    "parse_request",
    "submit_bulk",
]

BULK_TYPES = ("bulk_update", "bulk_delete")
MAX_IDS = 10_000
"""Most ``ids`` one bulk delete may name."""

Operation = Literal["update", "delete"]
_COMMON_TAIL = ("dry_run", "limit", "chunk_size", NOTIFICATION_WEBHOOK)
_FIELDS: dict[str, tuple[str, ...]] = {
    "update": ("collection", "filter", "update", *_COMMON_TAIL),
    "delete": ("collection", "filter", "ids", "soft", *_COMMON_TAIL),
}


@dataclass(frozen=True, slots=True)
class BulkOptions:
    """What a bulk request does, as stored in ``jobs.options`` (the ids of a delete by ids
    are stored apart, as the job's input row)."""

    operation: Operation
    filter: dict[str, Any] | None = None
    update: dict[str, Any] | None = None
    by_ids: bool = False
    soft: bool = True
    dry_run: bool = False
    limit: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def to_dict(self) -> dict[str, Any]:
        """The stored (and shown) form."""
        out: dict[str, Any] = {"operation": self.operation}
        if self.by_ids:
            out["by_ids"] = True
        else:
            out["filter"] = self.filter
        if self.operation == "update":
            out["update"] = self.update
        else:
            out["soft"] = self.soft
        out.update(dry_run=self.dry_run, limit=self.limit, chunk_size=self.chunk_size)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BulkOptions:
        """Back from the stored form (trusted: it was checked at submission)."""
        return cls(
            operation=raw["operation"],
            filter=raw.get("filter"),
            update=raw.get("update"),
            by_ids=bool(raw.get("by_ids", False)),
            soft=bool(raw.get("soft", True)),
            dry_run=bool(raw["dry_run"]),
            limit=raw.get("limit"),
            chunk_size=int(raw["chunk_size"]),
        )


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ValidationError(f"{name!r} must be true or false", details={"path": name})
    return value


def _int(body: dict[str, Any], name: str, low: int, high: int | None) -> int | None:
    raw = body.get(name)
    if raw is None:
        return None
    value = whole_number(raw)  # 100.0 is 100 (JSON has one number type)
    if value is None or value < low:
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValidationError(f"{name!r} must be an integer {bound}", details={"path": name})
    if high is not None and value > high:
        raise ValidationError(
            f"{name!r} must be an integer from {low} to {high}", details={"path": name}
        )
    return value


def parse_request(
    operation: Operation, body: Any
) -> tuple[str, BulkOptions, list[str] | None, WebhookSpec | None]:
    """Check a request body: (collection, options, sorted unique ids or None, the
    ``notification_webhook`` or None). Shape faults are 400, bad values 422, each naming
    the field (``details.path``). The webhook's target addresses are not checked here
    (that needs DNS: :func:`~batchops.server.webhooks.schemas.check_notification_target`)."""
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", details={"path": ""})
    allowed = _FIELDS[operation]
    for name in body:
        if name not in allowed:
            raise InvalidRequestError(
                f"unknown field {name!r}; allowed: {', '.join(allowed)}", details={"path": name}
            )
    if "collection" not in body:
        raise InvalidRequestError("missing field 'collection'", details={"path": "collection"})
    collection = body["collection"]
    validate_collection(collection)
    ids: list[str] | None = None
    filters: dict[str, Any] | None = None
    if operation == "delete" and "ids" in body:
        if "filter" in body:
            raise InvalidRequestError(
                "give either 'filter' or 'ids', not both", details={"path": "ids"}
            )
        raw_ids = body["ids"]
        if not isinstance(raw_ids, list) or not raw_ids:
            raise ValidationError(
                "'ids' must be a non-empty array of record ids", details={"path": "ids"}
            )
        if len(raw_ids) > MAX_IDS:
            raise ValidationError(
                f"'ids' may name at most {MAX_IDS} records; use a filter for more",
                details={"path": "ids", "limit": MAX_IDS, "actual": len(raw_ids)},
            )
        for position, record_id in enumerate(raw_ids):
            if not isinstance(record_id, str) or not record_id:
                raise ValidationError(
                    "each id must be a non-empty string", details={"path": f"ids[{position}]"}
                )
        ids = sorted(set(raw_ids))
    else:
        if "filter" not in body:
            need = "'filter' or 'ids'" if operation == "delete" else "'filter'"
            raise InvalidRequestError(
                f"missing field {need} (use {{}} to select every record)",
                details={"path": "filter"},
            )
        if body["filter"] is None:
            raise ValidationError(
                "'filter' must be an object (use {} to select every record)",
                details={"path": "filter"},
            )
        filters = validate_filters(body["filter"], path="filter")
    update: dict[str, Any] | None = None
    if operation == "update":
        if "update" not in body:
            raise InvalidRequestError("missing field 'update'", details={"path": "update"})
        update = body["update"]
        try:
            validate_data(update)
        except ValidationError as exc:
            raise ValidationError(
                "'update' must be a JSON object (an RFC 7386 merge patch)",
                details={"path": "update"},
            ) from exc
        # What the records API refuses (a NUL, an integer past 64 bits, nesting past 128
        # levels) is a 422 now, naming the value: a job would store the patch and crash
        # on it (INTERNAL_ERROR), or fail to store it (a 500 past 64 bits).
        encode_data(update, path="update")
    options = BulkOptions(
        operation=operation,
        filter=filters,
        update=update,
        by_ids=ids is not None,
        soft=_bool(body, "soft", True),
        dry_run=_bool(body, "dry_run", False),
        limit=_int(body, "limit", 1, INT64_MAX),
        chunk_size=_int(body, "chunk_size", 1, MAX_CHUNK_SIZE) or DEFAULT_CHUNK_SIZE,
    )
    # Kept out of BulkOptions: those are stored in jobs.options and shown back, and the
    # webhook's secret must never be.
    hook = parse_notification_webhook_field(body.get(NOTIFICATION_WEBHOOK))
    return collection, options, ids, hook


# -- inline ---------------------------------------------------------------------------------


def answer(
    collection: str, options: BulkOptions, ids: list[str], not_found: list[str]
) -> dict[str, Any]:
    """The body of an inline answer (and of a finished job's results)."""
    written = 0 if options.dry_run else len(ids)
    out: dict[str, Any] = {
        "operation": options.operation,
        "collection": collection,
        "dry_run": options.dry_run,
        "matched": len(ids),
    }
    if options.operation == "update":
        out["updated"] = written
        out["ids"] = ids
    else:
        out["deleted"] = written
        out["soft"] = options.soft
        out["ids"] = ids
        out["not_found"] = not_found
    return out


def apply(
    tx: Tx,
    tenant: str,
    collection: str,
    options: BulkOptions,
    *,
    limit: int,
    after: str | None = None,
    ids: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Change up to ``limit`` records (above ``after`` in id order, or among ``ids``):
    (affected ids, ids not found)."""
    if ids is not None:
        return service.delete_ids(
            tx,
            tenant,
            collection,
            ids,
            limit=limit,
            hard=not options.soft,
            dry_run=options.dry_run,
        )
    if options.operation == "update":
        changed = service.update_where(
            tx,
            tenant,
            collection,
            filters=options.filter,
            patch=options.update,
            limit=limit,
            after_id=after,
            dry_run=options.dry_run,
        )
    else:
        changed = service.delete_where(
            tx,
            tenant,
            collection,
            filters=options.filter,
            limit=limit,
            after_id=after,
            hard=not options.soft,
            dry_run=options.dry_run,
        )
    return changed, []


def submit_bulk(
    tx: Tx,
    tenant: str,
    collection: str,
    options: BulkOptions,
    ids: list[str] | None,
    *,
    inline_max: int,
    hook: WebhookSpec | None = None,
) -> tuple[dict[str, Any], JobRow | None]:
    """ONE transaction: count the selection; apply it at once when it is at most
    ``inline_max`` records and there is no ``hook`` (the answer, None), else queue a job
    with its ``hook`` (None, the job)."""
    if ids is not None:
        matched = len(ids) if options.limit is None else min(len(ids), options.limit)
        inline = len(ids) <= inline_max
    else:
        matched = service.count_where(tx, tenant, collection, filters=options.filter)
        if options.limit is not None:
            matched = min(matched, options.limit)
        inline = matched <= inline_max
    if inline and hook is None:
        cap = options.limit if options.limit is not None else max(len(ids or []), inline_max)
        changed, missing = apply(tx, tenant, collection, options, limit=cap, ids=ids)
        return answer(collection, options, changed, missing), None
    job = JobRow(
        id=_ids.new_record_id(),
        tenant=tenant,
        type=f"bulk_{options.operation}",
        state="queued",
        collection=collection,
        options=options.to_dict(),
        created_at=_ids.now_iso(),
        total=matched,
        revision=1,
    )
    tx.insert_job(job)
    if hook is not None:  # same transaction: no job without its webhook, nor the reverse
        tx.insert_webhook(job_webhook_row(hook, job))
    if ids is not None:
        tx.insert_job_results(job.id, [(0, orjson.dumps(ids))])
    return {}, job
