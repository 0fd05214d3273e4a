"""How the job packages depend on each other, read off the source (imports inside
``if TYPE_CHECKING:`` count too): the scheduler knows no job kind, webhooks know no job
kind, and no module of the server is part of an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import batchops

SRC = Path(batchops.__file__).parent
KINDS = ("batchops.server.imports", "batchops.server.bulk", "batchops.server.batch")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` -> the modules of ``package`` it imports (absolute
    imports; ``from a import b`` counts as importing ``a.b`` when that is a module)."""
    root = SRC.parent.joinpath(*package.split("."))
    modules = {_module(path): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _imports_of(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    return {
        name: imported
        for name, imported in graph.items()
        if name == package or name.startswith(package + ".")
    }


def test_no_module_of_the_server_is_part_of_an_import_cycle() -> None:
    assert _cycles(_graph("batchops.server")) == []


def test_the_scheduler_imports_no_job_kind_and_no_webhook_module() -> None:
    graph = _graph("batchops.server")
    forbidden = (*KINDS, "batchops.server.webhooks")
    found = {
        (name, target)
        for name, targets in _imports_of(graph, "batchops.server.jobs").items()
        for target in targets
        if target.startswith(forbidden)
    }
    assert found == set()


def test_webhooks_import_no_job_kind() -> None:
    graph = _graph("batchops.server")
    found = {
        (name, target)
        for name, targets in _imports_of(graph, "batchops.server.webhooks").items()
        for target in targets
        if target.startswith(KINDS)
    }
    assert found == set()


def test_a_cycle_is_found_where_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
