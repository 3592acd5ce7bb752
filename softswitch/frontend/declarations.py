"""Checks on the program's top-level names, made right after parsing.

Every top-level declaration (a type, constant, extern, function, action, parser, control,
package or instance) shares one namespace with core.p4 and v1model.p4, as in p4c: a program's
``control Ingress`` clashes with v1model.p4's ``control Ingress<H, M>``.  Functions, extern
functions and actions may be overloaded on their number of parameters.
"""

from __future__ import annotations

from pathlib import Path

from . import ast as A
from .preprocess import SourceMap

_OVERLOADABLE = (A.FunctionDecl, A.ExternFunc, A.ActionDecl)


def _name(d: A.Decl) -> str | None:
    if isinstance(d, A.ErrorDecl | A.MatchKindDecl):
        return None  # their members merge; they declare no name of their own
    if isinstance(d, A.FunctionDecl | A.ExternFunc):
        return d.proto.name
    return d.name


def _arity(d: A.Decl) -> int | None:
    """The number of parameters an overloadable declaration takes (None: not overloadable)."""
    if isinstance(d, A.FunctionDecl | A.ExternFunc):
        return len(d.proto.params)
    if isinstance(d, A.ActionDecl):
        return len(d.params)
    return None


def _name_pos(source: SourceMap, d: A.Decl, name: str) -> tuple[int, int]:
    """Line and column of ``name`` in its declaration (the declaration's start if not found)."""
    line, col = d.pos if d.pos != A.NOPOS else (1, 1)
    lines = source.text.splitlines()
    for ln in range(line, min(line + 3, len(lines) + 1)):  # the name may follow on a later line
        text = lines[ln - 1]
        start = col - 1 if ln == line else 0
        at = text.find(name, start)
        while at >= 0:
            end = at + len(name)
            before = text[at - 1] if at else " "
            after = text[end] if end < len(text) else " "
            if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
                return ln, at + 1
            at = text.find(name, end)
    return line, col


def check_unique_names(prog: A.Program, source: SourceMap) -> None:
    """Refuse a top-level name declared twice (with a position on both declarations)."""
    seen: dict[str, list[A.Decl]] = {}
    for d in prog.decls:
        name = _name(d)
        if name is None:
            continue
        for old in seen.get(name, []):
            arity, old_arity = _arity(d), _arity(old)
            if arity is not None and old_arity is not None and arity != old_arity:
                continue  # an overload
            line, col = _name_pos(source, d, name)
            first = source.pos(*_name_pos(source, old, name))
            where = f"{Path(first.file).name}:{first.line}:{first.column}"
            raise source.error(f"{name} duplicates {name}. (declared first at {where})", line, col)
        seen.setdefault(name, []).append(d)
