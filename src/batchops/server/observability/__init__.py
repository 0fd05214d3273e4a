"""Observability of ``batchops serve`` (docs/operations.md): Prometheus metrics
(:mod:`.metrics`), structured logs (:mod:`.logs`), OpenTelemetry spans (:mod:`.tracing`),
and the per-request layer that feeds all three (:mod:`.middleware`)."""

from __future__ import annotations

__all__: list[str] = []
