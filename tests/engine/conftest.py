"""Shared fixtures for the engine tests: a virtual clock and a recording operation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from batchops.engine import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    """A fresh autojump clock at t=0."""
    return VirtualClock()


@dataclass
class Spy:
    """Records when each item starts and how many run at once."""

    clock: VirtualClock
    starts: list[tuple[object, float]] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    calls: list[object] = field(default_factory=list)

    def enter(self, item: object) -> None:
        self.calls.append(item)
        self.starts.append((item, self.clock.now()))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def start_times(self) -> list[float]:
        return [t for _, t in self.starts]


@pytest.fixture
def spy(clock: VirtualClock) -> Spy:
    """A recorder bound to the test's virtual clock."""
    return Spy(clock)


SpyFactory = Callable[[VirtualClock], Spy]
