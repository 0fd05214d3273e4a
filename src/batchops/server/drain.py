"""How a serving process stops: first *drain*, then *close* (docs/deploy.md, "Stopping").

On SIGTERM or SIGINT, ``batchops serve`` (:class:`batchops.server.serve.DrainingServer`)
begins the drain: ``/readyz`` answers 503 ``NOT_READY`` naming ``checks.draining``, every
answer carries ``Connection: close`` (a client, or a load balancer's pooled connection,
takes its next request elsewhere), and requests are otherwise served as before — for
``drain_delay_s``, the time a load balancer needs to see the process not ready and stop
sending to it. Then the listener closes: no new connection is accepted, in-flight requests
finish, and the app's lifespan stops the job runner (each job hands itself back after the
chunk it is writing) and the webhook sender, all within ``shutdown_grace_s`` of the close.

The app owns one :class:`Drain` (``app.state.drain``) and offers it to its server in the
ASGI lifespan state, under :data:`DRAIN_STATE`. A server that does not look for it (the
tests' in-process clients, a plain uvicorn) never begins it, and the app behaves as before.
"""

from __future__ import annotations

import time

__all__ = ["DRAIN_STATE", "Drain"]

DRAIN_STATE = "batchops.drain"
"""The key of the app's :class:`Drain` in the ASGI lifespan state."""


class Drain:
    """One process's way out (see the module docstring). Times are ``time.monotonic()``."""

    __slots__ = ("began_at", "closed_at", "delay_s", "grace_s")

    def __init__(self, delay_s: float, grace_s: float) -> None:
        self.delay_s = delay_s
        """How long the process goes on serving, not ready, before it closes."""
        self.grace_s = grace_s
        """How long, from the close, in-flight work has to end."""
        self.began_at: float | None = None
        self.closed_at: float | None = None

    @property
    def draining(self) -> bool:
        """Whether the process is on its way out (not ready for traffic)."""
        return self.began_at is not None

    def begin(self) -> None:
        """Start draining; again: nothing. Safe in a signal handler (it stores a time)."""
        if self.began_at is None:
            self.began_at = time.monotonic()

    def close(self) -> None:
        """The listener closes now: the shutdown grace starts (the drain too, if a close
        came without one)."""
        self.begin()
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    def closes_in(self) -> float:
        """Seconds until the listener closes (0 once it has, or is due to)."""
        if self.began_at is None:
            return self.delay_s
        if self.closed_at is not None:
            return 0.0
        return max(0.0, self.began_at + self.delay_s - time.monotonic())

    def grace_left(self) -> float:
        """Seconds of the shutdown grace still left: all of it until the close."""
        if self.closed_at is None:
            return self.grace_s
        return max(0.0, self.closed_at + self.grace_s - time.monotonic())
