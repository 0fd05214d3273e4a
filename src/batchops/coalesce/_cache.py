"""``Cache``: a small LRU with a maximum size and an optional time-to-live.

The Batcher consults it before queueing a key and fills it with each successful value; a
failed key is never stored. It is a plain ``OrderedDict`` underneath because the hot path
is one dict lookup plus ``move_to_end``: anything fancier would cost more than the batching
saves.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar, cast

__all__ = ["Cache"]

KT = TypeVar("KT", bound=Hashable)
VT = TypeVar("VT")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: Returned by :meth:`Cache.lookup` on a miss (``None`` can be a legitimate value).
MISSING: Final = _Missing()


class Cache(Generic[KT, VT]):
    """An LRU of at most ``max_size`` entries, each valid for ``ttl_s`` seconds.

    ``ttl_s=None`` keeps entries until they are evicted for room. ``clock`` returns
    seconds on a monotonic scale; inject one in tests to expire entries without
    sleeping (with the engine's ``VirtualClock``, pass ``clock=vclock.now``)::

        now = [0.0]
        cache = Cache[str, int](max_size=2, ttl_s=10, clock=lambda: now[0])
        cache.set("a", 1)
        now[0] = 10.0
        assert cache.get("a") is None  # expired

    Not thread-safe; meant to be used from one event loop, like the Batcher.
    """

    __slots__ = ("_clock", "_data", "max_size", "ttl_s")

    def __init__(
        self,
        max_size: int = 10_000,
        ttl_s: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise ValueError(
                f"Cache(max_size={max_size!r}): must be an int >= 1 "
                "(to disable caching, pass cache=None to the Batcher)"
            )
        if ttl_s is not None and (
            not isinstance(ttl_s, int | float) or math.isnan(ttl_s) or ttl_s <= 0
        ):
            raise ValueError(f"Cache(ttl_s={ttl_s!r}): must be seconds > 0, or None for no expiry")
        if not callable(clock):
            raise TypeError(f"Cache(clock={clock!r}): pass a function returning seconds")
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        # key -> (value, expires_at); expires_at is +inf without a TTL so that one
        # comparison serves both cases.
        self._data: OrderedDict[KT, tuple[VT, float]] = OrderedDict()

    def lookup(self, key: KT) -> VT | _Missing:
        """The value for ``key`` (marking it recently used), or :data:`MISSING`."""
        entry = self._data.get(key)
        if entry is None:
            return MISSING
        if entry[1] <= self._clock():
            del self._data[key]
            return MISSING
        self._data.move_to_end(key)
        return entry[0]

    def get(self, key: KT, default: VT | None = None) -> VT | None:
        """The value for ``key``, or ``default`` if absent or expired."""
        value = self.lookup(key)
        return default if isinstance(value, _Missing) else value

    def set(self, key: KT, value: VT) -> None:
        """Store ``value``, evicting the least recently used entry when full."""
        ttl = self.ttl_s
        expires = math.inf if ttl is None else self._clock() + ttl
        data = self._data
        data[key] = (value, expires)
        data.move_to_end(key)
        if len(data) > self.max_size:
            data.popitem(last=False)

    def delete(self, key: KT) -> None:
        """Forget ``key`` (no error if absent)."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        self._data.clear()

    def __contains__(self, key: object) -> bool:
        return self.lookup(cast(KT, key)) is not MISSING

    def __len__(self) -> int:
        """Entries stored, including expired ones not yet noticed."""
        return len(self._data)

    def __repr__(self) -> str:
        return f"Cache(max_size={self.max_size}, ttl_s={self.ttl_s}, size={len(self._data)})"
