"""``next``, ``last`` and ``lastIndex`` of a header stack exist only in a parser, as p4c checks.

A control, an action or a function that reads ``h.stk.lastIndex`` is refused with p4c's words
(the parser can keep the value in metadata).  A stack is recognised by its field: a member of a
struct or header declared as a stack (``h8_t[3] stk``).
"""

from __future__ import annotations

from . import ast as A
from .preprocess import SourceMap

_PARSER_ONLY = ("next", "last", "lastIndex")


def _text(e: A.Expr) -> str:
    if isinstance(e, A.Name):
        return e.name
    if isinstance(e, A.Member):
        return f"{_text(e.expr)}.{e.name}"
    if isinstance(e, A.Index):
        return f"{_text(e.expr)}[...]"
    return "(...)"


def check_stack_ops(prog: A.Program, source: SourceMap) -> None:
    """Refuse ``stack.next``, ``stack.last`` and ``stack.lastIndex`` outside parsers."""
    stacks = {
        f.name
        for d in prog.decls
        if isinstance(d, A.StructLike)
        for f in d.fields
        if isinstance(f.type, A.TStack)
    }
    for d in prog.decls:
        if not isinstance(d, A.ControlDecl | A.ActionDecl | A.FunctionDecl):
            continue
        for n in A.walk(d):
            if not (isinstance(n, A.Member) and n.name in _PARSER_ONLY and isinstance(n.expr, A.Member)):
                continue
            if n.expr.name not in stacks:
                continue
            line, col = n.pos if n.pos != A.NOPOS else (1, 1)
            raise source.error(f"{_text(n)}: '{n.name}' for stacks can only be used in a parser", line, col)
