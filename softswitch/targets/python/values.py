"""Lvalues and data lists (the field lists of hash, checksum and digest calls).

Below :mod:`.stmts` and :mod:`.externs`, which both use them.
"""

from __future__ import annotations

from typing import Any

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from .context import UNSUPPORTED, Compiler, FnCtx, fattr
from .exprs import ExprGen
from .scope import Val

_HASH_ALGOS = ("crc32", "crc32_custom", "crc16", "crc16_custom", "random", "identity", "csum16", "xor16")


class ValueCompiler(Compiler):
    def check_lvalue(self, e: A.Expr, ctx: FnCtx) -> None:
        root = e
        while isinstance(root, A.Member | A.Index | A.Slice):
            root = root.expr
        if isinstance(root, A.Name):
            sym = ctx.scope.lookup(root.name)
            if sym is not None and sym.kind == "var":
                return
        raise self.err("cannot assign to this expression", getattr(e, "pos", A.NOPOS))

    def invalidate_siblings(self, e: A.Expr, ctx: FnCtx, eg: ExprGen) -> None:
        """Making one member of a header union valid makes the others invalid."""
        if isinstance(e, A.Member):
            parent = eg.expr(e.expr)
            if isinstance(parent.type, T.Struct) and parent.type.kind == "header_union":
                for n, _ in parent.type.fields:
                    if n != e.name:
                        ctx.em(f"{parent.code}.{fattr(n)}._v = False")

    # ------------------------------------------------------------ data lists (hash, checksum, digest)
    def flatten(self, e: A.Expr, eg: ExprGen) -> list[tuple[str, T.Type]]:
        if isinstance(e, A.ListExpr):
            out: list[tuple[str, T.Type]] = []
            for item in e.items:
                out += self.flatten(item, eg)
            return out
        v = eg.expr(e)
        return self.flatten_val(v, e)

    def flatten_val(self, v: Val, node: Any) -> list[tuple[str, T.Type]]:
        t = v.type
        if isinstance(t, T.Struct):
            out: list[tuple[str, T.Type]] = []
            for n, ft in t.fields:
                out += self.flatten_val(Val(f"{v.code}.{fattr(n)}", ft), node)
            return out
        if t == T.BOOL:
            return [(f"int({v.code})", T.Bits(1))]
        if isinstance(t, T.Bits | T.Varbit):
            return [(v.code, t)]
        if isinstance(t, T.Enum) and t.underlying is not None:
            return [(v.code, t.underlying)]
        if t == T.INT:
            raise self.err("a value in a field list needs a width (cast it)", node.pos)
        raise self.err(UNSUPPORTED + f"{t} in a field list", node.pos)

    def concat(self, fields: list[tuple[str, T.Type]]) -> tuple[str, str]:
        """Python code for (integer, number of bits) of the concatenated fields."""
        if all(isinstance(t, T.Bits) for _, t in fields):
            total = sum(T.bit_width(t) for _, t in fields)
            parts: list[str] = []
            shift = total
            for code, t in fields:
                shift -= T.bit_width(t)
                parts.append(f"({code} << {shift})" if shift else code)
            return "(" + (" | ".join(parts) or "0") + ")", str(total)
        pairs = ", ".join(
            f"({code}, {code.rsplit('.', 1)[0]}.{code.rsplit('.', 1)[1]}__w)"
            if isinstance(t, T.Varbit)
            else f"({code}, {T.bit_width(t)})"
            for code, t in fields
        )
        tmp = f"_cat(({pairs},))"
        return f"{tmp}[0]", f"{tmp}[1]"

    def digest_info(self, t: T.Type, node: Any) -> ir.DigestInfo:
        if not isinstance(t, T.Struct):
            raise self.err("digest data must be a struct", node.pos)
        d = self.info.digests.get(t.name)
        if d is None:
            d = ir.DigestInfo(t.name, [(n, T.bit_width(ft)) for n, ft in t.fields])
            self.info.digests[t.name] = d
        return d

    def hash_algo(self, e: A.Expr, eg: ExprGen) -> str:
        v = eg.expr(e)
        if not isinstance(v.type, T.Enum) or v.type.name != "HashAlgorithm" or v.const is None:
            raise self.err("expected a HashAlgorithm member", e.pos)
        name = v.type.members[int(v.const)]  # type: ignore[call-overload]
        if name not in _HASH_ALGOS:
            raise self.err(UNSUPPORTED + f"hash algorithm {name}", e.pos)
        return name
