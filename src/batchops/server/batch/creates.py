"""The all-creates lane of ``POST /v1/batch``: plain creates, no per-operation objects.

The batch that bulk loaders send most is N creates with nothing else: no references, no
dependencies, no atomicity groups (names are fine: they only label results), in either
dialect. For it the general planner and executor
build a :class:`~batchops.server.batch.model.PlannedOp`, an outcome, a record dict and a
result dict per operation, and encode every record's data twice (to store it, then to echo
it). py-spy put that Python work at about half of the server's GIL time for such batches.

This lane answers the same batch with the same bytes, doing per operation only what has
to be done per operation:

- msgspec decodes the body straight into :class:`CreateOperation` (typed) or
  :class:`RestCreateOperation` structs. Anything that is not a plain create (another type
  or path, ``depends_on``, a reference, mixed dialects, a validate-only run…) fails that
  decode or the checks after it, and :func:`plan_creates` answers None: the general path
  takes the batch;
- on the event loop, :func:`~batchops.server.records.service.prepare_creates` checks
  and encodes each run of consecutive creates of one collection (invalid data or ids:
  None, the general path answers);
- in the database thread, :func:`~batchops.server.records.service.create_prepared`
  generates the ids and writes each run with one multi-row insert;
- the response is spliced from those texts (:func:`render_creates`): no dict per record,
  no second encoding.

The lane only knows how to succeed. A problem found in the transaction (an id that
exists, the batch's deadline passing) raises :class:`LaneBail` out of the store
transaction, which rolls everything back, and the route runs the batch again on the
general path, which answers each operation precisely. A failing batch pays for two runs;
the batch that succeeds, the one bulk loads send, pays for one cheap one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec
import orjson

from batchops._exceptions import APIError, StoreInputError, StoreTimeoutError
from batchops.server.batch.model import BatchOptions
from batchops.server.batch.planner import plan_options
from batchops.server.batch.refs import NAME_RE, may_hold_templates
from batchops.server.batch.wire import WireOptions
from batchops.server.records import service
from batchops.server.records.service import NewRecords, PreparedCreates
from batchops.store.base import Tx

__all__ = [
    "CreateOperation",
    "CreatePlan",
    "LaneBail",
    "RestCreateOperation",
    "plan_creates",
    "render_creates",
    "run_creates",
]


class CreateOperation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A typed create and nothing more: ``{"type": "create", "collection", "data", "id"?,
    "ref"?}``.

    ``gc=False`` (here and below): it holds only strings and decoded JSON, which cannot
    refer back to it, so the collector need not track a hundred of them per batch.
    """

    type: Literal["create"]
    collection: str
    data: dict[str, Any]
    id: str | msgspec.UnsetType = msgspec.UNSET  # "id": null is the general path's 400
    ref: str | None = None


class _RestCreateBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    data: dict[str, Any]
    id: str | msgspec.UnsetType = msgspec.UNSET


