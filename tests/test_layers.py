"""Arrows point down: each module imports only from its own layer or the ones below, with no cycle.

Every module under `src/hubspoke` is parsed (not imported) and every import counts: at the top,
inside functions and under ``if TYPE_CHECKING:``, because a type-only import is still a
dependency a reader has to follow. The layers are those of docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import hubspoke

PACKAGE = Path(hubspoke.__file__).resolve().parent

LAYERS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: (
        "contracts",
        (
            "hubspoke.roles",
            "hubspoke.tools",
            "hubspoke.threads",
            "hubspoke.throttle",
            "hubspoke.work",
            "hubspoke.outcomes",
            "hubspoke.events",
            "hubspoke.budget",
            "hubspoke.artifacts",
            "hubspoke.board",
            "hubspoke.outbox",
            "hubspoke.errors",
            "hubspoke.jsontext",
            "hubspoke.plans",
            "hubspoke.router",
        ),
    ),
    2: ("journal", ("hubspoke.journal",)),
    3: (
        "specialists",
        ("hubspoke.specialists", "hubspoke.models", "hubspoke.executors", "hubspoke.mcp"),
    ),
    4: (
        "foreman",
        (
            "hubspoke.workflow",
            "hubspoke.phases",
            "hubspoke.runview",
            "hubspoke.handoff",
            "hubspoke.shape",
            "hubspoke.decisions",
            "hubspoke.followups",
            "hubspoke.tracing",
            "hubspoke.foreman",
        ),
    ),
    5: (
        "surfaces",
        (
            "hubspoke",  # the front door: `hubspoke/__init__.py` re-exports every layer
            "hubspoke.cli",
            "hubspoke.web",
            "hubspoke.loader",
            "hubspoke.testing",
            "hubspoke.replay",
            "hubspoke.examples",
            "hubspoke.web",
        ),
    ),
}
"""Layer number → (name, modules). A module belongs to the entry that names it or the package
that holds it (the longest match): `hubspoke.journal` covers `hubspoke.journal.sqlite`."""


def _layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the match, layer)
    for layer, (_, prefixes) in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), layer)
    return None if best is None else best[1]


def _describe(layer: int | None) -> str:
    return "no layer" if layer is None else f"layer {layer} ({LAYERS[layer][0]})"


def _module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _module_names()


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import``, relative ones included."""
    if not node.level:
        return node.module or ""
    package = importer if is_package else importer.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _known_module(name: str, modules: Collection[str]) -> str | None:
    """`name` or its longest prefix that is one of `modules`."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_in(
    module: str, source: str, modules: Collection[str], *, is_package: bool = False
) -> Iterator[tuple[str, int]]:
    """Which of `modules` the `source` of `module` imports anywhere, with line numbers.

    Imports at the top, in functions and under ``if TYPE_CHECKING:`` all count; relative ones
    are resolved; ``from package import name`` counts as importing ``package.name`` when that is
    a module, else ``package``.
    """
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve(module, is_package, node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        for target in targets:
            found = _known_module(target, modules)
            if found is not None and found != module:
                yield found, node.lineno


def _graph() -> dict[str, dict[str, int]]:
    """importer → {imported: first line}."""
    graph: dict[str, dict[str, int]] = {}
    for module in MODULES:
        edges: dict[str, int] = {}
        path = MODULES[module]
        source = path.read_text(encoding="utf-8")
        is_package = path.name == "__init__.py"
        for target, line in imports_in(module, source, MODULES, is_package=is_package):
            edges.setdefault(target, line)
        graph[module] = edges
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    lost = sorted(m for m in MODULES if _layer_of(m) is None)
    assert not lost, (
        f"modules in no layer: {', '.join(lost)}; add each to LAYERS in tests/test_layers.py "
        "and to the table in docs/architecture.md"
    )


def test_imports_point_down() -> None:
    wrong = []
    for importer, edges in sorted(GRAPH.items()):
        for imported, line in sorted(edges.items()):
            up, down = _layer_of(importer), _layer_of(imported)
            if up is None or down is None or down <= up:
                continue
            path = MODULES[importer].relative_to(PACKAGE.parent)
            wrong.append(
                f"{path}:{line}: {importer} ({_describe(up)}) imports {imported} "
                f"({_describe(down)}): a module may import only its own layer or lower ones"
            )
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph = {importer: set(edges) for importer, edges in GRAPH.items()}
    cycles = _cycles(graph)
    messages = []
    for component in cycles:
        members = set(component)
        edges = [
            f"  {importer} imports {imported} "
            f"({MODULES[importer].relative_to(PACKAGE.parent)}:{GRAPH[importer][imported]})"
            for importer in component
            for imported in sorted(graph[importer] & members)
        ]
        messages.append(f"cycle between {', '.join(component)}:\n" + "\n".join(edges))
    assert not cycles, "import cycles (type-only imports count):\n" + "\n".join(messages)


SAMPLE = """
from __future__ import annotations
from typing import TYPE_CHECKING
import json
import pkg.low
from pkg import mid, NAME
from . import sibling
from .sub.deep import thing
from .. import top_level_name

if TYPE_CHECKING:
    from pkg.typed import T

def later():
    import pkg.lazy.inner
"""


def test_the_checker_sees_every_kind_of_import() -> None:
    modules = {
        "pkg",
        "pkg.low",
        "pkg.mid",
        "pkg.typed",
        "pkg.lazy",
        "pkg.area",
        "pkg.area.me",
        "pkg.area.sibling",
        "pkg.area.sub.deep",
    }

    found = set(imports_in("pkg.area.me", SAMPLE, modules))

    assert found == {
        ("pkg.low", 5),
        ("pkg.mid", 6),
        ("pkg", 6),  # `NAME` is not a module: that name is imported from the package
        ("pkg.area.sibling", 7),
        ("pkg.area.sub.deep", 8),
        ("pkg", 9),
        ("pkg.typed", 12),  # type-only
        ("pkg.lazy", 15),  # inside a function
    }
    # In a package's __init__, a relative import is relative to the package itself.
    assert set(imports_in("pkg.area", "from . import sibling", modules, is_package=True)) == {
        ("pkg.area.sibling", 1)
    }
    assert _layer_of("hubspoke.journal.sqlite") == 2
    assert _layer_of("hubspoke.foreman.loop") == 4  # the foreman package after the rewrite
    assert _layer_of("hubspoke") == 5 and _layer_of("hubspokex") is None
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
