"""The client-side batch engine: run any async callable over many items, safely.

One engine (a bounded worker pool, :mod:`batchops.engine._core`) with thin layers:

- :func:`batch_execute` — await every result, in input order (a ``BatchResult``);
- :func:`batch_stream` — an async iterator of results as they finish;
- :func:`run_batch` — the blocking facade for scripts and notebooks;
- :func:`chunked` / :func:`achunked` — split items into batches by count or bytes;
- :class:`AdaptiveChunkSize` — a chunk size steered by request duration (AIMD), which the
  SDK's bulk calls use with ``target_ms=``.

Their options are keywords or one :class:`EngineOptions` value (``options=``). Retries
everywhere in batchops (engine, Batcher, SDK, stores) are one :class:`RetryPolicy` over
one pure :func:`backoff_s`. Tests drive time with :class:`VirtualClock` (``clock=`` on
every function).
"""

from batchops.engine._adaptive import AdaptiveChunkSize
from batchops.engine._chunk import achunked, chunked
from batchops.engine._clock import Clock, MonotonicClock, TimerHandle, VirtualClock
from batchops.engine._execute import batch_execute
from batchops.engine._options import EngineKwargs, EngineOptions
from batchops.engine._progress import Progress
from batchops.engine._retry import RetryPolicy, backoff_s, is_overload, is_transient
from batchops.engine._stream import batch_stream
from batchops.engine._sync import run_batch

__all__ = [
    "AdaptiveChunkSize",
    "Clock",
    "EngineKwargs",
    "EngineOptions",
    "MonotonicClock",
    "Progress",
    "RetryPolicy",
    "TimerHandle",
    "VirtualClock",
    "achunked",
    "backoff_s",
    "batch_execute",
    "batch_stream",
    "chunked",
    "is_overload",
    "is_transient",
    "run_batch",
]
