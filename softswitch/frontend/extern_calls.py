"""Extern instances as p4c checks them: their type arguments and the methods called on them.

``register<bit<8>, bit<32>>`` under the 2018 v1model (whose register takes one type parameter)
and ``regs.read(i)`` on a v1model ``register`` (which has only ``read(out T, in I)``) are refused
with p4c's words, before the code generator could make sense of them some other way.  Type
arguments, where given, must be as many as the extern's type parameters (where left out, they are
inferred).  A call matches a method of that name that takes that many arguments (parameters with a
default may be left out).
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


def _type_text(t: A.TypeRef) -> str:
    """A type as written (enough of it to recognise in an error message)."""
    if isinstance(t, A.TBit):
        width = t.width.value if isinstance(t.width, A.IntLit) else "..."
        return f"{'int' if t.signed else 'bit'}<{width}>"
    if isinstance(t, A.TName):
        args = f"<{', '.join(map(_type_text, t.args))}>" if t.args else ""
        return f"{t.name}{args}"
    if isinstance(t, A.TSimple):
        return t.kind
    return "..."


def _check_type_args(prog: A.Program, externs: Mapping[str, A.ExternDecl], source: SourceMap) -> None:
    for n in A.walk(prog.decls):
        if not (isinstance(n, A.Instantiation) and isinstance(n.type, A.TName) and n.type.args):
            continue
        ext = externs.get(n.type.name)
        if ext is None or len(n.type.args) == len(ext.type_params):
            continue
        line, col = n.pos if n.pos != A.NOPOS else (1, 1)
        raise source.error(
            f"{_type_text(n.type)}: Type {ext.name} has {len(ext.type_params)} type parameter(s), "
            f"but it is specialized with {len(n.type.args)}",
            line,
            col,
        )


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
    """Refuse wrong type arguments of an extern instance, and calls of methods it does not declare."""
    externs = {d.name: d for d in prog.decls if isinstance(d, A.ExternDecl)}
    _check_type_args(prog, externs, source)
    top = _instances(prog.decls, externs)
    for d in prog.decls:
        if isinstance(d, A.ControlDecl | A.ParserDecl):
            local = _instances(d.locals or (), externs)
            params = {p.name for p in (*d.params, *d.ctor_params)}
            visible = {k: v for k, v in top.items() if k not in params} | local
            _check(d, visible, source)
        elif isinstance(d, A.ActionDecl | A.FunctionDecl):
            _check(d, top, source)
