"""The records service: the ONLY code that validates and executes a record operation.

(One module on purpose, past 500 lines: it is the one home of every record operation and
of the order its rules apply in; split, the rules would again live in more than one place.)

Every function is synchronous and takes an open store transaction (``Tx``): REST routes,
both batch dialects (through :func:`perform` and the ``*_many`` functions, and runs of
plain creates through :func:`prepare_creates` / :func:`create_prepared`) and the jobs call
these inside ``Store.run(fn)``, so a whole request or batch is one hop into the database
thread and one transaction. Each rule is applied here once, from
:mod:`batchops.server.records.schemas` (the one copy of each rule), so every way in answers
an operation alike — the same status, code and ``details.path`` (tests/parity proves it):
a page size's default and bounds, the flags ``hard`` and ``include_deleted``, filters,
queries, cursors, names, ids and data. Errors are
:class:`APIError`\\ s that render as the JSON envelope. :func:`check` is the same checks
without the database, for ``validate_only`` batches.

The ``*_many`` variants are what make batches fast: consecutive operations of one kind
become one multi-row statement, with per-item outcomes (value or APIError) in input order.

Creates come three ways, one per kind of caller: :func:`create_many` (per-item outcomes and
the records echoed: REST and batch operations run one by one; :func:`create` is one of it);
:func:`prepare_creates` + :func:`create_prepared` (checked and encoded off the database
thread, written all or nothing: a batch's runs of plain creates and import chunks a
worker process encoded); :func:`create_bulk` (per-row problems, nothing echoed: imports).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from batchops._exceptions import APIError, ConflictError, InvalidRequestError, ValidationError
from batchops.server import _ids
from batchops.server.limits import DEFAULT_PAGE_SIZE, MAX_JSON_DEPTH, validate_limit
from batchops.server.records.schemas import (
    DEFAULT_SEARCH_SIZE,
    encode_data,
    not_found,
    record_body,
    validate_collection,
    validate_data,
    validate_filters,
    validate_flag,
    validate_query,
    validate_record_id,
)
from batchops.store.base import (
    DuplicateRecordError,
    EncodedRecords,
    RecordRow,
    Tx,
)

__all__ = [
    "CreateInput",
    "NewRecords",
    "PreparedCreates",
    "Target",
    "UpdateInput",
    "check",
    "count_where",
    "create",
    "create_bulk",
    "create_many",
    "create_prepared",
    "decode_cursor",
    "delete",
    "delete_ids",
    "delete_many",
    "delete_where",
    "encode_cursor",
    "list_records",
    "matching_ids",
    "merge_patch",
    "perform",
    "prepare_creates",
    "read",
    "read_many",
    "replace",
    "restore",
    "search",
    "update",
    "update_many",
    "update_where",
]

_T = TypeVar("_T")

CreateInput = tuple[str | None, Any]
"""(explicit id or None, data) for :func:`create_many`."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` removes a member,
    anything else replaces.

    >>> merge_patch({"a": 1, "b": {"c": 2}}, {"b": {"c": None, "d": 3}})
    {'a': 1, 'b': {'d': 3}}
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def encode_cursor(last_id: str) -> str:
    """An opaque cursor for the page after ``last_id``."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The record id a cursor points after; a 400 when it is not one of ours."""
    if cursor is None or cursor == "":
        return None
    bad = InvalidRequestError(
        "'cursor' is not a cursor returned by this API", details={"path": "cursor"}
    )
    if not isinstance(cursor, str):
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    try:
        validate_record_id(decoded)  # every cursor we hand out is a record id
    except APIError:
        raise bad from None
    return decoded


# -- one operation, by kind: what the batch paths call ----------------------------------------

_TARGETED = frozenset({"read", "update", "replace", "delete", "restore"})
"""The kinds that name one record by its id."""


