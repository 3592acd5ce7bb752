"""Expressions: type checking with bit widths, constant folding and Python code generation."""

from __future__ import annotations

from typing import Any

from ...frontend import ast as A
from ...frontend import types as T
from . import runtime as R
from .scope import Scope, Sym, TypeEnv, Val, fattr


def _fold_env() -> dict[str, Any]:
    """Names constant folding may evaluate (a fresh dict per use)."""
    return {"_sat": R.saturate, "_s": R.signed, "__builtins__": {"min": min, "max": max}}


def literal(v: object) -> str:
    return repr(v)


class ExprGen:
    """Generates Python expressions for P4 expressions in one scope."""

    def __init__(self, comp: TypeEnv, scope: Scope) -> None:
        self.c = comp
        self.scope = scope

    # ------------------------------------------------------------ helpers
    def err(self, msg: str, node: Any) -> Exception:
        return self.c.err(msg, getattr(node, "pos", A.NOPOS))

    def fold(self, code: str, t: T.Type, *vals: Val) -> Val:
        if all(v.const is not None for v in vals):
            try:
                value = eval(code, _fold_env())
            except ZeroDivisionError:
                raise self.c.err("division by zero in a constant expression", A.NOPOS) from None
            return Val(literal(value), t, value)
        return Val(code, t)

    def coerce(self, v: Val, t: T.Type, node: Any) -> Val:
        """``v`` as a value of type ``t`` (implicit casts P4 allows: int constants, typedefs)."""
        if v.type == t:
            return v
        if isinstance(t, T.Bits) and v.type == T.INT:
            if v.const is None:
                raise self.err(f"cannot use an arbitrary-precision value as {t}", node)
            value = int(v.const) & t.mask  # type: ignore[call-overload]
            return Val(literal(value), t, value)
        if isinstance(t, T.Bits) and isinstance(v.type, T.Enum) and v.type.underlying == t:
            return Val(v.code, t, v.const)
        if isinstance(t, T.Enum) and t.underlying is not None and v.type == t.underlying:
            return Val(v.code, t, v.const)
        if isinstance(t, T.Enum) and t.underlying is not None and v.type == T.INT:
            return self.coerce(self.coerce(v, t.underlying, node), t, node)
        if isinstance(t, T.Struct) and isinstance(v.type, T.Tuple):
            return v  # list expression initialising a struct: handled by the caller
        raise self.err(f"type mismatch: expected {t}, got {v.type}", node)

    def bits(self, v: Val, node: Any) -> T.Bits:
        t = v.type
        if isinstance(t, T.Enum) and t.underlying is not None:
            return t.underlying
        if not isinstance(t, T.Bits):
            raise self.err(f"expected a bit<W> or int<W> value, got {t}", node)
        return t

    def unify(self, a: Val, b: Val, node: Any) -> tuple[Val, Val, T.Type]:
        if a.type == T.INT and b.type == T.INT:
            return a, b, T.INT
        if a.type == T.INT:
            a = self.coerce(a, self._num(b, node), node)
        elif b.type == T.INT:
            b = self.coerce(b, self._num(a, node), node)
        ta, tb = self._num(a, node), self._num(b, node)
        if ta != tb:
            raise self.err(f"operands have different types: {ta} and {tb}", node)
        return a, b, ta

    def _num(self, v: Val, node: Any) -> T.Type:
        if isinstance(v.type, T.Enum) and v.type.underlying is not None:
            return v.type.underlying
        return v.type

    def const_int(self, e: A.Expr) -> int:
        v = self.expr(e)
        if v.const is None or isinstance(v.const, bool) or not isinstance(v.const, int):
            raise self.err("expected a compile-time constant integer", e)
        return v.const

    # ------------------------------------------------------------ expressions
    def expr(self, e: A.Expr, want: T.Type | None = None) -> Val:
        v = self._expr(e, want)
        if want is not None and v.type == T.INT and isinstance(want, T.Bits | T.Enum):
            v = self.coerce(v, want, e)
        return v

    def _expr(self, e: A.Expr, want: T.Type | None) -> Val:
        if isinstance(e, A.IntLit):
            if e.width is not None:
                if e.width <= 0:
                    raise self.err("a width must be positive", e)
                t = T.Bits(e.width, e.signed)
                return Val(literal(e.value & t.mask), t, e.value & t.mask)
            return Val(literal(e.value), T.INT, e.value)
        if isinstance(e, A.BoolLit):
            return Val(literal(e.value), T.BOOL, e.value)
        if isinstance(e, A.StrLit):
            return Val(literal(e.value), T.STRING, e.value)
        if isinstance(e, A.Name):
            return self.name(e)
        if isinstance(e, A.TypeMember):
            return self.type_member(e)
        if isinstance(e, A.Member):
            return self.member(e)
        if isinstance(e, A.Index):
            return self.index(e)
        if isinstance(e, A.Slice):
            return self.slice(e)
        if isinstance(e, A.Unary):
            return self.unary(e, want)
        if isinstance(e, A.Binary):
            return self.binary(e, want)
        if isinstance(e, A.Cond):
            c = self.expr(e.cond, T.BOOL)
            if c.type != T.BOOL:
                raise self.err(f"condition must be bool, got {c.type}", e.cond)
            a, b = self.expr(e.then, want), self.expr(e.other, want)
            rt: T.Type = a.type
            if a.type != b.type:
                a, b, rt = self.unify(a, b, e)
            if c.const is not None:
                return a if c.const else b
            return Val(f"({a.code} if {c.code} else {b.code})", rt)
        if isinstance(e, A.Cast):
            return self.cast(self.c.resolve_type(e.type, self.scope), self.expr(e.expr), e)
        if isinstance(e, A.ListExpr):
            items = [self.expr(i) for i in e.items]
            return Val(
                "(" + "".join(i.code + ", " for i in items) + ")", T.Tuple(tuple(i.type for i in items))
            )
        if isinstance(e, A.Call):
            call_expr: Any = getattr(self.c, "call_expr")  # noqa: B009 - provided by the statement compiler
            result: Val = call_expr(self, e)
            return result
        if isinstance(e, A.Default | A.Mask | A.Range):
            raise self.err("a keyset expression is only allowed in select cases and table entries", e)
        raise self.err(f"not supported by softswitch: expression {type(e).__name__}", e)

    def name(self, e: A.Name) -> Val:
        sym = self.scope.lookup(e.name)
        if sym is None:
            raise self.err(f"unknown name {e.name!r}", e)
        return self.sym_val(sym, e)

    def sym_val(self, sym: Sym, node: Any) -> Val:
        if sym.kind in ("var", "packet", "extern", "table", "block"):
            return Val(sym.code, sym.type, None)
        if sym.kind == "const":
            return Val(sym.code, sym.type, sym.const)
        raise self.err(f"{sym.kind} {sym.code} is not a value", node)

    def type_member(self, e: A.TypeMember) -> Val:
        if e.type_name == "error":
            code = self.c.error_code(e.member)
            if code is None:
                raise self.err(f"unknown error {e.member!r}", e)
            return Val(literal(code), T.ERROR, code)
        t = self.c.types.get(e.type_name)
        if isinstance(t, T.Enum):
            if e.member not in t.members:
                raise self.err(f"enum {t.name} has no member {e.member!r}", e)
            value = t.value(e.member)
            return Val(literal(value), t, value)
        raise self.err(f"not supported by softswitch: member {e.member!r} of type {e.type_name}", e)

    def member(self, e: A.Member) -> Val:
        base = self.expr(e.expr)
        t = base.type
        if isinstance(t, T.Struct):
            ft = t.field(e.name)
            if ft is None:
                raise self.err(f"{t.kind} {t.name} has no field {e.name!r}", e)
            return Val(f"{base.code}.{fattr(e.name)}", ft)
        if isinstance(t, T.Stack):
            if e.name in ("last", "next"):
                if e.name == "next":
                    return Val(f"{base.code}.a[{base.code}.nxt]", t.elem)
                return Val(f"{base.code}.a[{base.code}.nxt - 1]", t.elem)
            if e.name in ("lastIndex",):
                return Val(f"(({base.code}.nxt - 1) & 0xFFFFFFFF)", T.Bits(32))
            if e.name in ("nextIndex",):
                return Val(f"{base.code}.nxt", T.Bits(32))
            if e.name == "size":
                return Val(literal(t.size), T.Bits(32), t.size)
            raise self.err(f"header stack has no member {e.name!r}", e)
        if isinstance(t, T.TableResult):
            if e.name == "hit":
                return Val(f"{base.code}.hit", T.BOOL)
            if e.name == "miss":
                return Val(f"(not {base.code}.hit)", T.BOOL)
            if e.name == "action_run":
                return Val(f"{base.code}.action", T.ActionEnum(t.table))
        raise self.err(f"{t} has no member {e.name!r}", e)

    def index(self, e: A.Index) -> Val:
        base = self.expr(e.expr)
        if not isinstance(base.type, T.Stack):
            raise self.err(f"cannot index a value of type {base.type}", e)
        i = self.expr(e.index)
        if i.const is not None:
            if not 0 <= int(i.const) < base.type.size:  # type: ignore[call-overload]
                raise self.err(f"index {i.const} out of bounds for a stack of size {base.type.size}", e)
            return Val(f"{base.code}.a[{i.code}]", base.type.elem)
        self.bits(i, e.index)
        return Val(f"{base.code}.a[min({i.code}, {base.type.size - 1})]", base.type.elem)

    def slice(self, e: A.Slice) -> Val:
        base = self.expr(e.expr)
        bt = self.bits(base, e)
        hi, lo = self.const_int(e.hi), self.const_int(e.lo)
        if not (0 <= lo <= hi < bt.width):
            raise self.err(f"slice [{hi}:{lo}] out of range for {bt}", e)
        w = hi - lo + 1
        code = f"(({base.code} >> {lo}) & {(1 << w) - 1})" if lo else f"({base.code} & {(1 << w) - 1})"
        return self.fold(code, T.Bits(w), base)

    def unary(self, e: A.Unary, want: T.Type | None) -> Val:
        v = self.expr(e.expr, want)
        if e.op == "!":
            if v.type != T.BOOL:
                raise self.err(f"operator ! needs a bool, got {v.type}", e)
            return self.fold(f"(not {v.code})", T.BOOL, v)
        if v.type == T.INT:
            return self.fold(f"({e.op}{v.code})", T.INT, v)
        t = self.bits(v, e)
        if e.op == "~":
            return self.fold(f"({v.code} ^ {t.mask})", t, v)
        if e.op == "-":
            return self.fold(f"((-{v.code}) & {t.mask})", t, v)
        return Val(v.code, t, v.const)

    def binary(self, e: A.Binary, want: T.Type | None) -> Val:
        op = e.op
        if op in ("&&", "||"):
            a, b = self.expr(e.left, T.BOOL), self.expr(e.right, T.BOOL)
            if a.type != T.BOOL or b.type != T.BOOL:
                raise self.err(f"operator {op} needs bool operands", e)
            py = "and" if op == "&&" else "or"
            return self.fold(f"({a.code} {py} {b.code})", T.BOOL, a, b)
        if op in ("<<", ">>"):
            return self.shift(e, want)
        if op == "++":
            a, b = self.expr(e.left), self.expr(e.right)
            ta, tb = self.bits(a, e.left), self.bits(b, e.right)
            return self.fold(
                f"(({a.code} << {tb.width}) | {b.code})", T.Bits(ta.width + tb.width, ta.signed), a, b
            )
        a, b = self.expr(e.left, want), self.expr(e.right, want)
        if a.type == T.INT and b.type != T.INT:
            a = self.expr(e.left, b.type)
        if op in ("==", "!="):
            if a.type != b.type:
                a, b, _ = self.unify(a, b, e)
            if isinstance(a.type, T.Struct | T.Stack):
                neg = "not " if op == "!=" else ""
                return Val(f"({neg}_eq({a.code}, {b.code}))", T.BOOL)
            return self.fold(f"({a.code} {op} {b.code})", T.BOOL, a, b)
        a, b, t = self.unify(a, b, e)
        if t == T.INT:
            py = {"/": "//", "|+|": "+", "|-|": "-"}.get(op, op)
            if op in ("<", ">", "<=", ">="):
                return self.fold(f"({a.code} {op} {b.code})", T.BOOL, a, b)
            return self.fold(f"({a.code} {py} {b.code})", T.INT, a, b)
        if not isinstance(t, T.Bits):
            raise self.err(f"operator {op} is not defined on {t}", e)
        m = t.mask
        if op in ("<", ">", "<=", ">="):
            if t.signed:
                return self.fold(f"(_s({a.code}, {t.width}) {op} _s({b.code}, {t.width}))", T.BOOL, a, b)
            return self.fold(f"({a.code} {op} {b.code})", T.BOOL, a, b)
        if op in ("+", "-", "*"):
            return self.fold(f"(({a.code} {op} {b.code}) & {m})", t, a, b)
        if op in ("&", "|", "^"):
            return self.fold(f"({a.code} {op} {b.code})", t, a, b)
        if op in ("|+|", "|-|"):
            py = "+" if op == "|+|" else "-"
            if t.signed:
                sa, sb = f"_s({a.code}, {t.width})", f"_s({b.code}, {t.width})"
                return self.fold(f"_sat({sa} {py} {sb}, {t.width}, True)", t, a, b)
            return self.fold(f"_sat({a.code} {py} {b.code}, {t.width}, False)", t, a, b)
        if op in ("/", "%"):
            if t.signed:
                raise self.err(f"not supported by softswitch: {op} on signed values", e)
            if b.const == 0:
                raise self.err("division by zero", e)
            py = "//" if op == "/" else "%"
            if b.const is not None:
                return self.fold(f"({a.code} {py} {b.code})", t, a, b)
            return Val(f"({a.code} {py} {b.code} if {b.code} else 0)", t)
        raise self.err(f"not supported by softswitch: operator {op}", e)

    def shift(self, e: A.Binary, want: T.Type | None) -> Val:
        a = self.expr(e.left, want)
        b = self.expr(e.right)
        if b.type != T.INT:
            bt = self.bits(b, e.right)
            if bt.signed:
                raise self.err("a shift amount must be unsigned", e.right)
        elif b.const is not None and int(b.const) < 0:  # type: ignore[call-overload]
            raise self.err("a shift amount must not be negative", e.right)
        if a.type == T.INT:
            if b.const is None:
                raise self.err("cannot shift an arbitrary-precision value by a run-time amount", e)
            py = "<<" if e.op == "<<" else ">>"
            return self.fold(f"({a.code} {py} {b.code})", T.INT, a, b)
        t = self.bits(a, e.left)
        w, m = t.width, t.mask
        if e.op == "<<":
            if b.const is not None:
                if int(b.const) >= w:  # type: ignore[call-overload]
                    return Val("0", t, 0)
                return self.fold(f"(({a.code} << {b.code}) & {m})", t, a, b)
            return Val(f"((({a.code} << {b.code}) & {m}) if {b.code} < {w} else 0)", t)
        if t.signed:
            return self.fold(f"((_s({a.code}, {w}) >> min({b.code}, {w})) & {m})", t, a, b)
        return self.fold(f"({a.code} >> {b.code})", t, a, b)

    def cast(self, to: T.Type, v: Val, node: Any) -> Val:
        src = v.type
        if src == to:
            return v
        if isinstance(to, T.Bits):
            if src == T.INT:
                if v.const is None:
                    raise self.err("cannot cast a run-time arbitrary-precision value", node)
                value = int(v.const) & to.mask  # type: ignore[call-overload]
                return Val(literal(value), to, value)
            if src == T.BOOL:
                return self.fold(f"int({v.code})", to, v)
            if isinstance(src, T.Enum) and src.underlying is not None:
                return self.cast(to, Val(v.code, src.underlying, v.const), node)
            if isinstance(src, T.Bits):
                if src.signed and to.width > src.width:
                    return self.fold(f"(_s({v.code}, {src.width}) & {to.mask})", to, v)
                if to.width < src.width:
                    return self.fold(f"({v.code} & {to.mask})", to, v)
                return Val(v.code, to, v.const)
        if to == T.BOOL and isinstance(src, T.Bits) and src.width == 1:
            return self.fold(f"({v.code} == 1)", T.BOOL, v)
        if to == T.BOOL and src == T.INT and v.const in (0, 1):
            return Val(literal(bool(v.const)), T.BOOL, bool(v.const))
        if isinstance(to, T.Enum) and to.underlying is not None:
            inner = self.cast(to.underlying, v, node)
            return Val(inner.code, to, inner.const)
        if to == T.INT and isinstance(src, T.Bits) and v.const is not None:
            return Val(v.code, T.INT, v.const)
        raise self.err(f"cannot cast {src} to {to}", node)
