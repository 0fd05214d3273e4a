"""``client.batch()``: any number of operations → requests within limits → one result each.

Why one module of ~550 lines: the runner, a request's retry state (``_State``) and the
rules that turn its wire results into results all work on that one state; apart,
each half would reach into the other's private fields.

Layering (one engine, docs/architecture.md): this module splits operations into requests
(:mod:`._split`) and hands the requests to the engine's :func:`batch_stream`, which owns
concurrency, retries (with Retry-After pauses) and the checkpoint journal. What is left
here is the per-request step the engine calls — send one request, sort its per-operation
results into final ones and retryable ones — and turning wire results into ``Result``s.

Retry rules, per request:

- no answer, or a whole-request 429/503 (or 409 ``IDEMPOTENCY_IN_FLIGHT``): the engine
  retries the *same* body with the *same* ``Idempotency-Key``, so a request the server
  already ran is replayed, never applied twice;
- some operations answered 429/503: the others are final, and only those operations
  (plus the ones that failed only because they depended on them) are sent again — a new
  request body, so a new key (``<key>:r<n>``).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import aclosing
from typing import Any, TypedDict, Unpack

import orjson

from batchops._exceptions import (
    APIError,
    BatchTooLargeError,
    ConflictError,
    ItemSkippedError,
    api_error_from_envelope,
)
from batchops._results import BatchResult, Failure, Result, Success
from batchops.client._split import (
    ENVELOPE_BYTES,
    Chunk,
    PendingOp,
    Splitter,
    asplit_ops,
    pending_op,
    split_ops,
)
from batchops.client._transport import Transport
from batchops.engine import MonotonicClock, Progress, RetryPolicy, batch_stream
from batchops.engine._progress import ProgressReporter
from batchops.engine._retry import is_transient

__all__ = [
    "DEFAULT_RETRY",
    "BatchOptions",
    "BatchRunner",
    "StreamOptions",
    "batch_answer_result",
    "client_retry_policy",
    "is_retryable",
]

#: Per-operation statuses worth sending again.
_RETRY_STATUSES = frozenset({429, 503})


def is_retryable(exc: BaseException) -> bool:
    """The SDK's retry predicate: the engine's :func:`is_transient`, plus a 409 that only
    says "the same idempotent request is still running" (wait, then get its replay)."""
    if is_transient(exc):
        return True
    return isinstance(exc, ConflictError) and exc.code == "IDEMPOTENCY_IN_FLIGHT"


#: Used when the client is built without ``retry=``.
DEFAULT_RETRY = RetryPolicy(
    attempts=8, initial_backoff=0.05, max_backoff=5.0, retry_on=is_retryable
)


def client_retry_policy(retry: RetryPolicy | None) -> RetryPolicy:
    """``retry`` with the SDK's predicate when it uses the engine's default one."""
    if retry is None:
        return DEFAULT_RETRY
    if retry.retry_on is is_transient:
        return dataclasses.replace(retry, retry_on=is_retryable)
    return retry


class BatchOptions(TypedDict, total=False):
    """The keyword options of ``client.batch()`` and of every bulk helper (``get_many``…).

    Documented on :meth:`AsyncClient.batch`; their defaults live in one place,
    :meth:`BatchRunner.stream`.
    """

    atomic: bool
    continue_on_error: bool
    parallel: int | None
    chunk_size: int | None
    max_concurrent: int | None
    validate_only: bool
    on_progress: Callable[[Progress], object] | None
    progress: bool


class StreamOptions(BatchOptions, total=False):
    """``client.stream_batch()``'s options: :class:`BatchOptions` plus resumable runs."""

    idempotency_prefix: str | None
    checkpoint: str | os.PathLike[str] | None


@dataclasses.dataclass(slots=True)
class _State:
    """Where one request stands between attempts (the engine retries the same object)."""

    chunk: Chunk
    base_key: str
    pending: list[PendingOp]
    done: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    last: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    sends: dict[int, int] = dataclasses.field(default_factory=dict)
    subsets: int = 0

    @property
    def key(self) -> str:
        """This attempt's Idempotency-Key: the request's, or its n-th subset's."""
        return self.base_key if self.subsets == 0 else f"{self.base_key}:r{self.subsets}"


@dataclasses.dataclass(frozen=True, slots=True)
class _Options:
    atomic: bool
    continue_on_error: bool
    parallel: int | None
    validate_only: bool

    def encode(self) -> bytes:
        options: dict[str, Any] = {}
        if self.atomic:
            options["atomic"] = True  # continue_on_error must not be sent with it
        elif not self.continue_on_error:
            options["continue_on_error"] = False
        if self.parallel is not None:
            options["parallel"] = self.parallel
        if self.validate_only:
            options["validate_only"] = True
        return orjson.dumps(options)


