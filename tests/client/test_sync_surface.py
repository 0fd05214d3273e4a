"""The blocking ``Client`` offers exactly what ``AsyncClient`` offers, sub-objects included.

Both surfaces are derived by introspection (public attributes of real instances, then of
the objects they hand out: ``client.jobs``, ``client.collection(name)``), never listed
here, so a method added to the async side without its blocking bridge fails.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, get_type_hints

import pytest

import batchops.client
from batchops.client import AsyncClient, Client, ClientOptions

#: The one name that differs, by Python's convention for closing.
RENAMED = {"aclose": "close"}
UNUSED_URL = "http://127.0.0.1:9"


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def _is_sdk_object(value: object) -> bool:
    module = type(value).__module__
    return module.startswith("batchops.client") and not callable(value)


def _returns_async_sdk_class(method: Any) -> bool:
    annotation = inspect.signature(method).return_annotation
    async_classes = {n for n in batchops.client.__all__ if n.startswith("Async")}
    return isinstance(annotation, str) and annotation in async_classes


def _pairs(async_obj: object, sync_obj: object, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, async object, its blocking counterpart), for the object and everything it
    hands out: attributes that are SDK objects, and methods returning an async SDK class
    (called with one name)."""
    yield path, async_obj, sync_obj
    for name in sorted(_public(async_obj)):
        sync_name = RENAMED.get(name, name)
        value = getattr(async_obj, name)
        counterpart: Any = getattr(sync_obj, sync_name, None)
        if _is_sdk_object(value):
            yield from _pairs(value, counterpart, f"{path}.{name}")
        elif (
            inspect.ismethod(value)
            and not inspect.iscoroutinefunction(value)
            and _returns_async_sdk_class(value)
        ):
            yield from _pairs(value("people"), counterpart("people"), f"{path}.{name}()")


@pytest.fixture(scope="module")
def pairs() -> Iterator[list[tuple[str, Any, Any]]]:
    sync_client = Client(UNUSED_URL, "key")
    async_client = AsyncClient(UNUSED_URL, "key")  # no connection until a request
    try:
        yield list(_pairs(async_client, sync_client, "client"))
    finally:
        sync_client.close()


def test_the_surfaces_reach_the_collections_and_the_jobs(pairs: list[tuple[str, Any, Any]]) -> None:
    assert [path for path, _, _ in pairs] == ["client", "client.collection()", "client.jobs"]


def test_the_blocking_side_has_every_public_name_of_the_async_side_and_no_other(
    pairs: list[tuple[str, Any, Any]],
) -> None:
    for path, async_obj, sync_obj in pairs:
        expected = {RENAMED.get(name, name) for name in _public(async_obj)}
        assert _public(sync_obj) == expected, path


def test_every_blocking_method_takes_the_parameters_of_its_async_method(
    pairs: list[tuple[str, Any, Any]],
) -> None:
    compared = 0
    for path, async_obj, sync_obj in pairs:
        for name in _public(async_obj):
            async_attr = getattr(async_obj, name)
            if not inspect.ismethod(async_attr):
                continue
            sync_attr = getattr(sync_obj, RENAMED.get(name, name))
            assert (
                inspect.signature(sync_attr).parameters == inspect.signature(async_attr).parameters
            ), f"{path}.{name}"
            compared += 1
    assert compared >= 20


def test_no_blocking_method_hands_back_an_awaitable_or_an_async_iterator(
    pairs: list[tuple[str, Any, Any]],
) -> None:
    for path, _, sync_obj in pairs:
        for name in _public(sync_obj):
            attr = getattr(sync_obj, name)
            assert not inspect.iscoroutinefunction(attr), f"{path}.{name}"
            assert not inspect.isasyncgenfunction(attr), f"{path}.{name}"


def test_the_blocking_client_takes_the_async_clients_options() -> None:
    hints = get_type_hints(AsyncClient.__init__)
    keyword_only = [
        p.name
        for p in inspect.signature(AsyncClient).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]

    assert get_type_hints(ClientOptions) == {name: hints[name] for name in keyword_only}
    positional = [p for p in inspect.signature(Client).parameters if p != "options"]
    assert positional == ["base_url", "api_key"]


def test_the_blocking_methods_carry_the_async_docstrings(
    pairs: list[tuple[str, Any, Any]],
) -> None:
    for path, async_obj, sync_obj in pairs:
        for name in _public(async_obj) - set(RENAMED):
            async_attr = getattr(async_obj, name)
            if inspect.iscoroutinefunction(async_attr):
                assert getattr(sync_obj, name).__doc__ == async_attr.__doc__, f"{path}.{name}"
