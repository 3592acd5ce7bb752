"""Scopes, symbols and the line emitter the code generator shares."""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Protocol

from dysco.errors import SourceError

from ...frontend import ast as A
from ...frontend import types as T


class TypeEnv(Protocol):
    """What expressions need from the compiler: program types, error codes, located errors.

    :class:`~.context.Compiler` is one; :class:`~.exprs.ExprGen` takes it by this interface so
    that expressions sit below the compiler in the import order.
    """

    types: dict[str, T.Type]

    def err(self, msg: str, pos: A.Pos) -> SourceError: ...
    def error_code(self, name: str) -> int | None: ...
    def resolve_type(self, tr: A.TypeRef, scope: Scope | None = None) -> T.Type: ...


@dataclass
class Sym:
    """What a name means inside a body.

    kinds: ``var`` (``code`` is an assignable Python expression), ``const``,
    ``extern`` (an extern instance; ``obj`` is its generated name), ``table``,
    ``action``, ``block`` (a parser/control instance), ``packet``.
    """

    kind: str
    code: str
    type: T.Type
    const: object = None
    obj: object = None


@dataclass
class Scope:
    parent: Scope | None = None
    syms: dict[str, Sym] = field(default_factory=dict)

    def lookup(self, name: str) -> Sym | None:
        s: Scope | None = self
        while s is not None:
            if name in s.syms:
                return s.syms[name]
            s = s.parent
        return None

    def child(self) -> Scope:
        return Scope(self)


@dataclass(frozen=True)
class Val:
    """A generated Python expression, its P4 type and, when known, its constant value."""

    code: str
    type: T.Type
    const: object = None


def pyname(prefix: str, *parts: str) -> str:
    name = prefix + "_" + "_".join(p.replace(".", "_").replace("$", "_") for p in parts)
    return name + "_" if keyword.iskeyword(name) else name


def fattr(name: str) -> str:
    """The Python attribute holding field ``name`` (P4 names may be Python keywords)."""
    return "f_" + name if keyword.iskeyword(name) or name.startswith("_") else name


class Emitter:
    """Collects indented Python lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.indent = 0
        self._tmp = 0

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def tmp(self, hint: str = "t") -> str:
        self._tmp += 1
        return f"_{hint}{self._tmp}"

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