class BatchRunner:
    """Runs batches and single calls for one client (its transport, limits and policy)."""

    def __init__(
        self,
        transport: Transport,
        *,
        max_batch_operations: int,
        max_batch_bytes: int,
        max_concurrent: int,
        retry: RetryPolicy,
    ) -> None:
        self.transport = transport
        self.max_batch_operations = max_batch_operations
        self.max_batch_bytes = max_batch_bytes
        self.max_concurrent = max_concurrent
        self.retry = retry

    # -- single HTTP calls (REST reads), retried by the engine ----------------------------

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call with the client's retry policy; the JSON answer or an APIError."""
        data = None if body is None else orjson.dumps(body)

        async def attempt() -> Any:
            reply = await self.transport.request(method, path, body=data)
            if reply.status >= 400:
                raise reply.error()
            return reply.json()

        return await self.retry.call(attempt)

    async def submit(
        self,
        operations: Iterable[Mapping[str, Any]],
        *,
        atomic: bool = False,
        continue_on_error: bool = True,
        parallel: int | None = None,
        idempotency_key: str | None = None,
        notification_webhook: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send ``operations`` as ONE async batch (``Prefer: respond-async``): the job.

        One request, so it must fit the server's limits (refused before sending, as an
        atomic batch is). Retried with the same ``Idempotency-Key``: a retry answers the
        same job, never a second one.
        """
        if parallel is not None and (not isinstance(parallel, int) or parallel < 1):
            raise ValueError(f"parallel={parallel!r}: must be an int >= 1, or None")
        chunk = await self._one_request(operations, "async")
        options = _Options(atomic, continue_on_error or atomic, parallel, validate_only=False)
        parts = [
            b'{"operations":[',
            b",".join(op.data for op in chunk.ops),
            b'],"options":',
            options.encode(),
        ]
        if notification_webhook is not None:
            parts += [b',"notification_webhook":', orjson.dumps(notification_webhook)]
        body = b"".join(parts) + b"}"
        headers = {
            "Prefer": "respond-async",
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
        }

        async def attempt() -> dict[str, Any]:
            reply = await self.transport.request("POST", "/v1/batch", body=body, headers=headers)
            if reply.status >= 400:
                raise reply.error()
            job: dict[str, Any] = reply.json()
            return job

        return await self.retry.call(attempt)

    # -- batches ---------------------------------------------------------------------------

    async def execute(
        self,
        operations: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        **kw: Unpack[StreamOptions],
    ) -> BatchResult[Any]:
        """:meth:`stream`, collected into one :class:`BatchResult` in input order."""
        clock = MonotonicClock()
        started = clock.now()
        results: list[Result[Any]] = []
        async with aclosing(self.stream(operations, **kw)) as stream:
            async for result in stream:
                results.append(result)
        results.sort(key=_index_of)
        return BatchResult(results, duration_s=clock.now() - started)

    async def stream(
        self,
        operations: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        atomic: bool = False,
        continue_on_error: bool = True,
        parallel: int | None = None,
        chunk_size: int | None = None,
        validate_only: bool = False,
        max_concurrent: int | None = None,
        on_progress: Callable[[Progress], object] | None = None,
        progress: bool = False,
        idempotency_prefix: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        wire: bool = False,
    ) -> AsyncGenerator[Result[Any], None]:
        """Yield one ``Result`` per operation (``.index`` = input position) as requests finish.

        Within a request, results come in input order; requests finish in any order.
        ``wire=True`` (for the CLI) makes ``Success.value`` the whole wire result
        ``{"status", "body"}`` instead of the body.
        """
        if atomic and not continue_on_error:
            continue_on_error = True  # atomic already stops at the first failure
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(
                f"chunk_size={chunk_size!r}: must be an int >= 1 (operations per request)"
            )
        if parallel is not None and (not isinstance(parallel, int) or parallel < 1):
            raise ValueError(f"parallel={parallel!r}: must be an int >= 1, or None")
        options = _Options(atomic, continue_on_error, parallel, validate_only)
        prefix = idempotency_prefix or uuid.uuid4().hex
        states: dict[int, _State] = {}
        stop = _Stop()
        chunks: Iterable[Chunk] | AsyncIterable[Chunk]
        if atomic:
            # Refused before anything is sent: an atomic batch is never silently split.
            chunks = [await self._one_request(operations, "atomic")]
        else:
            max_ops = min(chunk_size or self.max_batch_operations, self.max_batch_operations)
            splitter = Splitter(max_ops, self.max_batch_bytes)
            if isinstance(operations, AsyncIterable):
                chunks = asplit_ops(operations, splitter)
            else:
                chunks = split_ops(operations, splitter)

        def register(chunk: Chunk) -> Chunk:
            states[chunk.number] = _State(chunk, f"{prefix}:{chunk.number}", list(chunk.ops))
            return chunk

        async def send(chunk: Chunk) -> list[dict[str, Any]]:
            return await self._send(states[chunk.number], options, stop)

        total = len(operations) if isinstance(operations, list | tuple) else None
        reporter = None
        if on_progress is not None or progress:
            reporter = ProgressReporter(
                total=total, clock=MonotonicClock(), callback=on_progress, bar=progress
            )
        concurrency = max_concurrent or self.max_concurrent
        engine_results = batch_stream(
            _mapped(chunks, register),
            send,
            max_concurrent=concurrency,
            retry=self.retry,
            checkpoint=checkpoint,
            key=(lambda chunk: f"{prefix}:{chunk.number}") if checkpoint is not None else None,
        )
        try:
            async with aclosing(engine_results) as stream:
                async for outcome in stream:
                    state = states.pop(outcome.index, None)
                    for result in _results_of(outcome, state, wire):
                        if reporter is not None:
                            reporter.item_done(isinstance(result, Success), concurrency)
                        yield result
        finally:
            if reporter is not None:
                reporter.close()

    async def _one_request(
        self,
        operations: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        kind: str,
    ) -> Chunk:
        limit = self.max_batch_operations
        ops: list[PendingOp] = []
        size = ENVELOPE_BYTES

        def take(index: int, op: Mapping[str, Any]) -> None:
            nonlocal size
            pending = pending_op(index, op)
            size += len(pending.data) + 1
            ops.append(pending)
            if len(ops) > limit:
                raise BatchTooLargeError(
                    f"an {kind} batch must fit one request: more than {limit} operations; "
                    f"nothing was sent. Split it into several {kind} batches"
                    + (", or use atomicity_group on smaller groups" if kind == "atomic" else ""),
                    details={"limit": limit, "actual": f">{limit}", "unit": "operations"},
                )

        if isinstance(operations, AsyncIterable):
            index = 0
            async for op in operations:
                take(index, op)
                index += 1
        else:
            for index, op in enumerate(operations):
                take(index, op)
        if size > self.max_batch_bytes:
            raise BatchTooLargeError(
                f"an {kind} batch must fit one request: {size} bytes is over the "
                f"{self.max_batch_bytes}-byte limit; nothing was sent",
                details={"limit": self.max_batch_bytes, "actual": size, "unit": "bytes"},
            )
        return Chunk(0, ops)

    async def _send(self, state: _State, options: _Options, stop: _Stop) -> list[dict[str, Any]]:
        if state.pending and stop.stopped:
            for op in state.pending:
                state.done[op.index] = _NOT_SENT
            state.pending = []
        if state.pending:
            await self._send_pending(state, options, stop)
        return _finished(state)

    async def _send_pending(self, state: _State, options: _Options, stop: _Stop) -> None:
        pending = state.pending
        body = b"".join(
            (
                b'{"operations":[',
                b",".join(op.data for op in pending),
                b'],"options":',
                options.encode(),
                b"}",
            )
        )
        headers = {} if options.validate_only else {"Idempotency-Key": state.key}
        for op in pending:
            state.sends[op.index] = state.sends.get(op.index, 0) + 1
        reply = await self.transport.request("POST", "/v1/batch", body=body, headers=headers)
        payload = reply.json()
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list) or len(results) != len(pending):
            # A whole-request answer (401, 413, 429, 503…): the engine decides on a retry.
            raise (
                reply.error()
                if reply.status >= 400
                else APIError(
                    f"POST /v1/batch answered {reply.status} without one result per operation",
                    status=502,
                )
            )
        by_index = sorted(results, key=lambda r: int(r.get("index", 0)))
        retry_idx = _retry_set(pending, by_index, atomic=options.atomic)
        if options.validate_only:
            retry_idx = set()
        retry_ops: list[PendingOp] = []
        first_error: dict[str, Any] | None = None
        for op, wire in zip(pending, by_index, strict=True):
            if op.index in retry_idx:
                retry_ops.append(op)
                state.last[op.index] = wire
                if first_error is None and wire.get("status") in _RETRY_STATUSES:
                    first_error = wire
            else:
                state.done[op.index] = wire
                if not options.continue_on_error and int(wire.get("status", 500)) >= 400:
                    stop.stopped = True
        if retry_ops and first_error is not None:
            state.pending = retry_ops
            # A subset is a different body: it needs a key of its own (same key + other
            # body is a 422 IDEMPOTENCY_KEY_REUSED). Deterministic, for --resume.
            state.subsets += 1
            raise _wire_error(first_error, reply.request_id)
        state.pending = []


class _Stop:
    """``continue_on_error=False`` across requests: set at the first failed operation."""

    __slots__ = ("stopped",)

    def __init__(self) -> None:
        self.stopped = False


_NOT_SENT: dict[str, Any] = {
    "status": 0,
    "skipped": True,
    "error": {
        "code": "NOT_SENT",
        "message": "not sent: an earlier operation failed and continue_on_error=False",
        "details": {},
    },
}


def _retry_set(
    pending: list[PendingOp], results: list[dict[str, Any]], *, atomic: bool
) -> set[int]:
    """Input indexes of the operations to send again after this answer."""
    retry = {
        op.index
        for op, wire in zip(pending, results, strict=True)
        if wire.get("status") in _RETRY_STATUSES
    }
    if not retry:
        return retry
    if atomic:
        return {op.index for op in pending}  # rolled back as a whole: resend it whole
    groups = {op.group for op in pending if op.index in retry and op.group is not None}
    names = {op.name for op in pending if op.index in retry and op.name is not None}
    for op, wire in zip(pending, results, strict=True):
        if op.index in retry:
            continue
        if op.group is not None and op.group in groups:
            retry.add(op.index)  # its group rolled back with the retryable member
        elif wire.get("status") == 424 and op.links and op.links <= names:
            retry.add(op.index)  # failed only because a retried operation did
        else:
            continue
        if op.name is not None:
            names.add(op.name)
    return retry


def _finished(state: _State) -> list[dict[str, Any]]:
    # JSON only: this list is what the checkpoint journal stores for the request.
    out = [
        {"i": index, "n": state.sends.get(index, 0), **wire} for index, wire in state.done.items()
    ]
    out.extend({"i": index, "n": 0, **wire} for index, wire in state.chunk.refused)
    out.sort(key=lambda r: int(r["i"]))
    return out


def _wire_error(wire: Mapping[str, Any], request_id: str | None = None) -> APIError:
    error = wire.get("error")
    return api_error_from_envelope(
        int(wire.get("status", 500)),
        {"error": error} if isinstance(error, Mapping) else None,
        request_id=request_id,
    )


def _result_of(wire: Mapping[str, Any], full: bool = False) -> Result[Any]:
    index = int(wire["i"])
    attempts = int(wire.get("n", 1))
    if wire.get("skipped"):
        message = str(wire.get("error", {}).get("message", "not sent"))
        return Failure(index, ItemSkippedError(message), "skipped", 0)
    status = int(wire.get("status", 500))
    if status < 400:
        if full:
            return Success(index, {"status": status, "body": wire.get("body")}, attempts)
        return Success(index, wire.get("body"), attempts)
    return Failure(index, _wire_error(wire), "failed", attempts)


def batch_answer_result(answer: Mapping[str, Any]) -> BatchResult[Any]:
    """A ``POST /v1/batch`` answer as the server sends it (``{"results": [{"index",
    "status", "body" | "error"}], "meta": {"duration_ms"}}``; an async batch's
    ``GET /v1/jobs/{id}/results``) as a :class:`BatchResult` in input order: the same
    Success / Failure per operation as :meth:`BatchRunner.execute` gives."""
    results = answer.get("results")
    if not isinstance(results, list):
        raise APIError("a batch answer without results", status=502)
    wires = sorted(results, key=lambda r: int(r.get("index", 0)))
    meta = answer.get("meta")
    duration_ms = meta.get("duration_ms", 0) if isinstance(meta, Mapping) else 0
    return BatchResult(
        [_result_of({"n": 1, **wire, "i": wire.get("index", 0)}) for wire in wires],
        duration_s=float(duration_ms or 0) / 1000,
    )


def _results_of(
    outcome: Result[list[dict[str, Any]]], state: _State | None, full: bool
) -> Iterator[Result[Any]]:
    if isinstance(outcome, Success):
        for wire in outcome.value:
            yield _result_of(wire, full)
        return
    # The engine gave up on this request: keep what was final, fail what was pending
    # with its own last per-operation error when it has one, else the request's error.
    if state is None:
        return
    results = [_result_of(w, full) for w in _finished(state)]
    for op in state.pending:
        attempts = state.sends.get(op.index, 0)
        last = state.last.get(op.index)
        error: BaseException = outcome.error if last is None else _wire_error(last)
        results.append(Failure(op.index, error, outcome.status, attempts))
    results.sort(key=_index_of)
    yield from results


def _index_of(result: Result[Any]) -> int:
    return result.index


def _mapped(
    chunks: Iterable[Chunk] | AsyncIterable[Chunk], register: Callable[[Chunk], Chunk]
) -> Iterable[Chunk] | AsyncIterable[Chunk]:
    if isinstance(chunks, AsyncIterable):
        return _amapped(chunks, register)
    return map(register, chunks)


async def _amapped(
    chunks: AsyncIterable[Chunk], register: Callable[[Chunk], Chunk]
) -> AsyncIterator[Chunk]:
    async for chunk in chunks:
        yield register(chunk)
