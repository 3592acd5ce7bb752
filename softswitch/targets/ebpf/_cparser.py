"""The parser (a state machine stepped by bpf_loop: extract, select, lookahead) and the deparser
(emit, growing or shrinking the packet's head)."""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend import types as T
from ._clayout import Blk, Fn, bytes_expr, mask
from ._ctables import CTables


class CParser(CTables):
    def parser(self, d: A.ParserDecl, fn: Fn) -> None:
        """The parser as a state machine that bpf_loop steps: the verifier checks the step
        function once, so parser loops (header stacks, option walks) need no bound it can prove
        from the program.  One call runs states along forward edges (a ``goto`` to a state
        later in reverse postorder from ``start``) and returns to bpf_loop only on a back edge,
        so the verifier still sees no loop and a packet takes one call per loop iteration, not
        one per state (a call costs as much as a small state: a TCP segment with timestamps
        walks some thirty states).  State 0 sets the parser-local variables (fields of the
        step's struct), then ``start``; a parse that takes more than PARSER_STEPS calls ends
        with ParserTimeout."""
        cn = fn.blk.cname
        names = [s.name for s in d.states]
        ids = {n: i + 1 for i, n in enumerate(names)}
        ids["accept"], ids["reject"] = len(names) + 1, len(names) + 2
        self.parser_order = self.reverse_postorder(d)
        step = Fn([], fn.blk, fn.vars, indent=2)
        step.reject = f"{{ c->poff = off; ps->state = {ids['reject']}; return 1; }}"
        fields: list[str] = []
        step.indent = 1
        step("case 0: {")
        step.indent = 2
        for loc in d.locals or ():
            if not isinstance(loc, A.VarDecl):
                raise self.unsupported(f"parser-local {type(loc).__name__}", loc)
            t = self.resolve(loc.type, loc)
            w = self.width(t, loc)
            fields.append(f"__u64 pv_{loc.name};")
            init = self.expr(loc.init, step, w)[0] if loc.init is not None else "0"
            step(f"ps->pv_{loc.name} = ({init}) & {mask(w)};")
            fn.vars[loc.name] = (f"ps->pv_{loc.name}", t)
        step(self.goto("start", ids, d, ""))
        step.indent = 1
        step("}")
        for st in d.states:
            step.indent = 1
            step(f"case {ids[st.name]}: st_{ids[st.name]}: {{  /* {st.name} */")
            step.indent = 2
            for s in st.stmts:
                self.stmt(s, step)
            if st.select is None:
                step(self.goto(st.next, ids, st, st.name))
            else:
                sels: list[tuple[str, int | None]] = []
                for n, ex in enumerate(st.select):
                    code, sw = self.expr(ex, step)
                    step(f"__u64 sel{n} = {code};")
                    sels.append((f"sel{n}", sw))
                for case in st.cases:
                    target = self.goto(case.state, ids, case, st.name)
                    ks = case.keyset
                    if isinstance(ks, A.Default):
                        step(target)
                        break
                    items = ks.items if isinstance(ks, A.ListExpr) else (ks,)
                    if len(items) != len(sels):
                        raise self.unsupported(
                            f"a keyset of {len(items)} values for {len(sels)} expressions", case
                        )
                    conds = [
                        self.keyset_cond(it, var, w, step) for it, (var, w) in zip(items, sels, strict=True)
                    ]
                    step(f"if ({' && '.join(c for c in conds if c) or '1'}) {target}")
                else:
                    step(f"c->SM.f_parser_error = {self.error_code('NoMatch', d)};")
                    step(step.reject)
            step.indent = 1
            step("}")
        self.fns += [
            f"struct pstate_{cn} {{ struct __sk_buff *skb; struct ctx *c; __u32 state;"
            f" {' '.join(fields)} }};",
            f"static long pstep_{cn}(__u32 i, void *p) {{",
            f"    struct pstate_{cn} *ps = p;",
            "    struct __sk_buff *skb = ps->skb;",
            "    struct ctx *c = ps->c;",
            "    __u32 off = c->poff;",
            "    __u8 b[64];",
            "    switch (ps->state) {",
            *step.lines,
            "    }",
            "    return 1;",
            "}",
            "",
        ]
        self.parser_run = (cn, ids["accept"], ids["reject"], self.error_code("ParserTimeout", d))

    def run_parser(self, fn: Fn, cvar: str, offvar: str, tag: str) -> None:
        """Parse the packet into the state ``cvar`` points to; ``offvar`` = the bytes taken."""
        cn, accept, reject, timeout = self.parser_run
        ps = f"ps{tag}_{cn}"
        fn(f"struct pstate_{cn} {ps} = {{}};")
        fn(f"{ps}.skb = skb;")
        fn(f"{ps}.c = {cvar};")
        fn(f"bpf_loop(PARSER_STEPS, pstep_{cn}, &{ps}, 0);")
        fn(f"if ({ps}.state != {accept} && {ps}.state != {reject})")
        fn(f"    {cvar}->SM.f_parser_error = {timeout};")
        fn(f"{offvar} = {cvar}->poff;")

    def goto(self, name: str, ids: dict[str, int], node: object, here: str) -> str:
        """The C statement of a transition from state ``here`` ("": the initial step): a jump
        within the call when the next state comes later in reverse postorder, else the next
        state and whether bpf_loop goes on (0) or stops (1, at accept and reject)."""
        if name not in ids:
            raise self.unsupported(f"transition to unknown state {name}", node)
        order = self.parser_order
        if name in order and (here == "" or order[name] > order.get(here, len(order))):
            return f"goto st_{ids[name]};"
        stop = int(name in ("accept", "reject"))
        return f"{{ c->poff = off; ps->state = {ids[name]}; return {stop}; }}"

    @staticmethod
    def reverse_postorder(d: A.ParserDecl) -> dict[str, int]:
        """Each state reachable from ``start`` and its place in reverse postorder: every edge
        goes to a later place except the back edges of loops."""
        succ: dict[str, list[str]] = {}
        for st in d.states:
            nxt = [st.next] if st.select is None else [c.state for c in st.cases]
            succ[st.name] = [n for n in nxt if n not in ("accept", "reject")]
        post: list[str] = []
        seen = {"start"}
        stack = [("start", iter(succ.get("start", ())))]
        while stack:
            name, it = stack[-1]
            for n in it:
                if n not in seen and n in succ:
                    seen.add(n)
                    stack.append((n, iter(succ[n])))
                    break
            else:
                stack.pop()
                post.append(name)
        return {name: i for i, name in enumerate(reversed(post))}

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
                fn(f"    {self.reject(fn, node)}")
                fn("}")
        code, t = self.lvalue(arg, fn)
        if not isinstance(t, T.Struct) or not t.is_header:
            raise self.unsupported("extract into something that is not a header", node)
        lay = self.header_layout(t, node)
        n = sum(w for _, _, w in lay) // 8
        if n > 64:
            raise self.unsupported(f"header {t.name} longer than 64 bytes", node)
        fn(f"if (pkt_load(skb, off, b, {n}) < 0) {{")
        fn(f"    c->SM.f_parser_error = {self.error_code('PacketTooShort', node)};")
        fn(f"    {self.reject(fn, node)}")
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
        order = [code for code, _ in emits]
        for ck in self.payload_csums:
            if ck.header not in order:
                raise self.unsupported(f"a checksum into {ck.target}, a header the deparser does not emit", d)
            at = order.index(ck.header)
            if ck.l4:  # the pseudo-header part: fields of headers emitted before the checksum's
                ck.segment = [not any(code.startswith(h + ".") for h in order[:at]) for code, _ in ck.fields]
            else:  # ... and metadata and constants (the pseudo header's length, protocol)
                ck.segment = [any(code.startswith(h + ".") for h in order[at:]) for code, _ in ck.fields]
        fn("hlen = 0;")
        for code, t in emits:
            fn(f"if ({code}._v) hlen += {self.header_bytes(t, d)};")
        fn("if (resize(skb, off, hlen, macl) < 0)")
        fn("    goto broken;")
        fn("outoff = 0;")
        for code, t in emits:
            self.emit_header(code, t, d, fn)
        for i, ck in enumerate(self.payload_csums):
            # the segment part (this header and what follows it) without BPF_F_PSEUDO_HDR: with
            # checksum offload (CHECKSUM_PARTIAL) the device sums the segment itself, and the
            # helper leaves the field alone
            fn(f"if ((c->ckd & ckat) & (1U << {i})) {{")
            parts = (
                ((" | BPF_F_PSEUDO_HDR", False),) if ck.l4 else ((" | BPF_F_PSEUDO_HDR", False), ("", True))
            )
            for part, (flag, seg) in enumerate(parts):
                kept = [
                    (code if is_seg == seg else "0", w)
                    for (code, w), is_seg in zip(ck.fields, ck.segment, strict=True)
                ]
                self.csum16_into(f"n{part}", kept, fn)
                old = f"c->cko[{i}][{part}]"
                fn(f"    if (n{part} != {old} &&")
                # the helper takes the 16-bit words as they are in the packet (big-endian)
                fn(f"        bpf_l4_csum_replace(skb, ckoff[{i}], bpf_htons({old}),")
                fn(f"                            bpf_htons(n{part}), 2{flag}) < 0)")
                fn("        goto broken;")
            if ck.l4:
                # the program's value, unless checksum offload is on: replacing it by what the
                # field holds now turns ~(~cur + ~v + cur) into v; with CHECKSUM_PARTIAL the
                # helper leaves the field alone (the pseudo-header part above was all it needed)
                fn("    __u16 cur;")
                fn(f"    if (bpf_skb_load_bytes(skb, ckoff[{i}], &cur, 2) < 0 ||")
                fn(f"        bpf_l4_csum_replace(skb, ckoff[{i}], bpf_htons(c->ckv[{i}]), cur, 2) < 0)")
                fn("        goto broken;")
            fn("}")

    def snapshot(self) -> list[str]:
        """``ck_snapshot``: the parsed values' sums of every update_checksum_with_payload list."""
        fn = Fn([], Blk("", {}))
        for i, ck in enumerate(self.payload_csums):
            for part, seg in enumerate((False, True)):
                kept = [
                    (code if is_seg == seg else "0", w)
                    for (code, w), is_seg in zip(ck.fields, ck.segment, strict=True)
                ]
                fn("{")
                self.csum16_into("s", kept, fn)
                fn(f"    c->cko[{i}][{part}] = s;")
                fn("}")
        return ["static __always_inline void ck_snapshot(struct ctx *c) {", *fn.lines, "}", ""]

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
        for k, ck in enumerate(self.payload_csums):
            if ck.header == code:
                o = next(o for name, o, _ in lay if name == ck.field_name)
                if o % 8:
                    raise self.unsupported(f"a checksum field {ck.target} that is not byte aligned", s)
                fn(f"    ckoff[{k}] = outoff + {o // 8};")
                fn(f"    ckat |= 1U << {k};")
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
        fn("        goto broken;")
        fn(f"    outoff += {n};")
        fn("}")
