"""OpenTelemetry spans (docs/operations.md, "Tracing"), when ``Settings.tracing`` is on.

Spans: one per HTTP request, one per batch run, one per job chunk (never one per row or
operation: a batch of 1,000 creates is one span). They go to the global tracer provider
the operator sets up (``opentelemetry-instrument``, or the SDK configured in code); the
API alone records nothing.

Off (the default), this module imports no opentelemetry module at all and :func:`span`
returns one shared no-op context manager: no cost beyond a global read and a call. (FastAPI
and redis-py import ``opentelemetry-api`` themselves whenever it is installed; FastAPI's
own tracing layer is turned off by ``create_app``, so that ours is the one source of
spans.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["configure_tracing", "enabled", "span"]

_NOTHING: AbstractContextManager[Any] = contextlib.nullcontext()
_tracer: list[Any] = [None]


def configure_tracing(on: bool, tracer_provider: Any = None) -> None:
    """Turn spans on (importing opentelemetry then, and only then) or off, for this
    process. ``tracer_provider``: the provider to use instead of the global one."""
    if not on:
        _tracer[0] = None
        return
    from opentelemetry import trace

    _tracer[0] = trace.get_tracer("batchops", tracer_provider=tracer_provider)


def enabled() -> bool:
    """Whether spans are on."""
    return _tracer[0] is not None


def span(
    name: str, attributes: Mapping[str, str | int | float | bool] | None = None
) -> AbstractContextManager[Any]:
    """A span ``name`` around the block (the current span its parent); entering it gives
    the span, or None when tracing is off."""
    tracer = _tracer[0]
    if tracer is None:
        return _NOTHING
    cm: AbstractContextManager[Any] = tracer.start_as_current_span(name, attributes=attributes)
    return cm
