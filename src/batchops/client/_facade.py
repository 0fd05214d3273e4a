"""How the blocking SDK is made: a private event loop, and one-line method bridges.

Why not a second client: the blocking ``Client`` must never be a twin of ``AsyncClient``
(two copies of request logic drift). Each blocking class declares its methods as
``name = blocking(AsyncThing.name)`` (or ``iterating`` for async iterators): the method
IS the async one, run on the client's loop thread, with its signature and docstring.
``tests/client/test_sync_surface.py`` derives both surfaces by introspection and compares
them, so a method added to an async class without its bridge fails a test.

Why a thread: the connection pool (aiohttp) and the Batcher are bound to the loop that
created them; a loop running for the client's lifetime in a daemon thread lets every call
reuse them, where ``asyncio.run`` per call would rebuild them each time.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

__all__ = ["Facade", "LoopThread", "blocking", "handing", "iterating"]

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")
F = TypeVar("F", bound="Facade[Any]")


class LoopThread:
    """An event loop running in a daemon thread; ``run(coro)`` blocks until it is done."""

    __slots__ = ("_loop", "_thread", "closed")

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.closed = False

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the loop and wait for its result (or exception)."""
        if self.closed:
            coro.close()
            raise RuntimeError("this Client is closed; create a new one")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def iterate(self, iterator: AsyncIterator[R]) -> Iterator[R]:
        """A blocking iterator over ``iterator``: each step runs on the loop.

        Leaving early (``break``, ``close()``, garbage collection) closes the async
        iterator on the loop too, which cancels what it was running.
        """

        async def step() -> R:
            return await anext(iterator)

        finished = False
        try:
            while True:
                try:
                    item = self.run(step())
                except StopAsyncIteration:
                    finished = True
                    return
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
            if not finished and aclose is not None and not self.closed:
                self.run(aclose())

    def stop(self) -> None:
        """Stop the loop and join its thread (idempotent)."""
        self.closed = True
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class Facade(Generic[A]):
    """A blocking view of one async object (``_async``), run on a :class:`LoopThread`."""

    __slots__ = ("_async", "_loop")

    def __init__(self, loop: LoopThread, target: A) -> None:
        self._loop = loop
        self._async = target


class _Bridge(Generic[P, R]):
    """A descriptor: the async method ``method``, as a blocking method of a Facade."""

    # No __slots__: ``__doc__`` must be settable per instance (help() shows the method's).

    def __init__(
        self,
        method: Callable[Concatenate[Any, P], Any],
        wrap: Callable[[LoopThread, Any], R],
        returns: Any = inspect.Signature.empty,
    ) -> None:
        self._method = method
        self._wrap = wrap
        self._returns = returns
        self._signature: inspect.Signature | None = None
        self.__doc__ = method.__doc__

    @property
    def method(self) -> Callable[..., Any]:
        """The async method this one runs."""
        return self._method

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Bridge[P, R]: ...

    @overload
    def __get__(self, obj: Facade[Any], owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: Facade[Any] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        method, target, loop, wrap = self._method, obj._async, obj._loop, self._wrap

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return wrap(loop, method(target, *args, **kwargs))

        call.__name__ = call.__qualname__ = method.__name__
        call.__doc__ = method.__doc__
        call.__signature__ = self.signature()  # type: ignore[attr-defined]
        return call

    def signature(self) -> inspect.Signature:
        """The async method's signature without ``self`` (what the bound call takes); an
        async iterator's is a blocking ``Iterator``."""
        if self._signature is None:
            full = inspect.signature(self._method)
            returns = full.return_annotation
            if self._returns is not inspect.Signature.empty:
                returns = self._returns
            parameters = list(full.parameters.values())[1:]
            self._signature = full.replace(parameters=parameters, return_annotation=returns)
        return self._signature


def _run(loop: LoopThread, coro: Any) -> Any:
    return loop.run(coro)


def _iterate(loop: LoopThread, iterator: Any) -> Any:
    return loop.iterate(iterator)


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> _Bridge[P, R]:
    """``name = blocking(AsyncThing.name)``: the coroutine method, run to its result."""
    return _Bridge(method, _run)


def iterating(method: Callable[Concatenate[Any, P], AsyncIterator[R]]) -> _Bridge[P, Iterator[R]]:
    """``name = iterating(AsyncThing.name)``: the async iterator, as a blocking iterator."""
    return _Bridge(method, _iterate, returns=Iterator)


def handing(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, A]],
    facade: Callable[[LoopThread, A], F],
) -> _Bridge[P, F]:
    """``name = handing(AsyncThing.name, Thing)``: the coroutine method, run to its result
    (an async SDK object), handed back as its blocking facade ``Thing`` on the same loop."""

    def wrap(loop: LoopThread, coro: Any) -> F:
        return facade(loop, loop.run(coro))

    return _Bridge(method, wrap, returns=facade)
