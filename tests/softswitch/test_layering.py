"""The layering of softswitch/: no import cycles, and the targets never import each other.

Imports are read with :mod:`ast` (nothing is imported), including imports inside
functions and under ``TYPE_CHECKING``: a loop that only typing sees is still a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "softswitch"
PKG = "dysco.softswitch"


def module_name(path: Path, root: Path = ROOT, pkg: str = PKG) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([pkg, *parts])


def imports_of(path: Path, root: Path = ROOT, pkg: str = PKG) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` per import statement of ``path`` (relative imports made absolute)."""
    me = module_name(path, root, pkg)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((mod, tuple(a.name for a in node.names)))
    return found


def graph(root: Path = ROOT, pkg: str = PKG) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports.  ``from p import m`` of a submodule ``m``
    is an edge to ``p.m`` only; importing a name defined in ``p`` is an edge to ``p``."""
    mods = {module_name(f, root, pkg): f for f in sorted(root.rglob("*.py"))}
    g: dict[str, set[str]] = {}
    for name, f in mods.items():
        deps: set[str] = set()
        for mod, names in imports_of(f, root, pkg):
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods]
            deps.update(subs)
            if len(subs) < len(names) or not names:
                deps.add(mod)
        g[name] = {d for d in deps if d in mods and d != name}
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle_in_softswitch() -> None:
    g = graph()
    assert len(g) > 30, "the walk found the softswitch modules"
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_targets_do_not_import_each_other() -> None:
    g = graph()
    targets = sorted({m.split(".")[3] for m in g if m.startswith(PKG + ".targets.") and m.count(".") >= 3})
    assert "python" in targets
    for mod, deps in g.items():
        for t in targets:
            if mod.startswith(f"{PKG}.targets.{t}"):
                bad = [
                    d
                    for d in deps
                    if d.startswith(f"{PKG}.targets.") and not d.startswith(f"{PKG}.targets.{t}")
                ]
                assert not bad, f"{mod} imports another target: {bad}"


def test_lower_layers_do_not_import_targets_or_the_server() -> None:
    g = graph()
    for mod, deps in g.items():
        if mod.startswith((f"{PKG}.frontend", f"{PKG}.ir", f"{PKG}.api")):
            bad = [d for d in deps if d.startswith((f"{PKG}.targets", f"{PKG}.server"))]
            assert not bad, f"{mod} (a lower layer) imports {bad}"


@pytest.mark.parametrize("loop", ["direct", "typing-only", "in a function"])
def test_the_check_finds_a_cycle(tmp_path: Path, loop: str) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    b = {
        "direct": "from .a import x\n",
        "typing-only": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        "in a function": "def f():\n    from .a import x\n",
    }[loop]
    (pkg / "b.py").write_text(b)
    (pkg / "c.py").write_text("from .b import y\n")
    cycle = find_cycle(graph(pkg, "t.pkg"))
    assert cycle is not None and set(cycle) == {"t.pkg.a", "t.pkg.b"}
