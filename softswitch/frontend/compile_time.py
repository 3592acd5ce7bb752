"""Division and modulo the compiler must be able to do itself, as for p4c's bmv2 back end.

bmv2 (and so p4c for it) has no run-time ``/`` or ``%``: what is left after constant folding must
be a division or modulo of an unsigned value by a power of two, which p4c turns into a shift or a
mask.  We refuse the same programs, so that what runs on ``dysco switch`` also compiles for bmv2.

A value counts as known at compile time if it is a literal, a constant, a constructor parameter,
an enum or error member, or an operator, cast or slice of such values.  Where the divisor is known
but its value is not a plain literal or constant, the program gets the benefit of the doubt.
"""

from __future__ import annotations

from . import ast as A
from .preprocess import SourceMap


class _Known:
    """Which names hold values known at compile time, and the literal values of constants."""

    def __init__(self, prog: A.Program) -> None:
        self.values: dict[str, A.Expr] = {}
        self.names: set[str] = set()
        for node in A.walk(prog.decls):
            if isinstance(node, A.ConstDecl):
                self.names.add(node.name)
                self.values[node.name] = node.value
            elif isinstance(node, A.ControlDecl | A.ParserDecl):
                self.names.update(p.name for p in node.ctor_params)

    def known(self, e: A.Expr) -> bool:
        if isinstance(e, A.IntLit | A.BoolLit | A.TypeMember):
            return True
        if isinstance(e, A.Name):
            return e.name in self.names
        if isinstance(e, A.Unary | A.Cast):
            return self.known(e.expr)
        if isinstance(e, A.Binary):
            return self.known(e.left) and self.known(e.right)
        if isinstance(e, A.Cond):
            return self.known(e.cond) and self.known(e.then) and self.known(e.other)
        if isinstance(e, A.Slice):
            return self.known(e.expr)
        return False

    def literal(self, e: A.Expr) -> int | None:
        """The value of a literal or of a constant defined as one; None otherwise."""
        seen: set[str] = set()
        while isinstance(e, A.Name) and e.name in self.values and e.name not in seen:
            seen.add(e.name)
            e = self.values[e.name]
        return e.value if isinstance(e, A.IntLit) else None


def _text(e: A.Expr) -> str:
    """The expression, written back as P4 (enough of it to recognise in an error message)."""
    if isinstance(e, A.Name):
        return e.name
    if isinstance(e, A.IntLit):
        return str(e.value)
    if isinstance(e, A.Member):
        return f"{_text(e.expr)}.{e.name}"
    if isinstance(e, A.Index):
        return f"{_text(e.expr)}[{_text(e.index)}]"
    if isinstance(e, A.Slice):
        return f"{_text(e.expr)}[{_text(e.hi)}:{_text(e.lo)}]"
    if isinstance(e, A.Binary):
        return f"{_text(e.left)} {e.op} {_text(e.right)}"
    return "(...)"


def check_division(prog: A.Program, source: SourceMap) -> None:
    """Refuse ``/`` and ``%`` that only a run-time division could compute."""
    known = _Known(prog)
    for node in A.walk(prog.decls):
        if not isinstance(node, A.Binary) or node.op not in ("/", "%"):
            continue
        if known.known(node.left) and known.known(node.right):
            continue  # folded by the compiler
        divisor = known.literal(node.right)
        if known.known(node.right) and (divisor is None or (divisor > 0 and divisor & (divisor - 1) == 0)):
            continue  # a power of two: a shift or a mask
        line, col = node.pos if node.pos != A.NOPOS else (1, 1)
        raise source.error(f"{_text(node)}: could not evaluate expression at compilation time", line, col)