class RestCreateOperation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A REST-dialect create and nothing more: ``{"method": "POST", "path":
    "/v1/collections/{collection}/records", "body": {"data", "id"?}, "id"?}``."""

    method: Literal["POST"]
    path: str
    body: _RestCreateBody
    id: str | None = None


class _CreateBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    operations: list[CreateOperation]
    options: WireOptions = msgspec.field(default_factory=WireOptions)


class _RestCreateBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    operations: list[RestCreateOperation]
    options: WireOptions = msgspec.field(default_factory=WireOptions)


_DECODER: Final = msgspec.json.Decoder(_CreateBatch)
_REST_DECODER: Final = msgspec.json.Decoder(_RestCreateBatch)

# The one REST path the lane takes. A collection name needs no percent-decoding (its
# alphabet is URL-safe); any other spelling (escapes, a query string) takes the general
# path, which routes it the same way or answers its error.
_RECORDS_PATH_RE: Final = re.compile(
    r"/v1/collections/([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})/records/?"
)


@dataclass(slots=True)
class CreatePlan:
    """A batch of plain creates, checked and encoded: one
    :class:`~batchops.server.records.service.PreparedCreates` per run of consecutive
    creates of one collection, and the planned options."""

    groups: list[PreparedCreates]
    options: BatchOptions
    count: int
    names: list[str | None] | None = None  # operation names, when any operation has one

    @property
    def cost(self) -> dict[str, int]:
        """``meta.cost``, as :func:`~batchops.server.batch.planner.plan_batch` counts it."""
        n = self.count
        return {
            "operations": n,
            "reads": 0,
            "writes": n,
            "searches": 0,
            "invalid": 0,
            "units": 2 * n,
        }


class LaneBail(Exception):
    """The lane cannot answer this batch; the transaction rolls back and the general path
    runs it. Carries the reason for logs and tests."""


def plan_creates(body: bytes, *, max_operations: int) -> CreatePlan | None:
    """The batch as a :class:`CreatePlan` when it holds only plain creates whose data and
    ids are valid, else None.

    None also for every batch the general path must judge (bad JSON, an empty or oversized
    batch, ``validate_only``, invalid data or ids): the lane never produces an error of its
    own. Contradictory options raise the general path's error (:func:`plan_options`).

    Checking and encoding happen here, on the event loop, so the database thread (the
    serial section of every write) only generates ids and inserts; the decoded data is
    dropped on the thread that made it.
    """
    if may_hold_templates(body):  # references need the planner and the executor
        return None
    decoded = _decode(body)
    if decoded is None:
        return None
    items, names, wire_options = decoded
    n = len(items)
    if not 0 < n <= max_operations:
        return None
    given = [name for name in names if name is not None]
    if len(set(given)) != len(given) or not all(NAME_RE.fullmatch(g) for g in given):
        return None  # the planner answers the 400
    options = plan_options(wire_options)
    if options.validate_only:
        return None
    groups: list[PreparedCreates] = []
    start = 0
    try:
        while start < n:
            collection = items[start][0]
            end = start + 1
            while end < n and items[end][0] == collection:
                end += 1
            group = [(record_id, data) for _, record_id, data in items[start:end]]
            groups.append(service.prepare_creates(collection, group))
            start = end
    except APIError:
        return None
    return CreatePlan(groups, options, n, names if given else None)


_Item = tuple[str, str | None, Any]  # collection, record id, data


def _decode(body: bytes) -> tuple[list[_Item], list[str | None], WireOptions] | None:
    """The creates of either dialect as (collection, record id, data) items and operation
    names, or None when the body is not plain creates of one dialect."""
    try:
        typed = _DECODER.decode(body)
    except RecursionError:
        return None  # too deep to decode: the general path answers the 400
    except msgspec.DecodeError:
        pass
    else:
        return (
            [
                (op.collection, None if op.id is msgspec.UNSET else op.id, op.data)
                for op in typed.operations
            ],
            [op.ref for op in typed.operations],
            typed.options,
        )
    if b'"method"' not in body:
        return None
    try:
        rest = _REST_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    items: list[_Item] = []
    for op in rest.operations:
        match = _RECORDS_PATH_RE.fullmatch(op.path)
        if match is None:
            return None
        fields = op.body
        items.append((match[1], None if fields.id is msgspec.UNSET else fields.id, fields.data))
    return items, [op.id for op in rest.operations], rest.options


def run_creates(
    tx: Tx, tenant: str, plan: CreatePlan, *, deadline: float | None
) -> list[NewRecords]:
    """Write every group of ``plan`` in ``tx`` (call inside ``Store.run``), one multi-row
    insert each. Raises :class:`LaneBail` at the first problem (an id that exists, the
    deadline)."""
    if deadline is not None and time.monotonic() > deadline:
        raise LaneBail("the batch's timeout_ms passed before it started")
    created: list[NewRecords] = []
    for group in plan.groups:
        try:
            created.append(service.create_prepared(tx, tenant, group))
        except APIError as exc:
            raise LaneBail(exc.message) from exc
        except (StoreInputError, StoreTimeoutError) as exc:
            raise LaneBail(str(exc)) from exc  # the general path answers per operation
    if deadline is not None and time.monotonic() > deadline:
        raise LaneBail("the batch's timeout_ms passed")
    return created


def render_creates(
    batch_id: str, plan: CreatePlan, groups: list[NewRecords], duration_ms: float
) -> bytes:
    """The response body of a lane batch: byte for byte what the general path renders for
    the same records (``batch_payload`` through orjson), built from the stored JSON texts.

    Collection names and record ids need no JSON escaping: both are validated to a
    URL-safe alphabet before anything is written.
    """
    parts = ['{"batch_id":', orjson.dumps(batch_id).decode(), ',"committed":true,"results":[']
    if not plan.options.suppress_success:
        results: list[str] = []
        append = results.append
        index = 0
        names = plan.names
        for group in groups:
            middle = f'","collection":"{group.collection}","data":'
            tail = f',"version":1,"created_at":"{group.now}","updated_at":"{group.now}"}}}}'
            for record_id, text in zip(group.ids, group.json, strict=True):
                name = names[index] if names is not None else None
                # A name is the client's text: JSON-escaped, unlike ids and collections.
                named = "" if name is None else f',"id":{orjson.dumps(name).decode()}'
                append(
                    f'{{"index":{index}{named},"type":"create","status":201,"body":{{"id":"'
                    f"{record_id}{middle}{text}{tail}"
                )
                index += 1
        parts.append(",".join(results))
    n = plan.count
    meta = {
        "total": n,
        "succeeded": n,
        "failed": 0,
        "skipped": 0,
        "duration_ms": round(duration_ms, 3),
        "by_type": {"create": {"total": n, "succeeded": n, "failed": 0, "skipped": 0}},
        "cost": plan.cost,
    }
    parts.append('],"meta":')
    parts.append(orjson.dumps(meta).decode())
    parts.append("}")
    return "".join(parts).encode()