def check(
    kind: str,
    collection: Any,
    *,
    record_id: Any = None,
    data: Any = None,
    query: Any = None,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Every check :func:`perform` makes before it reads the database, without it (a
    ``validate_only`` batch): the first fault raises its APIError."""
    validate_collection(collection)
    if kind in _TARGETED:
        validate_record_id(_required_id(kind, record_id))
    elif record_id is not None:
        validate_record_id(record_id)
    params = params or {}
    if kind in ("create", "update", "replace"):
        encode_data(validate_data(data))
    elif kind == "list":
        _page(params.get("filters"), params.get("limit"), params.get("cursor"))
    elif kind == "search":
        _search_terms(query, params.get("filters"), params.get("limit"))
    elif kind == "read":
        validate_flag(params.get("include_deleted"), path="include_deleted")
    elif kind == "delete":
        validate_flag(params.get("hard"), path="hard")
    elif kind not in _TARGETED:
        raise _unknown_kind(kind)


def perform(
    tx: Tx,
    tenant: str,
    kind: str,
    collection: str,
    *,
    record_id: str | None = None,
    data: Any = None,
    query: Any = None,
    params: Mapping[str, Any] | None = None,
    if_match: int | None = None,
    new_id: str | None = None,
) -> Any:
    """Run one operation of ``kind`` and answer its body (or raise its APIError).

    ``params`` by kind: read ``include_deleted``; delete ``hard``; list ``filters``,
    ``limit``, ``cursor``; search ``filters``, ``limit`` — as sent, checked here. ``new_id``:
    the id a create without ``record_id`` gets (generated when None).
    """
    params = params or {}
    if kind == "create":
        return create(tx, tenant, collection, data, record_id, new_id=new_id)
    if kind == "list":
        return list_records(
            tx,
            tenant,
            collection,
            filters=params.get("filters"),
            limit=params.get("limit"),
            cursor=params.get("cursor"),
        )
    if kind == "search":
        return search(
            tx,
            tenant,
            collection,
            query=query,
            filters=params.get("filters"),
            limit=params.get("limit"),
        )
    if kind not in _TARGETED:
        raise _unknown_kind(kind)
    target = _required_id(kind, record_id)
    if kind == "read":
        return read(tx, tenant, collection, target, include_deleted=params.get("include_deleted"))
    if kind == "restore":
        return restore(tx, tenant, collection, target, if_match=if_match)
    if kind == "update":
        return update(tx, tenant, collection, target, data, if_match=if_match)
    if kind == "replace":
        return replace(tx, tenant, collection, target, data, if_match=if_match)
    return delete(tx, tenant, collection, target, hard=params.get("hard"), if_match=if_match)


def _required_id(kind: str, record_id: Any) -> Any:
    """``record_id``, which a ``kind`` that names one record must have (checked where it
    is used)."""
    if record_id is None:
        raise ValidationError(f"a {kind} operation needs the record id", details={"path": "id"})
    return record_id


def _unknown_kind(kind: str) -> ValidationError:
    return ValidationError(f"unknown operation type {kind!r}", details={"path": "type"})


def _page(filters: Any, limit: Any, cursor: Any) -> tuple[dict[str, Any], int, str | None]:
    """A list's filters, page size (default ``DEFAULT_PAGE_SIZE``) and the id the page
    starts after."""
    checked = validate_filters(filters)
    return checked, validate_limit(limit, default=DEFAULT_PAGE_SIZE), decode_cursor(cursor)


def _search_terms(query: Any, filters: Any, limit: Any) -> tuple[str, dict[str, Any], int]:
    """A search's query, filters and page size (default ``DEFAULT_SEARCH_SIZE``)."""
    text = validate_query(query)
    checked = validate_filters(filters)
    return text, checked, validate_limit(limit, default=DEFAULT_SEARCH_SIZE)


# -- create --------------------------------------------------------------------------------


def create(
    tx: Tx,
    tenant: str,
    collection: str,
    data: Any,
    record_id: str | None = None,
    *,
    new_id: str | None = None,
) -> dict[str, Any]:
    """Create one record (:func:`create_many` of one); 409 if ``record_id`` exists
    (soft-deleted ones included). ``new_id``: the id to generate when there is no
    ``record_id``."""
    outcome = create_many(
        tx, tenant, collection, [(record_id, data)], new_ids=None if new_id is None else [new_id]
    )[0]
    if isinstance(outcome, APIError):
        raise outcome
    return outcome


def create_many(
    tx: Tx,
    tenant: str,
    collection: str,
    items: Sequence[CreateInput],
    *,
    new_ids: Sequence[str] | None = None,
) -> list[dict[str, Any] | APIError]:
    """Create many records of one collection with one multi-row insert.

    Per-item problems (invalid data, an id that exists or repeats within ``items``) are
    returned as that item's APIError and the others are still created. Call inside a
    savepoint when the caller must be able to undo the whole group.

    ``new_ids`` are the ids the items without one get, in order (generated when None): a
    batch run again after a rolled-back attempt gives its creates the same ids, so that
    what the first attempt reported names the records that are committed.
    """
    validate_collection(collection)
    now = _ids.now_iso()
    # None marks an item whose row is still to be written.
    outcomes: list[dict[str, Any] | APIError | None] = []
    ids: list[str] = []
    texts: list[str] = []
    slots: list[int] = []
    explicit: dict[str, int] = {}
    generated = iter(
        new_ids
        if new_ids is not None
        else _ids.new_record_ids(sum(1 for record_id, _ in items if record_id is None))
    )
    for position, (record_id, data) in enumerate(items):
        try:
            if record_id is not None:
                validate_record_id(record_id)
            text = encode_data(validate_data(data))
            if record_id is None:
                record_id = next(generated)
            else:
                if record_id in explicit:
                    raise _exists(collection, record_id)
                explicit[record_id] = position
        except APIError as exc:
            outcomes.append(exc)
            continue
        outcomes.append(None)
        slots.append(position)
        ids.append(record_id)
        texts.append(text)
    if explicit:
        taken = tx.existing_ids(tenant, collection, list(explicit))
        if taken:
            kept = [k for k, record_id in enumerate(ids) if record_id not in taken]
            deleted = _soft_deleted(tx, tenant, collection, taken)
            for k, record_id in enumerate(ids):
                if record_id in taken:
                    outcomes[slots[k]] = _exists(collection, record_id, record_id in deleted)
            ids = [ids[k] for k in kept]
            texts = [texts[k] for k in kept]
            slots = [slots[k] for k in kept]
    if ids:
        try:
            tx.insert_encoded(tenant, collection, ids, EncodedRecords(texts), now=now)
        except DuplicateRecordError as exc:  # a concurrent writer won the race
            raise _exists(collection, exc.ids[0]) from exc
    for record_id, position in zip(ids, slots, strict=True):
        row = RecordRow(tenant, collection, record_id, items[position][1], 1, now, now)
        outcomes[position] = record_body(row)
    return [o if o is not None else _unreachable() for o in outcomes]


@dataclass(slots=True)
class PreparedCreates:
    """Creates of one collection, checked and encoded, not written yet
    (:func:`prepare_creates`): ``json[i]`` is item i's data as JSON text, ``given[i]`` its
    explicit id or None (``given`` None: every id is generated). ``search``: the texts
    the store indexes, when the producer made them (an import's worker process)."""

    collection: str
    given: list[str | None] | None
    json: list[str]
    search: list[str] | None = None

    @classmethod
    def encoded(cls, collection: str, records: EncodedRecords) -> PreparedCreates:
        """New records another process checked and encoded (import chunks), every id
        generated."""
        validate_collection(collection)
        return cls(collection, None, records.json, records.search)


@dataclass(slots=True)
class NewRecords:
    """What :func:`create_prepared` wrote: record ``i`` has id ``ids[i]`` and data
    ``json[i]`` (JSON text), version 1, and ``now`` as both ``created_at`` and
    ``updated_at``."""

    collection: str
    ids: list[str]
    json: list[str]
    now: str


def prepare_creates(collection: str, items: Sequence[CreateInput]) -> PreparedCreates:
    """Check and encode creates of one collection without touching the database: the
    first problem (invalid data, a bad or repeated id) raises its APIError, with
    ``details["item"]`` its position. Pure, so a caller can run it outside the database
    thread, which is the serial section of every write.

    >>> prepare_creates("people", [(None, {"name": "Ada"})]).json
    ['{"name":"Ada"}']
    """
    validate_collection(collection)
    datas = [data for _, data in items]
    try:
        texts = [orjson.dumps(data).decode() for data in datas if type(data) is dict]
    except TypeError:
        texts = []  # not encodable: the loop below finds the item
    if (
        len(texts) != len(datas)
        # encode_data's other checks (NUL, nesting), on all texts at once where they can
        # be: one search of the joined texts; a bracket count only for a text long enough
        # to nest past the limit (a C-level max() over the lengths gates the Python loop,
        # which cost ~0.4 µs per create on every batch).
        or "\\u0000" in "".join(texts)
        or (
            max(map(len, texts), default=0) > 2 * MAX_JSON_DEPTH
            and any(t.count("{") + t.count("[") > MAX_JSON_DEPTH for t in texts)
        )
    ):
        # One by one: the first fault raises (a NUL hit may be a harmless "\\u0000").
        texts = []
        for position, data in enumerate(datas):
            try:
                texts.append(encode_data(validate_data(data)))
            except APIError as exc:
                exc.details["item"] = position
                raise
    given = [record_id for record_id, _ in items]
    seen: set[str] = set()
    for position, record_id in enumerate(given):
        if record_id is None:
            continue
        try:
            validate_record_id(record_id)
            if record_id in seen:
                raise _exists(collection, record_id)
        except APIError as exc:
            exc.details["item"] = position
            raise
        seen.add(record_id)
    return PreparedCreates(collection, given, texts)


def create_prepared(tx: Tx, tenant: str, prepared: PreparedCreates) -> NewRecords:
    """Write what :func:`prepare_creates` checked (or :meth:`PreparedCreates.encoded`
    took), with one multi-row insert, or nothing: an id that exists raises 409
    ``ALREADY_EXISTS`` (with generated ids only a concurrent writer can cause one) and
    nothing of this call stays written. Ids are generated here, in the transaction, so
    they follow commit order."""
    collection, given = prepared.collection, prepared.given
    if given is None:
        ids = _ids.new_record_ids(len(prepared.json))
    else:
        explicit = sum(1 for record_id in given if record_id is not None)
        if not explicit:
            ids = _ids.new_record_ids(len(given))
        else:
            generated = iter(_ids.new_record_ids(len(given) - explicit))
            ids = [next(generated) if record_id is None else record_id for record_id in given]
    now = _ids.now_iso()
    records = EncodedRecords(prepared.json, prepared.search)
    try:
        tx.insert_encoded(tenant, collection, ids, records, now=now)
    except DuplicateRecordError as exc:
        raise _exists(collection, exc.ids[0]) from exc
    return NewRecords(collection, ids, prepared.json, now)


def create_bulk(tx: Tx, tenant: str, collection: str, datas: Sequence[Any]) -> dict[int, APIError]:
    """Creates for bulk loads (import jobs): every record gets a generated id and nothing
    is echoed back, so only the problems are returned, by position in ``datas`` (empty
    when all were created); the others are written by :func:`create_prepared`."""
    validate_collection(collection)
    problems: dict[int, APIError] = {}
    texts: list[str] = []
    append = texts.append
    for position, data in enumerate(datas):
        try:
            append(encode_data(data if type(data) is dict else validate_data(data)))
        except APIError as exc:
            problems[position] = exc
    if texts:
        create_prepared(tx, tenant, PreparedCreates(collection, None, texts))
    return problems


def _unreachable() -> APIError:
    raise AssertionError("create_many left an item without an outcome")


def _exists(collection: str, record_id: str, deleted: bool = False) -> ConflictError:
    if deleted:
        # The id of a soft-deleted record stays taken: say so, and how to free it.
        return ConflictError(
            f"record {record_id!r} of collection {collection!r} is soft-deleted and its id "
            "is still taken: restore it (POST .../records/{id}/restore) or delete it for "
            "good (DELETE .../records/{id}?hard=true) first",
            code="ALREADY_EXISTS",
            details={"collection": collection, "id": record_id, "deleted": True},
        )
    return ConflictError(
        f"record {record_id!r} already exists in collection {collection!r}",
        code="ALREADY_EXISTS",
        details={"collection": collection, "id": record_id},
    )


def _soft_deleted(tx: Tx, tenant: str, collection: str, ids: set[str]) -> set[str]:
    """Which of ``ids`` are soft-deleted records (only asked when a create clashed)."""
    rows = tx.get_records(tenant, collection, sorted(ids), include_deleted=True)
    return {record_id for record_id, row in rows.items() if row.deleted_at is not None}


# -- read ----------------------------------------------------------------------------------


def read(
    tx: Tx, tenant: str, collection: str, record_id: str, *, include_deleted: Any = False
) -> dict[str, Any]:
    """One live record, or 404; with ``include_deleted`` true, a soft-deleted one too (its
    body then carries ``deleted_at``). ``include_deleted`` as sent: a JSON boolean, None
    when not sent; anything else is a 422 after the names are judged."""
    if include_deleted is None or include_deleted is False:
        outcome = read_many(tx, tenant, collection, [record_id])[0]
        if isinstance(outcome, APIError):
            raise outcome
        return outcome
    _target(collection, record_id)
    validate_flag(include_deleted, path="include_deleted")  # True here, or a 422
    return record_body(_fetch(tx, tenant, collection, record_id, None, include_deleted=True))


def read_many(
    tx: Tx, tenant: str, collection: str, ids: Sequence[str]
) -> list[dict[str, Any] | APIError]:
    """Many records of one collection with one statement; 404 per missing id."""
    validate_collection(collection)
    valid: list[str] = []
    errors: dict[int, APIError] = {}
    for position, record_id in enumerate(ids):
        try:
            valid.append(validate_record_id(record_id))
        except APIError as exc:
            errors[position] = exc
    found = tx.get_records(tenant, collection, valid) if valid else {}
    outcomes: list[dict[str, Any] | APIError] = []
    for position, record_id in enumerate(ids):
        if position in errors:
            outcomes.append(errors[position])
            continue
        row = found.get(record_id)
        outcomes.append(record_body(row) if row is not None else not_found(collection, record_id))
    return outcomes


# -- update / replace / delete -------------------------------------------------------------


def _target(collection: Any, record_id: Any) -> None:
    """The names of one record: its collection first, then its id."""
    validate_collection(collection)
    validate_record_id(record_id)


def _row(
    tx: Tx,
    tenant: str,
    collection: str,
    record_id: str,
    if_match: int | None,
    *,
    include_deleted: bool = False,
    for_update: bool = False,
) -> RecordRow:
    """The record (live only unless ``include_deleted``), 404 if there is none, 409 if it
    is not at ``if_match``. ``for_update`` for every read a write is computed from: it
    must not race a concurrent writer."""
    _target(collection, record_id)
    return _fetch(
        tx,
        tenant,
        collection,
        record_id,
        if_match,
        include_deleted=include_deleted,
        for_update=for_update,
    )


def _fetch(
    tx: Tx,
    tenant: str,
    collection: str,
    record_id: str,
    if_match: int | None,
    *,
    include_deleted: bool = False,
    for_update: bool = False,
) -> RecordRow:
    row = tx.get_records(
        tenant, collection, [record_id], include_deleted=include_deleted, for_update=for_update
    ).get(record_id)
    if row is None:
        raise not_found(collection, record_id)
    if if_match is not None and row.version != if_match:
        raise _version_mismatch(record_id, if_match, row.version)
    return row


def update(
    tx: Tx,
    tenant: str,
    collection: str,
    record_id: str,
    patch: Any,
    *,
    if_match: int | None = None,
) -> dict[str, Any]:
    """Apply an RFC 7386 merge patch to ``data``; bumps ``version`` (:func:`update_many`
    of one)."""
    return _one(update_many(tx, tenant, collection, [(record_id, patch, if_match)]))


def replace(
    tx: Tx,
    tenant: str,
    collection: str,
    record_id: str,
    data: Any,
    *,
    if_match: int | None = None,
) -> dict[str, Any]:
    """Replace ``data`` whole; bumps ``version`` (:func:`update_many` of one)."""
    return _one(update_many(tx, tenant, collection, [(record_id, data, if_match)], whole=True))


Target = tuple[str, int | None]
"""(record id, expected version or None): a live record a write of :func:`_rewrite_many`
is for."""


def _checked(check: Callable[[_T], Target], item: _T) -> Target | APIError:
    """``check(item)``, or the APIError it raised (that item's answer)."""
    try:
        return check(item)
    except APIError as exc:
        return exc


def _rewrite_many(
    tx: Tx,
    tenant: str,
    collection: str,
    targets: Sequence[Target | APIError],
    change: Callable[[int, RecordRow, str], tuple[RecordRow, dict[str, Any]]],
) -> list[dict[str, Any] | APIError]:
    """Rewrite live records of one collection, in order, with one locking read and one
    write: ``targets[i]`` is the record item ``i`` writes (or the APIError it answers
    already); ``change(i, row, now)`` is its new row and answer. No live record: 404; not
    at the expected version: 409 ``VERSION_MISMATCH``. A later item for the same id sees
    the earlier one's row (none, once it is soft-deleted)."""
    wanted = [target[0] for target in targets if not isinstance(target, APIError)]
    live: dict[str, RecordRow] = (
        tx.get_records(tenant, collection, wanted, for_update=True) if wanted else {}
    )
    now = _ids.now_iso()
    writes: list[RecordRow] = []
    outcomes: list[dict[str, Any] | APIError] = []
    for position, target in enumerate(targets):
        if isinstance(target, APIError):
            outcomes.append(target)
            continue
        record_id, if_match = target
        row = live.get(record_id)
        if row is None:
            outcomes.append(not_found(collection, record_id))
        elif if_match is not None and row.version != if_match:
            outcomes.append(_version_mismatch(record_id, if_match, row.version))
        else:
            written, body = change(position, row, now)
            if written.deleted_at is None:
                live[record_id] = written
            else:
                del live[record_id]  # a second delete of it is a 404
            writes.append(written)
            outcomes.append(body)
    if writes:
        tx.update_records(writes)
    return outcomes


UpdateInput = tuple[str, Any, int | None]
"""(record id, merge patch or new data, expected version or None) for :func:`update_many`."""


def update_many(
    tx: Tx,
    tenant: str,
    collection: str,
    items: Sequence[UpdateInput],
    *,
    whole: bool = False,
) -> list[dict[str, Any] | APIError]:
    """Update many live records of one collection: merge each patch into ``data`` (RFC
    7386), or, ``whole``, replace ``data``; each write bumps ``version``. The rows are read
    (and locked against concurrent writers) with one statement and written with one.

    Per-item problems (a bad id or patch: 422; no live record: 404; not at the expected
    version: 409 ``VERSION_MISMATCH``) are returned as that item's APIError and the others
    are still written; items are applied in order, so an id given twice gets both changes.
    Call inside a savepoint when the caller must be able to undo the whole group.
    """
    validate_collection(collection)

    def target(item: UpdateInput) -> Target:
        record_id, data, if_match = item
        validate_record_id(record_id)
        encode_data(validate_data(data))  # what JSON cannot hold: a 422, not a failed write
        return record_id, if_match

    def change(position: int, row: RecordRow, now: str) -> tuple[RecordRow, dict[str, Any]]:
        data = items[position][1]
        written = RecordRow(
            tenant,
            collection,
            row.id,
            data if whole else merge_patch(row.data, data),
            row.version + 1,
            row.created_at,
            now,
        )
        return written, record_body(written)

    return _rewrite_many(tx, tenant, collection, [_checked(target, item) for item in items], change)


def _one(outcomes: list[dict[str, Any] | APIError]) -> dict[str, Any]:
    outcome = outcomes[0]
    if isinstance(outcome, APIError):
        raise outcome
    return outcome


def _version_mismatch(record_id: str, expected: int, actual: int) -> ConflictError:
    return ConflictError(
        f"record {record_id!r} is at version {actual}, not {expected}",
        code="VERSION_MISMATCH",
        details={"id": record_id, "expected": expected, "actual": actual},
    )


def delete(
    tx: Tx,
    tenant: str,
    collection: str,
    record_id: str,
    *,
    hard: Any = False,
    if_match: int | None = None,
) -> dict[str, Any]:
    """Soft-delete (the default: the id stays taken, reads answer 404 unless asked to
    include deleted records, :func:`restore` brings it back; :func:`delete_many` of one)
    or, with ``hard`` true, remove the row for good — a soft-deleted one too, which frees
    its id. A soft delete bumps ``version``; soft-deleting a soft-deleted record is a 404.
    ``hard`` as sent: a JSON boolean, None when not sent; anything else is a 422 after the
    names are judged."""
    _target(collection, record_id)
    if not validate_flag(hard, path="hard"):
        return _one(delete_many(tx, tenant, collection, [(record_id, if_match)]))
    row = _fetch(tx, tenant, collection, record_id, if_match, include_deleted=True, for_update=True)
    tx.delete_records(tenant, collection, [record_id])
    return _deleted(record_id, collection, row.version, hard=True)


def delete_many(
    tx: Tx, tenant: str, collection: str, items: Sequence[Target]
) -> list[dict[str, Any] | APIError]:
    """Soft-delete many live records of one collection, given as (record id, expected
    version or None): read (and locked) with one statement, written with one; each write
    bumps ``version``. Per-item problems (a bad id: 422; no live record: 404 — a second
    delete of one id in ``items`` too; not at the expected version: 409) are that item's
    APIError and the others are still deleted. Call inside a savepoint when the caller must
    be able to undo the whole group."""
    validate_collection(collection)

    def target(item: Target) -> Target:
        validate_record_id(item[0])
        return item

    def change(position: int, row: RecordRow, now: str) -> tuple[RecordRow, dict[str, Any]]:
        gone = RecordRow(
            tenant, collection, row.id, row.data, row.version + 1, row.created_at, now, now
        )
        return gone, _deleted(row.id, collection, gone.version, hard=False)

    return _rewrite_many(tx, tenant, collection, [_checked(target, item) for item in items], change)


def _deleted(record_id: str, collection: str, version: int, *, hard: bool) -> dict[str, Any]:
    return {
        "id": record_id,
        "collection": collection,
        "deleted": True,
        "hard": hard,
        "version": version,
    }


def restore(
    tx: Tx,
    tenant: str,
    collection: str,
    record_id: str,
    *,
    if_match: int | None = None,
) -> dict[str, Any]:
    """Bring a soft-deleted record back as it was (``version`` bumped): 404 if there is no
    such record, 409 ``NOT_DELETED`` if it is live."""
    row = _row(tx, tenant, collection, record_id, if_match, include_deleted=True, for_update=True)
    if row.deleted_at is None:
        raise ConflictError(
            f"record {record_id!r} of collection {collection!r} is not deleted",
            code="NOT_DELETED",
            details={"collection": collection, "id": record_id},
        )
    row.version += 1
    row.updated_at = _ids.now_iso()
    row.deleted_at = None
    tx.update_records([row])
    return record_body(row)


# -- list / search -------------------------------------------------------------------------


def list_records(
    tx: Tx,
    tenant: str,
    collection: str,
    *,
    filters: Any = None,
    limit: Any = None,
    cursor: Any = None,
) -> dict[str, Any]:
    """A page of live records ordered by id (``limit`` as sent: default
    ``DEFAULT_PAGE_SIZE``); ``next_cursor`` is None on the last page."""
    validate_collection(collection)
    checked_filters, page_size, after_id = _page(filters, limit, cursor)
    rows = tx.list_records(
        tenant,
        collection,
        filters=checked_filters,
        after_id=after_id,
        limit=page_size + 1,
    )
    more = len(rows) > page_size
    rows = rows[:page_size]
    return {
        "records": [record_body(r) for r in rows],
        "next_cursor": encode_cursor(rows[-1].id) if more and rows else None,
    }


def search(
    tx: Tx,
    tenant: str,
    collection: str,
    *,
    query: Any,
    filters: Any = None,
    limit: Any = None,
) -> dict[str, Any]:
    """Ranked full-text search over the string values of live records (``limit`` as sent:
    default ``DEFAULT_SEARCH_SIZE``)."""
    validate_collection(collection)
    text, checked_filters, page_size = _search_terms(query, filters, limit)
    hits, total = tx.search_records(
        tenant, collection, query=text, filters=checked_filters, limit=page_size
    )
    return {
        "results": [{"record": record_body(row), "score": score} for row, score in hits],
        "total": total,
    }


# -- bulk: many records by filter or by ids (POST /v1/bulk/*, bulk jobs) --------------------


def count_where(tx: Tx, tenant: str, collection: str, *, filters: Any) -> int:
    """How many live records match ``filters`` (equality on dot paths, as list filters)."""
    validate_collection(collection)
    return tx.count_records(tenant, collection, filters=validate_filters(filters))


def _matching(
    tx: Tx,
    tenant: str,
    collection: str,
    filters: Any,
    after_id: str | None,
    limit: int,
    *,
    for_update: bool,
) -> list[RecordRow]:
    validate_collection(collection)
    if limit <= 0:
        return []
    return tx.list_records(
        tenant,
        collection,
        filters=validate_filters(filters),
        after_id=after_id,
        limit=limit,
        for_update=for_update,
    )


def matching_ids(
    tx: Tx, tenant: str, collection: str, *, filters: Any, after_id: str | None, limit: int
) -> list[str]:
    """The ids of the first ``limit`` live records above ``after_id`` that match
    ``filters``, in id order (nothing locked)."""
    rows = _matching(tx, tenant, collection, filters, after_id, limit, for_update=False)
    return [row.id for row in rows]


def update_where(
    tx: Tx,
    tenant: str,
    collection: str,
    *,
    filters: Any,
    patch: Any,
    limit: int,
    after_id: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Apply the RFC 7386 merge ``patch`` to the first ``limit`` live records (in id order,
    ids above ``after_id``) that match ``filters``, with one multi-row write; each record's
    ``version`` goes up by one. Returns their ids in id order; ``dry_run`` writes nothing."""
    encode_data(validate_data(patch), path="patch")
    rows = _matching(tx, tenant, collection, filters, after_id, limit, for_update=not dry_run)
    if not dry_run and rows:
        now = _ids.now_iso()
        for row in rows:
            row.data = merge_patch(row.data, patch)
            row.version += 1
            row.updated_at = now
        tx.update_records(rows)
    return [row.id for row in rows]


def _delete_rows(tx: Tx, tenant: str, collection: str, rows: list[RecordRow], hard: bool) -> None:
    if not rows:
        return
    if hard:
        tx.delete_records(tenant, collection, [row.id for row in rows])
        return
    now = _ids.now_iso()
    for row in rows:
        row.version += 1
        row.updated_at = row.deleted_at = now
    tx.update_records(rows)


def delete_where(
    tx: Tx,
    tenant: str,
    collection: str,
    *,
    filters: Any,
    limit: int,
    after_id: str | None = None,
    hard: bool = False,
    dry_run: bool = False,
) -> list[str]:
    """Delete (soft by default, as :func:`delete`) the first ``limit`` live records in id
    order above ``after_id`` that match ``filters``. Returns their ids; ``dry_run`` writes
    nothing."""
    rows = _matching(tx, tenant, collection, filters, after_id, limit, for_update=not dry_run)
    if not dry_run:
        _delete_rows(tx, tenant, collection, rows, hard)
    return [row.id for row in rows]


def delete_ids(
    tx: Tx,
    tenant: str,
    collection: str,
    ids: Sequence[str],
    *,
    limit: int | None = None,
    hard: bool = False,
    dry_run: bool = False,
) -> tuple[list[str], list[str]]:
    """Delete the live records among ``ids`` (at most ``limit`` of them, in the order given)
    with one read and one write. Returns (deleted ids, ids not found or not live); ids after
    the limit is reached are in neither list."""
    validate_collection(collection)
    for record_id in ids:
        validate_record_id(record_id)
    found = tx.get_records(tenant, collection, list(ids), for_update=not dry_run) if ids else {}
    hit: list[RecordRow] = []
    missing: list[str] = []
    for record_id in ids:
        if limit is not None and len(hit) >= limit:
            break
        row = found.get(record_id)
        if row is None:
            missing.append(record_id)
        else:
            hit.append(row)
    if not dry_run:
        _delete_rows(tx, tenant, collection, hit, hard)
    return [row.id for row in hit], missing
