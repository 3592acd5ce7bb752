"""Method calls on extern instances must match a method the extern declares, as p4c checks.

``regs.read(i)`` on a v1model ``register`` (which has only ``read(out T, in I)``) is refused with
p4c's words, before the code generator could make sense of it some other way.  A call matches a
method of that name that takes that many arguments (parameters with a default may be left out).
"""

from __future__ import annotations

from collections.abc import Mapping

from . import ast as A
from .preprocess import SourceMap


def _instances(decls: tuple[object, ...], externs: Mapping[str, A.ExternDecl]) -> dict[str, A.ExternDecl]:
    """Instance name -> its extern, for the extern instantiations among ``decls``."""
    out = {}
    for d in decls:
        if isinstance(d, A.Instantiation) and isinstance(d.type, A.TName) and d.type.name in externs:
            out[d.name] = externs[d.type.name]
    return out


def _matches(method: A.MethodProto, nargs: int) -> bool:
    required = sum(1 for p in method.params if p.default is None)
    return required <= nargs <= len(method.params)


def _check(node: object, instances: Mapping[str, A.ExternDecl], source: SourceMap) -> None:
    for n in A.walk(node):
        if not (isinstance(n, A.Call) and isinstance(n.func, A.Member) and isinstance(n.func.expr, A.Name)):
            continue
        ext = instances.get(n.func.expr.name)
        if ext is None:
            continue
        if any(m.name == n.func.name and _matches(m, len(n.args)) for m in ext.methods):
            continue
        line, col = n.pos if n.pos != A.NOPOS else (1, 1)
        what = f"{n.func.expr.name}.{n.func.name}"
        raise source.error(f"{what}: extern {ext.name} does not have method matching this call", line, col)


def check_extern_calls(prog: A.Program, source: SourceMap) -> None:
    """Refuse a call of an extern instance's method that the extern does not declare."""
    externs = {d.name: d for d in prog.decls if isinstance(d, A.ExternDecl)}
    top = _instances(prog.decls, externs)
    for d in prog.decls:
        if isinstance(d, A.ControlDecl | A.ParserDecl):
            local = _instances(d.locals or (), externs)
            params = {p.name for p in (*d.params, *d.ctor_params)}
            visible = {k: v for k, v in top.items() if k not in params} | local
            _check(d, visible, source)
        elif isinstance(d, A.ActionDecl | A.FunctionDecl):
            _check(d, top, source)
