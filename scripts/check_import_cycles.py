"""Fail when modules of a package import each other, directly or round a loop.

    python scripts/check_import_cycles.py [PACKAGE_DIR ...]      (default: dysco)

Reads every ``.py`` file under each package directory (following the symlinks
that link ``compiler/``, ``runtime/``, ... into ``dysco/``) with :mod:`ast`,
without importing anything, and draws an edge from a module to every module of
the same package it imports: at the top, inside functions and under
``if TYPE_CHECKING:`` alike, since each of those is a dependency a reader has
to follow. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg`` itself. The parents a dotted import runs on its way
(``pkg/__init__.py``) are not edges: a package's ``__init__`` re-exporting its
own modules is how a public surface is made, not a cycle.

Prints each group of modules that reach each other (a strongly connected
component of the import graph) with a shortest loop through it, and exits 1 if
there is any; else prints nothing and exits 0.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path


def modules(package_dir: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under ``package_dir`` (a package named after the folder)."""
    found: dict[str, Path] = {}
    root = package_dir.name

    def walk(folder: Path, prefix: str) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                if (
                    entry.name.isidentifier() and entry.name != "__pycache__"
                ):  # a package, or a namespace package without __init__.py
                    walk(entry, f"{prefix}.{entry.name}")
            elif entry.suffix == ".py":
                name = prefix if entry.stem == "__init__" else f"{prefix}.{entry.stem}"
                found[name] = entry

    walk(package_dir, root)
    return found


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """(module, name) pairs for every import in ``tree``; name is None for ``import a.b``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name


def graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``found`` it imports."""
    edges: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for target, imported in _imported(tree, name, path.name == "__init__.py"):
            if imported is not None and f"{target}.{imported}" in found:
                target = f"{target}.{imported}"
            while target and target not in found:  # `import a.b.c` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                edges[name].add(target)
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of two or more modules that reach each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def shortest_loop(edges: dict[str, set[str]], group: list[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = group[0]
    members = set(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node] & members):
            if child == start:
                loop = [node]
                while loop[-1] != start:
                    loop.append(came_from[loop[-1]])
                return [*reversed(loop), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no loop through {start} in {group}")


def main(argv: Sequence[str]) -> int:
    dirs = [Path(arg) for arg in argv] or [Path("dysco")]
    for folder in dirs:
        if not (folder / "__init__.py").exists():
            print(f"check_import_cycles: {folder} is not a package directory", file=sys.stderr)
            return 2
    found: dict[str, Path] = {}
    for folder in dirs:
        found.update(modules(folder))
    edges = graph(found)
    groups = strongly_connected(edges)
    for group in groups:
        print(f"import cycle between {len(group)} modules: {', '.join(group)}")
        print("  for example: " + " -> ".join(shortest_loop(edges, group)))
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
