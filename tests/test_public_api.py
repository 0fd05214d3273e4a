"""Every package's ``__all__`` is what the package really exports, derived, not copied.

The expected names are read from the packages themselves: an ``__init__`` imports what it
exports and nothing else, so its ``__all__`` must equal the public names bound in it (a name
imported but left out of ``__all__``, or listed but not there, fails). Each public name has
one home: a name exported by several packages is the same object everywhere, so there is
no second ``RateLimiter`` or ``RetryPolicy`` on the public surface.
"""

from __future__ import annotations
import __future__

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import batchops


def _packages() -> list[ModuleType]:
    """batchops and every subpackage of it that declares ``__all__``."""
    found = [batchops]
    for info in pkgutil.walk_packages(batchops.__path__, "batchops."):
        if info.ispkg:
            package = importlib.import_module(info.name)
            if hasattr(package, "__all__"):
                found.append(package)
    return found


PACKAGES = _packages()


def _is_foreign(value: object) -> bool:
    """A class or function defined outside batchops (a helper import, not an export)."""
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return False
    return not str(getattr(value, "__module__", "")).startswith("batchops")


def _public_names(package: ModuleType) -> set[str]:
    """The names an ``__init__`` binds for its users: not private, not a submodule, not
    ``from __future__ import annotations``, not a third-party helper it imported."""
    return {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
        and not _is_foreign(value)
    }


def test_the_packages_that_declare_a_public_surface_are_found() -> None:
    names = {p.__name__ for p in PACKAGES}

    assert {"batchops", "batchops.engine", "batchops.coalesce", "batchops.client"} <= names
    assert "batchops.store" in names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_lists_exactly_the_public_names_the_package_binds(package: ModuleType) -> None:
    exported = set(package.__all__)

    assert len(exported) == len(package.__all__), "a name is listed twice"
    assert {n for n in exported if not n.startswith("__")} == _public_names(package)
    assert all(hasattr(package, name) for name in exported)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_exported_class_and_function_is_documented_and_is_batchops_own(
    package: ModuleType,
) -> None:
    objects = [getattr(package, name) for name in package.__all__]
    documented = [o for o in objects if inspect.isclass(o) or inspect.isfunction(o)]

    if package is batchops:
        assert len(documented) > 30
    assert [o.__name__ for o in documented if not (o.__doc__ or "").strip()] == []
    assert [o.__name__ for o in documented if _is_foreign(o)] == []


def test_a_name_exported_by_several_packages_is_one_object() -> None:
    homes: dict[str, set[int]] = {}
    where: dict[str, list[str]] = {}
    for package in PACKAGES:
        for name in package.__all__:
            if name.startswith("__"):
                continue
            homes.setdefault(name, set()).add(id(getattr(package, name)))
            where.setdefault(name, []).append(package.__name__)

    clashes = {name: where[name] for name, ids in homes.items() if len(ids) > 1}
    assert clashes == {}


def test_one_rate_limiter_class_at_most_is_public() -> None:
    limiters = {id(getattr(p, n)) for p in PACKAGES for n in p.__all__ if n.endswith("RateLimiter")}

    assert len(limiters) <= 1


def test_every_error_and_result_class_is_exported_at_the_top_level() -> None:
    from batchops import _exceptions, _results

    for module in (_exceptions, _results):
        classes = {
            name
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and value.__module__ == module.__name__
            and not name.startswith("_")
        }
        assert classes
        assert classes <= set(batchops.__all__), module.__name__


def test_every_top_level_name_comes_from_a_package_that_exports_it() -> None:
    # The top level gathers the most used names; each must be in its home's __all__ too
    # (or be the error tree / results, whose modules are private).
    subpackages = [p for p in PACKAGES if p is not batchops]
    from batchops import _exceptions, _results

    for name in batchops.__all__:
        if name.startswith("__"):
            continue
        value = getattr(batchops, name)
        in_private_module = name in _exceptions.__all__ or name in _results.__all__
        exported_below = any(getattr(p, name, None) is value for p in subpackages)
        assert in_private_module or exported_below, name


def test_every_batchops_error_derives_from_the_one_base() -> None:
    errors = [
        getattr(batchops, n)
        for n in batchops.__all__
        if isinstance(getattr(batchops, n), type) and issubclass(getattr(batchops, n), Exception)
    ]
    assert len(errors) > 10
    assert all(issubclass(e, batchops.BatchopsError) for e in errors)
