"""The Store protocol: the only interface the rest of batchops uses to reach a database.

One module over ~500 lines because it is the store's one contract: the row types and the
protocols that speak of them, read together by whoever implements or calls a store.

Design (measured, see docs/benchmarks.md): an awaited database call costs a thread hop
(~85-190 µs on this machine), so a whole unit of work — a REST request, a whole batch, a job
chunk — is ONE synchronous function ``fn(tx)`` run by :meth:`Store.run` in the database
thread, inside ONE transaction. ``Tx`` is therefore a *synchronous* interface and the
records service above it is plain synchronous code over ``Tx``. Multi-row methods take
sequences so callers can group consecutive operations into multi-row statements.

``Tx`` is split by domain — :class:`RecordsTx`, :class:`JobsTx`, :class:`UploadsTx`,
:class:`WebhooksTx`, :class:`KeysTx`, :class:`IdempotencyTx`, each over :class:`TxBase` —
and combines them:
callers type against ``Tx``; each domain protocol says which of its methods are scoped by
tenant and why the others may not be.

Only modules under ``batchops.store`` speak SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "DEFAULT_STATEMENT_TIMEOUT_MS",
    "ApiKeyRow",
    "Dialect",
    "DuplicateRecordError",
    "EncodedRecords",
    "IdempotencyRow",
    "IdempotencyTx",
    "JobFailureRow",
    "JobRow",
    "JobState",
    "JobsTx",
    "KeysTx",
    "RecordRow",
    "RecordsTx",
    "Store",
    "Tx",
    "TxBase",
    "UploadsTx",
    "WebhookAttemptRow",
    "WebhookDeliveryRow",
    "WebhookRow",
    "WebhooksTx",
]

T = TypeVar("T")

Dialect = Literal["sqlite", "postgresql"]

DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
"""The default bound on one statement's run time (``Settings.statement_timeout_ms``): no
request may hold the database longer than this, so none can stall the others."""


@dataclass(frozen=True, slots=True)
class EncodedRecords:
    """New records whose data the caller has encoded already, for
    :meth:`Tx.insert_encoded`: ``json[i]`` is record i's data as JSON text (an object) and
    ``search[i]`` its search text (as ``search_text`` makes it; None lets the store compute
    it from the JSON when it needs it).

    For bulk loads prepared in another process (import jobs): the encoding is done there,
    and the process that holds the transaction handles no per-record objects at all.
    """

    json: list[str]
    search: list[str] | None = None


@dataclass(slots=True)
class RecordRow:
    """One record as stored. Timestamps are ISO-8601 UTC strings with milliseconds
    (``2026-11-22T06:40:00.123Z``); ``deleted_at`` is set on soft-deleted records."""

    tenant: str
    collection: str
    id: str
    data: dict[str, Any]
    version: int
    created_at: str
    updated_at: str
    deleted_at: str | None = None


@dataclass(slots=True)
class ApiKeyRow:
    """An API key as stored: only the SHA-256 hex digest of the secret is kept."""

    key_id: str
    tenant: str
    key_hash: str
    name: str | None
    created_at: str
    revoked_at: str | None = None


@dataclass(slots=True)
class IdempotencyRow:
    """The state of one ``Idempotency-Key`` of one tenant.

    ``state`` is ``"in_flight"`` while the first request runs and ``"done"`` once its
    response (``status_code`` + ``response`` bytes) is stored. ``owner`` names the request
    holding an in-flight claim and ``created_at`` is its last sign of life (the claim, or
    the last committed slice of a stream).
    """

    tenant: str
    key: str
    fingerprint: str
    state: Literal["in_flight", "done"]
    created_at: float
    status_code: int | None = None
    response: bytes | None = None
    owner: str | None = None


JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@dataclass(slots=True)
class JobRow:
    """One bulk job as stored (see batchops.server.jobs).

    ``checkpoint`` is the number of the last input row whose chunk is committed (rows are
    1-based); ``revision`` grows with every committed change and numbers the job's events.
    ``worker`` + ``heartbeat_at`` (epoch seconds, by the database's clock) are the runner's
    lease on a running job. ``attempts`` counts the claims that ran it (a clean hand-back
    on shutdown takes its claim back).
    """

    id: str
    tenant: str
    type: str
    state: JobState
    collection: str | None
    options: dict[str, Any]
    created_at: str
    total: int | None = None
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    checkpoint: int = 0
    revision: int = 0
    cancel_requested: bool = False
    worker: str | None = None
    heartbeat_at: float | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0


@dataclass(slots=True)
class JobFailureRow:
    """One input row a job could not apply: its 1-based number, its input as text, why."""

    job_id: str
    row_number: int
    input: str
    code: str
    message: str


@dataclass(slots=True)
class WebhookRow:
    """A webhook target of a tenant: a subscription (``job_id`` None) or one job's own
    ``notification_webhook``. ``events`` are names like ``job.succeeded``."""

    id: str
    tenant: str
    url: str
    events: list[str]
    secret: str
    created_at: str
    job_id: str | None = None


DeliveryState = Literal["pending", "succeeded", "failed", "cancelled"]


@dataclass(slots=True)
class WebhookDeliveryRow:
    """One event to deliver to one webhook (the outbox row). ``payload`` is the exact JSON
    text sent on every attempt; ``next_attempt_at`` (epoch seconds) is when it is due;
    ``worker`` holds a sender's claim while an attempt is in flight."""

    id: str
    tenant: str
    webhook_id: str
    job_id: str | None
    event: str
    url: str
    payload: str
    state: DeliveryState
    created_at: str
    attempts: int = 0
    next_attempt_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    finished_at: str | None = None
    worker: str | None = None


@dataclass(slots=True)
class WebhookAttemptRow:
    """One attempt to deliver: the HTTP status, or the error when there was none."""

    delivery_id: str
    attempt: int
    at: str
    duration_ms: float
    status_code: int | None = None
    error: str | None = None
    next_retry_at: str | None = None


class DuplicateRecordError(Exception):
    """Raised by :meth:`Tx.insert_records` when some ids exist already (soft-deleted ones
    included). ``ids`` lists them. Internal to the store/operations boundary."""

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(f"records exist already: {', '.join(ids)}")
        self.ids = list(ids)


class TxBase(Protocol):
    """What every domain of a transaction shares: its dialect, savepoints, the statement
    time bound and named locks. Synchronous: only ever used inside :meth:`Store.run`'s
    ``fn``."""

    dialect: Dialect

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested savepoint: rolled back if the ``with`` block raises, released otherwise."""
        ...

    def set_statement_timeout(self, seconds: float | None) -> None:
        """Bound the statements of the rest of this transaction: one still running
        ``seconds`` from now (or past the store's statement limit, if that comes first)
        is cancelled with StoreTimeoutError. ``None`` lifts every bound for the rest of
        the transaction (building an index over a whole collection)."""
        ...

    def lock(self, name: str) -> None:
        """Hold a named lock until the transaction ends: transactions that take the same
        name run one after the other (PostgreSQL: an advisory transaction lock; SQLite:
        nothing to do, every transaction holds the database's write lock)."""
        ...

    def try_lock(self, name: str) -> bool:
        """Take the named lock of :meth:`lock` for the rest of the transaction if nobody
        holds it, without waiting: False if another transaction does (PostgreSQL); always
        True on SQLite."""
        ...

    def database_now(self) -> float:
        """The database's clock, in epoch seconds: the one clock every process sharing the
        database agrees on, whatever its machine's own says."""
        ...

    def applied_migrations(self) -> list[str]:
        """The ids of the schema migrations recorded as applied, in order (the readiness
        check compares them with the shipped ones, see batchops.store.migrate)."""
        ...

    def read_beside(
        self,
        reads: Sequence[Callable[[Tx], T]],
        *,
        width: int,
        deadline: float | None = None,
    ) -> list[T]:
        """Run read-only functions at once, at most ``width`` at a time counting this
        transaction's own connection; their results in the order of ``reads``.

        Each ``read(tx)`` runs either in this transaction (``tx`` is this one: it sees
        what the transaction wrote), or on another connection of the store in a
        read-only transaction of its own (committed data only; PostgreSQL: a pooled
        connection; SQLite: a read connection beside the writer, WAL). Other connections
        are taken without waiting — whatever none was free for runs here — so a unit of
        work never waits on the pool. A read that raises on another connection (its
        connection failed, or it cannot answer there exactly) is run again here; a read
        returns its own errors. ``deadline`` (``time.monotonic()``) bounds the statements
        on other connections as :meth:`set_statement_timeout` bounds this one's (None: the
        store's statement limit). Mechanism: :mod:`batchops.store._beside`."""
        ...


class RecordsTx(TxBase, Protocol):
    """The records of collections: writes, reads, listing, search, field lookups.

    Scoped by tenant: every method takes ``tenant`` and ``collection``, or writes rows
    that carry them (``insert_records``, ``update_records``: the key of each row)."""

    def insert_records(self, rows: Sequence[RecordRow]) -> None:
        """Insert all rows with multi-row statements. Raises DuplicateRecordError."""
        ...

    def insert_encoded(
        self,
        tenant: str,
        collection: str,
        ids: Sequence[str],
        records: EncodedRecords,
        *,
        now: str,
    ) -> None:
        """Insert new records (version 1, created and updated ``now``) with ids ``ids``
        and pre-encoded data. Raises DuplicateRecordError, leaving nothing written."""
        ...

    def existing_ids(self, tenant: str, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` exist (soft-deleted included)."""
        ...

    def get_records(
        self,
        tenant: str,
        collection: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        for_update: bool = False,
    ) -> dict[str, RecordRow]:
        """The rows found, by id (one statement). ``for_update`` locks them until the
        transaction ends, and reads each as the last concurrent writer left it: every
        read that a write is computed from must take it (PostgreSQL; SQLite's write lock
        is held by every transaction already)."""
        ...

    def update_records(self, rows: Sequence[RecordRow]) -> None:
        """Write data, version, updated_at and deleted_at of existing rows (by key).

        Each row's ``version`` is its NEW version, and the stored row must still be at the
        one before it (the first time a key is given): otherwise a concurrent writer
        changed it since it was read, nothing is written, and TransientStoreError is
        raised, so that the unit of work is retried from its reads (a safety net behind
        ``for_update``, never expected to fire)."""
        ...

    def delete_records(self, tenant: str, collection: str, ids: Sequence[str]) -> int:
        """Remove rows for good (hard delete); returns how many were removed."""
        ...

    def list_records(
        self,
        tenant: str,
        collection: str,
        *,
        filters: Mapping[str, Any],
        after_id: str | None,
        limit: int,
        for_update: bool = False,
    ) -> list[RecordRow]:
        """Live records ordered by id, after ``after_id``; ``filters`` maps dot paths of
        ``data`` to JSON scalars that must be equal. ``for_update`` as in
        :meth:`get_records` (a row changed meanwhile so that it no longer matches is left
        out, so fewer than ``limit`` rows do not prove the selection is exhausted)."""
        ...

    def count_records(self, tenant: str, collection: str, *, filters: Mapping[str, Any]) -> int:
        """How many live records match every filter (same semantics as list_records)."""
        ...

    def collection_counts(self, tenant: str) -> list[tuple[str, int]]:
        """The tenant's collections that hold live records, by name, each with how many
        (one grouped scan of the tenant's records: the console's collections page)."""
        ...

    def search_records(
        self,
        tenant: str,
        collection: str,
        *,
        query: str,
        filters: Mapping[str, Any],
        limit: int,
    ) -> tuple[list[tuple[RecordRow, float]], int]:
        """Full-text search over the string values of live records, best first.
        Returns (rows with score — higher is better —, total number of matches)."""
        ...

    def find_ids_by_field(
        self, tenant: str, collection: str, path: str, values: Sequence[str]
    ) -> dict[str, str]:
        """Live records whose ``data`` field at dot ``path`` has one of ``values`` (compared
        as text: ``42`` matches ``"42"``): value -> record id. A scan of the collection
        unless :meth:`ensure_field_index` made an index for that field."""
        ...

    def ensure_field_index(self, tenant: str, collection: str, path: str) -> None:
        """Make :meth:`find_ids_by_field` on this field of this collection an index lookup:
        a partial expression index over the collection's live records, created the first
        time (the build scans the collection once, holding the write lock) and kept, so
        that later upserts on the same key find it ready. ``path`` is a validated dot path
        (letters, digits, ``_``, ``-``)."""
        ...


class KeysTx(TxBase, Protocol):
    """API keys (only a digest of each secret is stored).

    Not scoped by tenant, on purpose: a key is what tells which tenant a request is, so
    ``find_api_key`` looks a digest up across tenants; ``revoke_api_key``,
    ``count_api_keys`` and ``list_api_keys(None)`` serve the operator (the CLI), who
    manages every tenant. ``insert_api_key`` writes the tenant the row carries."""

    def insert_api_key(self, row: ApiKeyRow) -> None:
        """Store a new API key (``row.tenant`` is the tenant it serves)."""
        ...

    def find_api_key(self, key_hash: str) -> ApiKeyRow | None:
        """The key with this hash, revoked or not, whatever its tenant: authentication
        looks the presented key up to learn the tenant."""
        ...

    def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyRow]:
        """The keys of ``tenant``, or of every tenant when None (the operator's CLI),
        oldest first."""
        ...

    def revoke_api_key(self, key_id: str, revoked_at: str) -> bool:
        """Revoke a live key by its id (the operator's CLI; no tenant needed); False if it
        does not exist or is revoked already."""
        ...

    def count_api_keys(self) -> int:
        """How many keys exist, all tenants together, revoked included."""
        ...


class IdempotencyTx(TxBase, Protocol):
    """``Idempotency-Key`` claims, their progress and stored responses.

    Scoped by tenant: every method takes ``tenant`` (a key names a request of one
    tenant only), but ``purge_idempotency_keys``: the periodic cleanup deletes expired keys
    of every tenant."""

    def idempotency_claim(
        self,
        tenant: str,
        key: str,
        fingerprint: str,
        *,
        now: float,
        stale_after_s: float,
        owner: str = "",
    ) -> IdempotencyRow | None:
        """Claim ``key`` for ``owner`` (an in-flight row) and return None; or, if the key is
        taken, return the existing row. An in-flight claim silent for ``stale_after_s``
        (its request died, or gave up) is taken over — None — unless it has progress
        (:meth:`idempotency_progress`) and ``fingerprint`` differs: that key belongs to
        another body, part of which is applied."""
        ...

    def idempotency_hold(self, tenant: str, key: str, owner: str, *, now: float) -> bool:
        """True if ``owner`` still holds the in-flight claim of ``key``: its sign of life is
        renewed and the row stays locked until the transaction ends, so nobody takes it
        over meanwhile. Every transaction that writes on behalf of a claim calls it first
        (fencing): False means the claim was taken over, and nothing may be written."""
        ...

    def idempotency_save_progress(self, tenant: str, key: str, seq: int, body: bytes) -> None:
        """Store part ``seq`` of an unfinished request's results (in the transaction that
        commits what it describes)."""
        ...

    def idempotency_progress(self, tenant: str, key: str) -> list[bytes]:
        """The stored parts of an unfinished request's results, in ``seq`` order."""
        ...

    def idempotency_finish(self, tenant: str, key: str, status_code: int, response: bytes) -> None:
        """Store the response of a claimed key (state becomes done; progress is dropped)."""
        ...

    def idempotency_release(self, tenant: str, key: str, owner: str = "") -> None:
        """Give up ``owner``'s in-flight claim so that a retry may claim the key at once:
        forgotten if nothing was written for it, else left with its progress, stale, for
        the retry to resume from."""
        ...

    def purge_idempotency_keys(self, *, before: float, limit: int) -> int:
        """Not scoped by tenant (the periodic cleanup serves every tenant): delete, at most
        ``limit`` rows in all, keys of every tenant last claimed, renewed or released
        before ``before`` (epoch seconds), with their progress; how many rows were deleted
        (0: nothing is left to purge)."""
        ...


class JobsTx(TxBase, Protocol):
    """Bulk jobs, their failed input rows and their stored bodies.

    Scoped by tenant where a caller names a job from outside: ``list_jobs`` takes
    ``tenant``, and ``get_job`` does when given one (every API route passes the caller's).
    The rest is reached by job id: the runner claims, leases and saves jobs of every
    tenant (``claim_job``, ``heartbeat_jobs``, ``release_jobs``, ``save_job`` and
    ``get_job`` without a tenant), the periodic cleanup purges old jobs of every tenant
    (``purge_jobs``), and the failures and bodies of a job
    (``*_job_failures``, ``*_job_result(s)``) are read only after a tenant-checked
    ``get_job`` of that id, or by the runner. ``insert_job`` writes the tenant the row
    carries."""

    def insert_job(self, row: JobRow) -> None:
        """Store a new job."""
        ...

    def get_job(
        self, job_id: str, *, tenant: str | None = None, for_update: bool = False
    ) -> JobRow | None:
        """The job, if it exists (and belongs to ``tenant`` when given). ``for_update``
        locks the row until the transaction ends (PostgreSQL; SQLite's write lock is
        held by every transaction already)."""
        ...

    def save_job(self, row: JobRow, *, renew_lease: bool = False) -> None:
        """Write every mutable column of an existing job (by id). ``renew_lease``: the
        heartbeat is the database's clock now (and ``row.heartbeat_at`` is set to it),
        rather than ``row.heartbeat_at``."""
        ...

    def list_jobs(
        self,
        tenant: str,
        *,
        state: str | None = None,
        type: str | None = None,
        limit: int = 100,
        after: tuple[str, str] | None = None,
    ) -> list[JobRow]:
        """A tenant's jobs, newest first; ``after``: only those after the job whose
        (created_at, id) it is, in that order (keyset paging)."""
        ...

    def claim_job(self, worker: str, *, lease_s: float) -> JobRow | None:
        """Take the oldest job that is queued, or running with a heartbeat older than
        ``lease_s`` (its process died): it becomes running under ``worker``, its heartbeat
        the database's clock now, its ``attempts`` one more. Every time is the database's
        clock, never the caller's. None if none."""
        ...

    def count_jobs(self) -> list[tuple[str, str, int]]:
        """How many jobs there are, as (type, state, count), all tenants together: what
        the metrics' jobs gauge shows (a bounded set: the job kinds times the states)."""
        ...

    def heartbeat_jobs(self, worker: str) -> None:
        """Renew ``worker``'s lease on its running jobs (the database's clock now)."""
        ...

    def release_jobs(self, worker: str) -> int:
        """Put ``worker``'s running jobs back in the queue (a clean shutdown): their claim
        does not count as an attempt."""
        ...

    def purge_jobs(self, *, finished_before: str, limit: int) -> int:
        """Delete, at most ``limit`` rows in all, jobs that ended before ``finished_before``
        (an ISO-8601 UTC time as rows carry) and have no delivery pending, with everything
        that hangs on them: failures, stored bodies, their own webhooks, deliveries and
        delivery attempts. Dependents go first and a job last, so a purge cut short leaves
        nothing orphaned and the next one goes on. How many rows were deleted: 0 when
        nothing is left to purge."""
        ...

    def insert_job_failures(self, rows: Sequence[JobFailureRow]) -> None:
        """Store failed input rows (one multi-row statement)."""
        ...

    def list_job_failures(
        self, job_id: str, *, after_row: int = 0, limit: int = 1000
    ) -> list[JobFailureRow]:
        """A job's failures ordered by row number, after ``after_row``."""
        ...

    def delete_job_failures(self, job_id: str) -> None:
        """Forget a job's failures (a validation pass that starts again)."""
        ...

    def insert_job_results(self, job_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store ``(seq, body)`` rows of a job: seq 0 is its input, 1.. its results."""
        ...

    def get_job_result(self, job_id: str, seq: int) -> bytes | None:
        """One stored body of a job (None if absent)."""
        ...

    def list_job_results(
        self, job_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        """A job's ``(seq, body)`` rows with seq above ``after_seq``, in seq order."""
        ...


class UploadsTx(TxBase, Protocol):
    """Jobs' uploaded input files stored in the database (``job_uploads``): chunk rows of
    about 1 MiB, ``seq`` 0, 1, … in file order (see batchops.server.jobs.inputs).

    The life of an upload: the request that receives it calls :meth:`insert_upload_chunks`
    once per chunk, each in a transaction of its own; then, in ONE transaction,
    :meth:`seal_upload` and the insert of the job's row, so that no job ever sees a partial
    upload. The job's process reads it back one chunk at a time (:meth:`upload_chunk`). The
    transaction that ends the job calls :meth:`delete_upload`. A sweep calls
    :meth:`purge_uploads` for what was left behind.

    Not scoped by tenant: an upload is reached by its job's id only, and that id comes from
    the route that made the job (for the caller's tenant) or from the runner that claimed it."""

    def insert_upload_chunks(
        self, job_id: str, chunks: Sequence[tuple[int, bytes | bytearray]], *, now: float
    ) -> None:
        """Store ``(seq, bytes)`` chunks of a job's upload, written at ``now`` (epoch
        seconds). A chunk whose ``seq`` is stored already is left as it is (a retry after
        a commit whose answer was lost)."""
        ...

    def upload_chunk(self, job_id: str, seq: int) -> bytes | None:
        """One chunk of an upload (None past its last chunk, or when there is none)."""
        ...

    def upload_extent(self, job_id: str) -> tuple[int, int]:
        """``(chunks, bytes)`` stored for a job (``(0, 0)``: none). Reads no chunk's
        content."""
        ...

    def seal_upload(self, job_id: str, *, chunks: int, size: int) -> bool:
        """Call this in the transaction that inserts the upload's job, before the insert.
        It checks that all ``chunks`` chunks (``size`` bytes) are stored, and holds the
        upload's lock until the commit, so that a concurrent :meth:`purge_uploads` either
        ran before (and this returns False: the rows are gone) or sees the job. False:
        do not insert the job."""
        ...

    def delete_upload(self, job_id: str) -> int:
        """Delete a job's upload; returns how many chunks were deleted (0 when there were
        none, so it is safe to call again). Runs in the transaction that ends the job."""
        ...

    def purge_uploads(self, *, before: float, limit: int = 100) -> list[str]:
        """The sweep: delete the uploads that no job will read, at most ``limit`` of them,
        and return their job ids. That is an upload of a job that has ended, or one whose
        job does not exist (the request died mid-upload, or was refused after it) and whose
        newest chunk was written before ``before`` (epoch seconds). Choose ``before`` well
        before now: an upload that is still arriving has no job yet, only recent chunks.
        Each upload is checked again under the lock :meth:`seal_upload` takes, so an upload
        sealed meanwhile is never touched. Call it again until it returns fewer than
        ``limit`` ids."""
        ...


class WebhooksTx(TxBase, Protocol):
    """Webhook targets, the outbox of deliveries and their attempts (the server's webhook
    sender reads and writes them).

    Scoped by tenant where a tenant's API reads or changes them: ``get_webhook``,
    ``list_webhooks``, ``webhooks_for_job``, ``delete_webhook`` and
    ``list_webhook_deliveries`` take ``tenant``; inserts write the tenant their rows carry.
    The sender works for every tenant, by worker and delivery id
    (``claim_webhook_deliveries``, ``record_webhook_attempt``,
    ``release_webhook_deliveries``), and ``list_webhook_attempts`` takes the ids of
    deliveries a tenant-scoped listing returned."""

    def insert_webhook(self, row: WebhookRow) -> None:
        """Store a new webhook (a subscription or a job's own)."""
        ...

    def get_webhook(self, tenant: str, webhook_id: str) -> WebhookRow | None:
        """A tenant's subscription (not a job's own webhook)."""
        ...

    def list_webhooks(self, tenant: str) -> list[WebhookRow]:
        """A tenant's subscriptions, oldest first."""
        ...

    def webhooks_for_job(self, tenant: str, job_id: str) -> list[WebhookRow]:
        """The tenant's subscriptions and the job's own webhook: who hears of the job."""
        ...

    def delete_webhook(self, tenant: str, webhook_id: str) -> bool:
        """Remove a subscription and cancel its pending deliveries; False if none."""
        ...

    def insert_webhook_deliveries(self, rows: Sequence[WebhookDeliveryRow]) -> None:
        """Queue deliveries (the outbox: call it in the transaction that makes the event)."""
        ...

    def claim_webhook_deliveries(
        self, worker: str, *, now: float, lease_s: float, limit: int
    ) -> list[tuple[WebhookDeliveryRow, str]]:
        """Take up to ``limit`` pending deliveries due at ``now`` (with their webhook's
        secret): they carry ``worker`` and are not due again before ``now + lease_s``."""
        ...

    def record_webhook_attempt(
        self, worker: str, delivery: WebhookDeliveryRow, attempt: WebhookAttemptRow
    ) -> bool:
        """Store an attempt and the delivery's new state (``delivery`` as changed by the
        sender), releasing the claim; False (nothing written) if ``worker`` no longer holds
        it."""
        ...

    def release_webhook_deliveries(self, worker: str, *, now: float) -> int:
        """Make ``worker``'s claimed deliveries due again at ``now`` (a clean shutdown)."""
        ...

    def list_webhook_deliveries(
        self,
        tenant: str,
        *,
        webhook_id: str | None = None,
        job_id: str | None = None,
        limit: int = 100,
    ) -> list[WebhookDeliveryRow]:
        """A tenant's deliveries (of one webhook and/or job), newest first."""
        ...

    def list_webhook_attempts(self, delivery_ids: Sequence[str]) -> list[WebhookAttemptRow]:
        """The attempts of these deliveries, in attempt order."""
        ...


class Tx(RecordsTx, JobsTx, UploadsTx, WebhooksTx, KeysTx, IdempotencyTx, Protocol):
    """One open transaction: every domain's methods (callers type against this).

    Synchronous: only ever used inside :meth:`Store.run`'s ``fn``. Which methods are
    scoped by tenant, and why the others may not be, each domain protocol says: records
    and idempotency always are; keys, the job runner and the webhook sender work across
    tenants by design, and a job's or a delivery's details are reached by ids a
    tenant-checked read returned.
    """


class Store(Protocol):
    """A database: SQLite (embedded default) or PostgreSQL."""

    dialect: Dialect
    url: str

    async def run(self, fn: Callable[[Tx], T], *, retries: int = 0) -> T:
        """Run ``fn(tx)`` in the database thread inside one transaction: commit when it
        returns, roll back when it raises (the exception propagates). Transient database
        errors (busy, locked, serialization failure) are retried up to ``retries`` times
        with the whole ``fn`` re-run, then raised as TransientStoreError.

        A store may run several callers' ``fn`` in one database transaction, each in a
        savepoint of its own (SQLite's group commit): to each ``fn`` that is
        indistinguishable from a transaction of its own, and no caller gets its result
        before the commit."""
        ...

    async def close(self) -> None:
        """Close connections and stop threads. Idempotent."""
        ...
