"""``Idempotency-Key`` on ``POST /v1/batch``: a retried batch is never applied twice.

The guarantee, for every way a batch runs (one transaction, with or without runs of
creates; an NDJSON stream committed slice by slice; an async job):

- **Claim.** The first request with a key claims it: an in-flight row naming the request
  (``owner``, a random token) and its last sign of life. A retry that finds the key in
  flight gets 409 ``IDEMPOTENCY_IN_FLIGHT`` (with ``Retry-After``); one that finds it done
  gets the stored answer (``Idempotent-Replayed: true``) — as NDJSON if it asked for NDJSON.
- **Fencing.** Every transaction that writes on behalf of the key first checks, under a
  row lock, that its request still holds the claim (:meth:`Claim.hold`). A claim silent for
  ``Settings.idempotency_stale_after_s`` may be taken over by a retry (its request looked
  dead); the old request's next transaction then writes nothing and stops. So no timing —
  a slow client, a paused process — can make two requests apply the same operations.
- **Whole or resumable.** A batch that runs in one transaction stores its answer in that
  transaction: the key is done exactly when the writes commit. A stream commits slice by
  slice, and each slice's transaction also stores that slice's results as the key's
  progress; a retry after an interrupted stream replays the committed results and runs
  only the rest.
- **Settled on every exit.** The answer is stored on success and on an atomic failure;
  any other exit (an error, a client that disconnects mid-stream) releases the claim at
  once — forgotten if nothing was written, else left for a retry to resume from. Only a
  process that dies (kill -9) leaves its claim to go stale.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response

from batchops._exceptions import ConflictError, InvalidRequestError, ValidationError
from batchops.store.base import Store, Tx

__all__ = ["Claim", "claim_key", "ndjson_lines", "release_soon", "replay_response"]

MAX_KEY_CHARS = 255


@dataclass(slots=True)
class Claim:
    """This request's claim on an ``Idempotency-Key`` (see the module docstring)."""

    tenant: str
    key: str
    owner: str
    #: Results committed by an earlier run of the same batch that was interrupted (the
    #: parts :func:`batchops.server.batch.service.stream` stored per slice), oldest first.
    progress: list[bytes] = field(default_factory=list)
    settled: bool = False

    def hold(self, tx: Tx) -> None:
        """First thing in every transaction that writes for this key: raise 409
        ``IDEMPOTENCY_KEY_TAKEN_OVER`` (the transaction rolls back) if another request
        has taken the claim over."""
        if not tx.idempotency_hold(self.tenant, self.key, self.owner, now=time.time()):
            raise ConflictError(
                "another request with this Idempotency-Key took over this batch (this one "
                "looked dead); nothing more is applied by this request",
                code="IDEMPOTENCY_KEY_TAKEN_OVER",
                details={"idempotency_key": self.key},
            )

    def finish(self, tx: Tx, status: int, response: bytes) -> None:
        """Store the answer (in the transaction that commits what it describes); the
        caller marks the claim ``settled`` once that transaction has committed."""
        tx.idempotency_finish(self.tenant, self.key, status, response)

    def save_progress(self, tx: Tx, seq: int, part: bytes) -> None:
        """Store part ``seq`` of the results (in the slice's own transaction)."""
        tx.idempotency_save_progress(self.tenant, self.key, seq, part)

    async def release(self, store: Store) -> None:
        """Give the claim up unless it is settled (see :meth:`Tx.idempotency_release`)."""
        if not self.settled:
            self.settled = True
            await store.run(
                lambda tx: tx.idempotency_release(self.tenant, self.key, self.owner), retries=3
            )


async def claim_key(
    store: Store, tenant: str, key: str, body: bytes, *, stale_after_s: float, ndjson: bool
) -> Claim | Response:
    """Claim ``key`` for this request, or answer from what the key holds already: the
    stored response (as NDJSON when ``ndjson``), 409 while another request runs it, 422
    when it was used with another body."""
    if not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable():
        raise InvalidRequestError(
            f"Idempotency-Key must be 1-{MAX_KEY_CHARS} printable characters",
            details={"path": "headers.Idempotency-Key"},
        )
    fingerprint = hashlib.sha256(body).hexdigest()
    owner = secrets.token_hex(8)

    def claim(tx: Tx) -> tuple[Any, list[bytes]]:
        existing = tx.idempotency_claim(
            tenant, key, fingerprint, now=time.time(), stale_after_s=stale_after_s, owner=owner
        )
        # Taken over or new: what an interrupted run of this body committed, to resume.
        return existing, tx.idempotency_progress(tenant, key) if existing is None else []

    existing, progress = await store.run(claim, retries=3)
    if existing is None:
        return Claim(tenant, key, owner, progress)
    if existing.fingerprint != fingerprint:
        raise ValidationError(
            "this Idempotency-Key was used with a different request body",
            code="IDEMPOTENCY_KEY_REUSED",
            details={"idempotency_key": key},
        )
    if existing.state != "done" or existing.response is None:
        raise ConflictError(
            "a request with this Idempotency-Key is still in flight; retry later",
            code="IDEMPOTENCY_IN_FLIGHT",
            details={"idempotency_key": key},
            retry_after=1.0,
        )
    return replay_response(existing.status_code or 200, existing.response, ndjson=ndjson)


def replay_response(status: int, stored: bytes, *, ndjson: bool) -> Response:
    """The stored answer of a key, replayed: as it was stored (JSON), or — for a request
    that asked for NDJSON — as the lines the stream would have sent."""
    headers = {"Idempotent-Replayed": "true"}
    if ndjson:
        try:
            payload = orjson.loads(stored)
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and {"results", "meta"} <= payload.keys():
            return Response(
                ndjson_lines(payload, status),
                status_code=200,
                media_type="application/x-ndjson",
                headers=headers,
            )
    return Response(stored, status_code=status, media_type="application/json", headers=headers)


def ndjson_lines(payload: dict[str, Any], status: int) -> bytes:
    """A batch answer as NDJSON: one line per result, then the meta line."""
    lines = [orjson.dumps(result) for result in payload["results"]]
    lines.append(orjson.dumps(meta_line(payload, status)))
    return b"\n".join(lines) + b"\n"


def meta_line(payload: dict[str, Any], status: int) -> dict[str, Any]:
    """The last line of an NDJSON batch answer."""
    return {
        "batch_id": payload["batch_id"],
        "committed": payload["committed"],
        "status": status,
        "meta": payload["meta"],
    }


_PENDING: set[asyncio.Task[None]] = set()


def release_soon(claim: Claim | None, store: Store) -> None:
    """Release ``claim`` from a detached task: for exits that cannot await (a streamed
    response whose client went away is cancelled, and every await there raises again).
    On PostgreSQL the release waits for a slice still committing (it holds the row)."""
    if claim is None or claim.settled:
        return

    async def release() -> None:
        try:
            await claim.release(store)
        except Exception:  # the store is closing: the claim goes stale instead
            return

    # A context of its own: the release acts for the key's owner, not for the request's
    # API key (see batchops.server.auth), which may have been revoked meanwhile.
    task = asyncio.get_running_loop().create_task(release(), context=contextvars.Context())
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)
