"""The package's import graph has no cycle (issue 21): a module never imports, at the top or
inside a function, a module that imports it back.

The graph is built from the source alone (nothing is imported): every module of spdnn/ is
parsed, relative imports are resolved, and imports inside functions count as well (a lazy
import hides a cycle from Python's loader, not from the reader). `from pkg import name` is an
edge to pkg.name when that is a module, else to pkg. A package's __init__ is the node named
after the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spdnn"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under the package."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of `from <level dots><target> import ...` written in `module`."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `module` imports anywhere in its source (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str) -> None:
        # the deepest known module the name lies in (import a.b.c -> a.b.c, else a.b, ...)
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                found.add(candidate)
                return

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                add(full if full in known else base)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    known = set(names)
    return {module: imports_of(module, path, known) for module, path in names.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, modules in sorted order).
    Written edges only: the implicit import of a module's parent package is not an edge (else
    every package whose __init__ re-exports a submodule would be a cycle)."""
    white, grey, black = 0, 1, 2
    colour = {m: white for m in graph}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = grey
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if colour.get(n, black) == grey:
                return stack[stack.index(n) :] + [n]
            if colour.get(n) == white:
                cycle = visit(n)
                if cycle:
                    return cycle
        stack.pop()
        colour[m] = black
        return None

    for m in sorted(graph):
        if colour[m] == white:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def import_groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more modules that import each other, directly or not (strongly
    connected components), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if n not in graph:
                continue
            if n not in index:
                connect(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while True:
                n = stack.pop()
                group.append(n)
                if n == m:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in sorted(graph):
        if m not in index:
            connect(m)
    return sorted(groups)


def import_cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """(one cycle through it, the group) for each group of modules that import each other."""
    found = []
    for group in import_groups(graph):
        members = set(group)
        cycle = find_cycle({m: graph[m] & members for m in group})
        assert cycle is not None
        found.append((cycle, group))
    return found


def test_resolution_of_relative_imports():
    assert _resolve("spdnn.engines.cpu", False, 1, "base") == "spdnn.engines.base"
    assert _resolve("spdnn.engines.cpu", False, 2, None) == "spdnn"
    assert _resolve("spdnn.engines", True, 1, "base") == "spdnn.engines.base"
    assert _resolve("spdnn.dag.cpu", False, 2, "engines.cpu") == "spdnn.engines.cpu"
    known = set(module_names())
    cpu = imports_of("spdnn.engines.cpu", PACKAGE / "engines" / "cpu.py", known)
    assert "spdnn.engines.base" in cpu and "spdnn.challenge" in cpu


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": {"e"}, "e": {"d"}}
    assert import_cycles(graph) == [(["a", "b", "a"], ["a", "b"]), (["d", "e", "d"], ["d", "e"])]


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50  # the whole package was read
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (one per group of modules that import each other):\n" + "\n".join(
        f"{' -> '.join(cycle)}   (group: {', '.join(group)})" for cycle, group in cycles
    )
