"""The parser (states as labels, extract, select, lookahead) and the deparser (emit)."""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend import types as T
from ._clayout import Fn, bytes_expr, mask
from ._ctables import CTables


class CParser(CTables):
    def parser(self, d: A.ParserDecl, fn: Fn) -> None:
        for loc in d.locals or ():
            if not isinstance(loc, A.VarDecl):
                raise self.unsupported(f"parser-local {type(loc).__name__}", loc)
            t = self.resolve(loc.type, loc)
            w = self.width(t, loc)
            cname = f"pv_{fn.blk.cname}_{loc.name}"
            init = self.expr(loc.init, fn, w)[0] if loc.init is not None else "0"
            fn(f"__u64 {cname} = ({init}) & {mask(w)};")
            fn.vars[loc.name] = (cname, t)
        names = {s.name for s in d.states}
        lab = f"p_{fn.blk.cname}_"
        fn("goto " + lab + "start;")
        for st in d.states:
            fn.indent = 0
            fn(f"{lab}{st.name}:")
            fn.indent = 1
            fn("{")
            fn.indent = 2
            for s in st.stmts:
                self.stmt(s, fn)
            if st.select is None:
                fn(f"goto {self.state_label(st.next, names, lab, st)};")
            else:
                sels: list[tuple[str, int | None]] = []
                for n, ex in enumerate(st.select):
                    code, sw = self.expr(ex, fn)
                    fn(f"__u64 sel{n} = {code};")
                    sels.append((f"sel{n}", sw))
                for case in st.cases:
                    target = self.state_label(case.state, names, lab, case)
                    ks = case.keyset
                    if isinstance(ks, A.Default):
                        fn(f"goto {target};")
                        break
                    items = ks.items if isinstance(ks, A.ListExpr) else (ks,)
                    if len(items) != len(sels):
                        raise self.unsupported(
                            f"a keyset of {len(items)} values for {len(sels)} expressions", case
                        )
                    conds = [
                        self.keyset_cond(it, var, w, fn) for it, (var, w) in zip(items, sels, strict=True)
                    ]
                    fn(f"if ({' && '.join(c for c in conds if c) or '1'}) goto {target};")
                else:
                    fn(f"goto {lab}reject_nomatch;")
            fn.indent = 1
            fn("}")
        fn.indent = 0
        fn(f"{lab}reject_nomatch:")
        fn.indent = 1
        fn(f"c->SM.f_parser_error = {self.error_code('NoMatch', d)};")
        fn.indent = 0
        fn(f"{lab}reject:")
        fn(f"{lab}accept:")
        fn.indent = 1
        fn("outoff = 0;")

    def keyset_cond(self, ks: A.Expr, var: str, w: int | None, fn: Fn) -> str:
        """The C condition for one select key against one keyset element ('' for ``_``)."""
        if isinstance(ks, A.Default):
            return ""
        if isinstance(ks, A.Mask):
            v, _ = self.expr(ks.value, fn, w)
            m, _ = self.expr(ks.mask, fn, w)
            return f"(({var} & {m}) == ({v} & {m}))"
        if isinstance(ks, A.Range):
            lo, _ = self.expr(ks.lo, fn, w)
            hi, _ = self.expr(ks.hi, fn, w)
            return f"({lo} <= {var} && {var} <= {hi})"
        v, _ = self.expr(ks, fn, w)
        return f"({var} == {v})"

    def state_label(self, name: str, names: set[str], lab: str, node: object) -> str:
        if name in ("accept", "reject"):
            return lab + name
        if name not in names:
            raise self.unsupported(f"transition to unknown state {name}", node)
        return lab + name

    def header_layout(self, t: T.Struct, node: object) -> list[tuple[str, int, int]]:
        out: list[tuple[str, int, int]] = []
        o = 0
        for n, ft in t.fields:
            w = self.width(ft, node)
            out.append((n, o, w))
            o += w
        if o % 8:
            raise self.unsupported(f"header {t.name} of {o} bits", node)
        return out

    def extract(self, arg: A.Expr, fn: Fn, node: object) -> None:
        stack = None
        if isinstance(arg, A.Member) and arg.name == "next":
            base, bt = self.lvalue(arg.expr, fn)
            if isinstance(bt, T.Stack):
                stack = (base, bt)
                fn(f"if ({base}__n >= {bt.size}) {{")
                fn(f"    c->SM.f_parser_error = {self.error_code('StackOutOfBounds', node)};")
                fn(f"    goto p_{fn.blk.cname}_reject;")
                fn("}")
        code, t = self.lvalue(arg, fn)
        if not isinstance(t, T.Struct) or not t.is_header:
            raise self.unsupported("extract into something that is not a header", node)
        lay = self.header_layout(t, node)
        n = sum(w for _, _, w in lay) // 8
        if n > 64:
            raise self.unsupported(f"header {t.name} longer than 64 bytes", node)
        lab = f"p_{fn.blk.cname}_reject"
        fn(f"if (bpf_skb_load_bytes(skb, off, b, {n}) < 0) {{")
        fn(f"    c->SM.f_parser_error = {self.error_code('PacketTooShort', node)};")
        fn(f"    goto {lab};")
        fn("}")
        for name, o, w in lay:
            first, last = o // 8, (o + w - 1) // 8
            nb = last - first + 1
            if nb > 8:
                raise self.unsupported(f"field {name}: a {w}-bit field that is not byte aligned", node)
            shift = 8 * nb - (o % 8) - w
            v = bytes_expr("b", first, nb)
            v = f"({v} >> {shift})" if shift else v
            fn(f"{code}.f_{name} = {v} & {mask(w)};")
        fn(f"{code}._v = 1;")
        fn(f"off += {n};")
        if stack is not None:
            fn(f"{stack[0]}__n += 1;")

    def deparser(self, d: A.ControlDecl, fn: Fn) -> None:
        """The valid emitted headers replace the bytes the parser took (``off``): the packet
        grows or shrinks at its head first (``resize``), then the headers are written from 0."""
        assert d.body is not None
        emits: list[tuple[str, T.Struct]] = []
        for s in d.body.stmts:
            call = s.call if isinstance(s, A.CallStmt) else None
            if (
                call is None
                or not isinstance(call.func, A.Member)
                or call.func.name != "emit"
                or len(call.args) != 1
            ):
                raise self.unsupported("a deparser statement other than packet.emit(header)", s)
            code, t = self.lvalue(call.args[0], fn)
            if isinstance(t, T.Stack):
                emits += [(f"{code}[{i}]", t.elem) for i in range(t.size)]
                continue
            if not isinstance(t, T.Struct):
                raise self.unsupported("emit of something that is not a header", s)
            emits += self.headers_in(code, t, s)
        fn("{")
        fn("    __u32 hlen = 0;")
        for code, t in emits:
            fn(f"    if ({code}._v) hlen += {self.header_bytes(t, d)};")
        fn("    if (resize(skb, off, hlen) < 0)")
        fn("        goto drop;")
        fn("}")
        fn("outoff = 0;")
        for code, t in emits:
            self.emit_header(code, t, d, fn)

    def header_bytes(self, t: T.Struct, node: object) -> int:
        return sum(w for _, _, w in self.header_layout(t, node)) // 8

    def headers_in(self, code: str, t: T.Struct, node: object) -> list[tuple[str, T.Struct]]:
        """A header, or the headers of a struct in field order (what ``emit`` of it emits)."""
        if t.is_header:
            return [(code, t)]
        out: list[tuple[str, T.Struct]] = []
        for n, ft in t.fields:
            if isinstance(ft, T.Stack):
                raise self.unsupported(f"emit of a struct holding a header stack ({n})", node)
            if not isinstance(ft, T.Struct):
                raise self.unsupported(f"emit of a struct with a non-header field {n}", node)
            out += self.headers_in(f"{code}.f_{n}", ft, node)
        return out

    def emit_header(self, code: str, t: T.Struct, s: object, fn: Fn) -> None:
        lay = self.header_layout(t, s)
        n = sum(w for _, _, w in lay) // 8
        fn(f"if ({code}._v) {{")
        for i in range(n):
            parts = []
            for name, o, w in lay:
                lo, hi = max(o, 8 * i), min(o + w, 8 * i + 8)
                if lo >= hi:
                    continue
                chunk = f"(({code}.f_{name} >> {o + w - hi}) & {mask(hi - lo)})"
                sh = 8 * i + 8 - hi
                parts.append(f"({chunk} << {sh})" if sh else chunk)
            fn(f"    b[{i}] = (__u8)({' | '.join(parts)});")
        fn(f"    if (bpf_skb_store_bytes(skb, outoff, b, {n}, 0) < 0)")
        fn("        goto drop;")
        fn(f"    outoff += {n};")
        fn("}")
