"""Statements, calls, checksums, hash, counters, registers and actions."""

from __future__ import annotations

from abc import abstractmethod

from ...frontend import ast as A
from ...frontend import types as T
from ._cexprs import CExprs
from ._clayout import MAX_PAYLOAD_CSUMS, MAX_WIDTH, Blk, ExternLayout, Fn, PayloadCsum, c_ident, mask


class CStmts(CExprs):
    def block(self, b: A.Block, fn: Fn) -> None:
        for s in b.stmts:
            self.stmt(s, fn)

    def stmt(self, s: A.Stmt, fn: Fn) -> None:
        if isinstance(s, A.Block):
            fn("{")
            fn.indent += 1
            self.block(s, fn)
            fn.indent -= 1
            fn("}")
        elif isinstance(s, A.Empty):
            pass
        elif isinstance(s, A.Assign) and isinstance(s.lhs, A.Slice):
            sl = s.lhs
            if not (isinstance(sl.hi, A.IntLit) and isinstance(sl.lo, A.IntLit)):
                raise self.unsupported("a slice with bounds that are not literals", s)
            base, _ = self.lvalue(sl.expr, fn)
            w = sl.hi.value - sl.lo.value + 1
            rhs, _ = self.expr(s.rhs, fn, w)
            m = (1 << w) - 1
            fn(
                f"{base} = ({base} & ~(0x{m:x}ULL << {sl.lo.value}))"
                f" | ((({rhs}) & 0x{m:x}ULL) << {sl.lo.value});"
            )
        elif isinstance(s, A.Assign):
            lhs, t = self.lvalue(s.lhs, fn)
            if isinstance(t, T.Struct):
                rt = self.lvalue(s.rhs, fn) if isinstance(s.rhs, A.Name | A.Member) else None
                if rt is None or rt[1] != t:
                    raise self.unsupported(
                        "assignment of a struct or header from anything but one of its type", s
                    )
                fn(f"{lhs} = {rt[0]};")
                return
            w = self.width(t, s)
            rhs, _ = self.expr(s.rhs, fn, w)
            fn(f"{lhs} = ({rhs}) & {mask(w)};")
        elif isinstance(s, A.If):
            cond, _ = self.expr(s.cond, fn)
            fn(f"if ({cond}) {{")
            fn.indent += 1
            self.stmt(s.then, fn)
            fn.indent -= 1
            if s.other is not None:
                fn("} else {")
                fn.indent += 1
                self.stmt(s.other, fn)
                fn.indent -= 1
            fn("}")
        elif isinstance(s, A.VarDecl) and isinstance(self.resolve(s.type, s), T.Struct):
            st = self.resolve(s.type, s)
            assert isinstance(st, T.Struct)
            self.c_struct(st, self.done_structs, s)
            cname = f"v_{s.name}_{len(fn.lines)}"
            fn(f"struct s_{c_ident(st.name)} {cname} = {{}};")
            fn.vars[s.name] = (cname, st)
            if s.init is not None:
                self.stmt(A.Assign(A.Name(s.name, s.pos), s.init, s.pos), fn)
        elif isinstance(s, A.VarDecl):
            t = self.resolve(s.type, s)
            w = self.width(t, s)
            cname = f"v_{s.name}_{len(fn.lines)}"
            init = self.expr(s.init, fn, w)[0] if s.init is not None else "0"
            fn(f"__u64 {cname} = ({init}) & {mask(w)};")
            fn.vars[s.name] = (cname, t)
        elif isinstance(s, A.Exit):
            if not fn.exit_label:
                raise self.unsupported("exit inside an action or a parser", s)
            fn(f"goto {fn.exit_label};")
        elif isinstance(s, A.Switch):
            self.switch_on_action(s, fn)
        elif isinstance(s, A.CallStmt):
            value = self.call(s.call, fn)
            if value is not None:
                fn(f"{value};")
        else:
            raise self.unsupported(f"statement {type(s).__name__}", s)

    def call(self, call: A.Call, fn: Fn) -> str | None:
        f = call.func
        if isinstance(f, A.Member):
            if (
                f.name == "extract"
                and isinstance(f.expr, A.Name)
                and fn.blk.params.get(f.expr.name, ("x",))[0] == ""
            ):
                if len(call.args) != 1:
                    raise self.unsupported("extract with a length argument", call)
                self.extract(call.args[0], fn, call)
                return None
            if f.name == "apply" and isinstance(f.expr, A.Name) and f.expr.name in fn.blk.tables:
                return self.apply_table(fn.blk.tables[f.expr.name], fn) + "(c)"
            if isinstance(f.expr, A.Name) and f.expr.name in fn.blk.externs:
                self.extern_method(fn.blk.externs[f.expr.name], f.name, call, fn)
                return None
            if f.name in ("setValid", "setInvalid") and not call.args:
                code, t = self.lvalue(f.expr, fn)
                if not isinstance(t, T.Struct) or not t.is_header:
                    raise self.unsupported(f"{f.name}() of something that is not a header", call)
                fn(f"{code}._v = {int(f.name == 'setValid')};")
                return None
            raise self.unsupported(f"method {f.name}()", call)
        if isinstance(f, A.Name):
            if f.name in fn.blk.actions:
                a = fn.blk.actions[f.name]
                name = self.action(a, fn.blk)
                args = [
                    self.expr(x, fn, self.width(self.resolve(p.type, p), p))[0]
                    for x, p in zip(call.args, [p for p in a.params if not p.direction], strict=True)
                ]
                fn(f"{name}({', '.join(['c', *args])});")
                return None
            if f.name == "mark_to_drop":
                fn("c->SM.f_egress_spec = 511;")
                return None
            if f.name == "hash":
                self.hash(call, fn)
                return None
            if f.name == "log_msg":
                return None  # nothing to log to from the TC hook; the packet is unaffected
            if f.name in ("assert", "assume") and len(call.args) == 1:
                cond, _ = self.expr(call.args[0], fn)
                fn(f"if (!({cond}))")
                fn("    goto drop;  /* bmv2 stops the switch; the kernel drops the packet */")
                return None
            if f.name in ("clone", "clone_preserving_field_list"):
                self.clone(f.name, call, fn)
                return None
            if f.name == "truncate" and len(call.args) == 1:
                n, _ = self.expr(call.args[0], fn, 32)
                fn(f"c->truncate = (__u32)({n});")
                return None
            if f.name == "verify" and len(call.args) == 2:
                cond, _ = self.expr(call.args[0], fn)
                err = call.args[1]
                if not (isinstance(err, A.TypeMember) and err.type_name == "error"):
                    raise self.unsupported("verify with an error that is not a constant", call)
                fn(f"if (!({cond})) {{")
                fn(f"    c->SM.f_parser_error = {self.error_code(err.member, call)};")
                fn(f"    {self.reject(fn, call)}")
                fn("}")
                return None
            if f.name == "update_checksum_with_payload":
                self.checksum_with_payload(call, fn)
                return None
            if f.name in ("update_checksum", "verify_checksum"):
                self.checksum(f.name, call, fn)
                return None
            if f.name == "NoAction":
                return None
        raise self.unsupported(f"call of {getattr(f, 'name', f)}", call)

    def checksum(self, which: str, call: A.Call, fn: Fn) -> None:
        if len(call.args) != 4:
            raise self.unsupported(f"{which} with {len(call.args)} arguments", call)
        algo = call.args[3]
        if not (isinstance(algo, A.TypeMember) and algo.member == "csum16"):
            raise self.unsupported(f"{which} with an algorithm other than csum16", call)
        items = call.args[1].items if isinstance(call.args[1], A.ListExpr) else (call.args[1],)
        fields: list[tuple[str, int]] = []
        for it in items:
            code, t = self.lvalue(it, fn)
            fields.append((code, self.width(t, it)))
        total = sum(w for _, w in fields)
        if total % 8:
            raise self.unsupported(f"a checksum over {total} bits (not whole bytes)", call)
        cond, _ = self.expr(call.args[0], fn)
        target, tt = self.lvalue(call.args[2], fn)
        if self.width(tt, call) != 16:
            raise self.unsupported("a csum16 into a field that is not 16 bits", call)
        fn(f"if ({cond}) {{")
        self.csum16_into("s", fields, fn)
        if which == "update_checksum" and self.is_l4(fields, target):
            # the deparser applies it (see PayloadCsum), so offloaded packets come out right
            header, name = target.rsplit(".f_", 1)
            i = self.add_csum(PayloadCsum(fields, target, header, name, l4=True), call)
            fn(f"    c->ckv[{i}] = (~s) & 0xffff;")
            fn(f"    c->ckd |= 1U << {i};")
        elif which == "update_checksum":
            fn(f"    {target} = (~s) & 0xffff;")
        else:
            fn(f"    if (((~s) & 0xffff) != {target})")
            fn("        c->SM.f_checksum_error = 1;")
        fn("}")

    def checksum_with_payload(self, call: A.Call, fn: Fn) -> None:
        """``update_checksum_with_payload``: never a sum over the payload.  The parser's values of
        the list are summed after parsing (``ck_snapshot``), the deparser sums the new ones and
        hands the difference to bpf_l4_csum_replace, the pseudo-header part with
        BPF_F_PSEUDO_HDR: right for checksum-offloaded (CHECKSUM_PARTIAL) and GSO packets too,
        and equal to a full recomputation when the packet's checksum was right."""
        if len(call.args) != 4:
            raise self.unsupported(f"update_checksum_with_payload with {len(call.args)} arguments", call)
        algo = call.args[3]
        if not (isinstance(algo, A.TypeMember) and algo.member == "csum16"):
            raise self.unsupported("update_checksum_with_payload with an algorithm other than csum16", call)
        if self.kind != "compute":
            raise self.unsupported("update_checksum_with_payload outside the compute-checksum control", call)
        fields = self.data_list(call.args[1], fn)
        if sum(w for _, w in fields) % 16:
            raise self.unsupported("a checksum list that is not whole 16-bit words", call)
        target, tt = self.lvalue(call.args[2], fn)
        if self.width(tt, call) != 16 or ".f_" not in target:
            raise self.unsupported("a csum16 into something that is not a 16-bit header field", call)
        header, field = target.rsplit(".f_", 1)
        i = self.add_csum(PayloadCsum(fields, target, header, field), call)
        cond, _ = self.expr(call.args[0], fn)
        fn(f"if ({cond})")
        fn(f"    c->ckd |= 1U << {i};")

    def add_csum(self, ck: PayloadCsum, call: A.Call) -> int:
        i = len(self.payload_csums)
        if i >= MAX_PAYLOAD_CSUMS:
            raise self.unsupported(f"more than {MAX_PAYLOAD_CSUMS} checksums of TCP/UDP kind", call)
        self.payload_csums.append(ck)
        return i

    def is_l4(self, fields: list[tuple[str, int]], target: str) -> bool:
        """An ``update_checksum`` into a header field with fields of other headers in its list:
        a TCP/UDP checksum (pseudo header) that the program fixes up itself."""
        if self.kind != "compute" or ".f_" not in target:
            return False
        header = target.rsplit(".f_", 1)[0]
        return any(code.startswith("c->H.") and not code.startswith(header + ".") for code, _ in fields)

    @staticmethod
    def csum16_into(var: str, fields: list[tuple[str, int]], fn: Fn) -> None:
        """Declare ``var``: the folded one's-complement sum (not inverted) of the fields' 16-bit words."""
        terms: list[str] = []
        o = 0
        for code, w in fields:
            k = o // 16
            while k * 16 < o + w:
                lo, hi = max(o, 16 * k), min(o + w, 16 * k + 16)
                chunk = f"(({code} >> {o + w - hi}) & {mask(hi - lo)})"
                sh = 16 * k + 16 - hi
                terms.append(f"({chunk} << {sh})" if sh else chunk)
                k += 1
            o += w
        fn(f"    __u64 {var} = {' + '.join(terms) or '0'};")
        for _ in range(4):
            fn(f"    {var} = ({var} & 0xffff) + ({var} >> 16);")

    def data_list(self, e: A.Expr, fn: Fn) -> list[tuple[str, int]]:
        items = e.items if isinstance(e, A.ListExpr) else (e,)
        out: list[tuple[str, int]] = []
        for it in items:
            code, w = self.expr(it, fn)
            if w is None:
                raise self.unsupported("a value without a width in a field list", it)
            out.append((code, w))
        return out

    def hash(self, call: A.Call, fn: Fn) -> None:
        """hash(out, algo, base, data, max): identity and csum16 (out = base + h % max, or base)."""
        if len(call.args) != 5:
            raise self.unsupported(f"hash with {len(call.args)} arguments", call)
        algo = call.args[1]
        name = algo.member if isinstance(algo, A.TypeMember) else "?"
        if name not in ("identity", "csum16"):
            raise self.unsupported(f"hash algorithm {name}", call)
        target, tt = self.lvalue(call.args[0], fn)
        w = self.width(tt, call)
        base, _ = self.expr(call.args[2], fn, w)
        fields = self.data_list(call.args[3], fn)
        total = sum(fw for _, fw in fields)
        if total % 8 or (name == "identity" and total > MAX_WIDTH):
            raise self.unsupported(f"a {name} hash over {total} bits", call)
        mx, _ = self.expr(call.args[4], fn)
        fn("{")
        if name == "csum16":
            self.csum16_into("h", fields, fn)
            fn("    h = (~h) & 0xffff;")
        else:
            parts, o = [], total
            for code, fw in fields:
                o -= fw
                parts.append(f"(({code} & {mask(fw)}) << {o})" if o else f"({code} & {mask(fw)})")
            fn(f"    __u64 h = {' | '.join(parts) or '0'};")
        fn(f"    __u64 m = {mx};")
        fn(f"    {target} = (m ? ({base}) + h % m : ({base})) & {mask(w)};")
        fn("}")

    def extern_instance(self, loc: A.Instantiation, d: A.ControlDecl) -> ExternLayout:
        kind = loc.type.name if isinstance(loc.type, A.TName) else ""
        cp = self.cp_name(d.name, loc.name, loc.annotations)
        info = self.info.externs.get(cp)
        if kind not in ("counter", "register", "meter", "direct_meter") or info is None:
            raise self.unsupported(f"extern instances in a control ({kind or loc.type} {loc.name})", loc)
        idx = len(self.externs)
        if kind == "direct_meter":
            # The device refuses to configure direct meters (set_direct_meter is UNIMPLEMENTED), and
            # an unconfigured meter marks every packet green: read() is green, exactly.
            lay = ExternLayout(cp, kind, "", 0, info.width)
        elif kind == "meter":
            lay = ExternLayout(cp, kind, f"m{idx}", info.size, info.width, info.unit)
            self.out.append(
                f"struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32);"
                f" __type(value, struct meter); __uint(max_entries, {max(info.size, 1)}); }}"
                f' m{idx} SEC(".maps");  /* meter {cp} */'
            )
        elif kind == "counter":
            lay = ExternLayout(cp, kind, f"c{idx}", info.size)
            self.out.append(
                f"struct {{ __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __type(key, __u32);"
                f" __type(value, struct counter); __uint(max_entries, {max(info.size, 1)}); }}"
                f' c{idx} SEC(".maps");  /* counter {cp} */'
            )
        else:
            if info.width > MAX_WIDTH:
                raise self.unsupported(f"a register of bit<{info.width}>", loc)
            lay = ExternLayout(cp, kind, f"r{idx}", info.size, info.width)
            self.out.append(
                f"struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64);"
                f' __uint(max_entries, {max(info.size, 1)}); }} r{idx} SEC(".maps");  /* register {cp} */'
            )
        self.externs[cp] = lay
        return lay

    def clone(self, name: str, call: A.Call, fn: Fn) -> None:
        """An I2E clone request (cgen's i2e_clone makes the copy after ingress)."""
        args = call.args
        if len(args) != (2 if name == "clone" else 3):
            raise self.unsupported(f"{name} with {len(args)} arguments", call)
        kind = args[0]
        if not (isinstance(kind, A.TypeMember) and kind.type_name == "CloneType" and kind.member == "I2E"):
            raise self.unsupported("E2E clones (only CloneType.I2E)", call)
        if self.kind != "ingress":
            raise self.unsupported(f"{name} outside the ingress control", call)
        session, _ = self.expr(args[1], fn, 32)
        fl = "0"
        if name != "clone":
            if not isinstance(args[2], A.IntLit):
                raise self.unsupported("a field list index that is not a literal", call)
            fl = str(args[2].value + 1)
        fn(f"c->clone = (__u32)({session}) + 1;")
        fn(f"c->clone_fl = {fl};")
        self.clones_used = True

    def extern_method(self, lay: ExternLayout, method: str, call: A.Call, fn: Fn) -> None:
        args = call.args
        if lay.kind == "counter" and method == "count" and len(args) == 1:
            idx, _ = self.expr(args[0], fn, 32)
            fn("{")
            fn(f"    __u32 i = (__u32)({idx});")
            fn(f"    struct counter *v = bpf_map_lookup_elem(&{lay.map_name}, &i);")
            fn("    if (v) {")
            fn("        v->packets += 1;")
            fn("        v->bytes += c->SM.f_packet_length;")
            fn("    }")
            fn("}")
        elif lay.kind == "register" and method == "read" and len(args) == 2:
            out, t = self.lvalue(args[0], fn)
            idx, _ = self.expr(args[1], fn, 32)
            fn("{")
            fn(f"    __u32 i = (__u32)({idx});")
            fn(f"    __u64 *v = bpf_map_lookup_elem(&{lay.map_name}, &i);")
            fn(f"    {out} = v ? (*v & {mask(self.width(t, call))}) : 0;")
            fn("}")
        elif lay.kind == "register" and method == "write" and len(args) == 2:
            idx, _ = self.expr(args[0], fn, 32)
            val, _ = self.expr(args[1], fn, lay.width)
            fn("{")
            fn(f"    __u32 i = (__u32)({idx});")
            fn(f"    __u64 *v = bpf_map_lookup_elem(&{lay.map_name}, &i);")
            fn("    if (v)")
            fn(f"        *v = ({val}) & {mask(lay.width)};")
            fn("}")
        elif lay.kind == "meter" and method == "execute_meter" and len(args) == 2:
            idx, _ = self.expr(args[0], fn, 32)
            out, t = self.lvalue(args[1], fn)
            amount = "c->SM.f_packet_length" if lay.unit == "bytes" else "1"
            colour = f"meter_execute(&{lay.map_name}, (__u32)({idx}), {amount})"
            fn(f"{out} = {colour} & {mask(self.width(t, call))};")
        elif lay.kind == "direct_meter" and method == "read" and len(args) == 1:
            out, _ = self.lvalue(args[0], fn)
            fn(f"{out} = 0;  /* GREEN: direct meters cannot be configured on this target */")
        else:
            raise self.unsupported(f"{lay.kind}.{method} with {len(args)} arguments", call)

    def action(self, a: A.ActionDecl, blk: Blk) -> str:
        name = f"act_{blk.cname}_{c_ident(a.name)}"
        if name in self.done_actions:
            return name
        self.done_actions.add(name)
        fn = Fn([], blk)
        params = ["struct ctx *c"]
        for p in a.params:
            if p.direction:
                raise self.unsupported("an action parameter with a direction", p)
            t = self.resolve(p.type, p)
            self.width(t, p)
            fn.vars[p.name] = (f"a_{p.name}", t)
            params.append(f"__u64 a_{p.name}")
        self.block(a.body, fn)
        self.fns += [f"static __always_inline void {name}({', '.join(params)}) {{", *fn.lines, "}", ""]
        return name

    @abstractmethod
    def apply_table(self, t: A.TableDecl, fn: Fn) -> str:
        """:mod:`._ctables`."""

    @abstractmethod
    def switch_on_action(self, s: A.Switch, fn: Fn) -> None:
        """:mod:`._ctables`."""

    @abstractmethod
    def extract(self, arg: A.Expr, fn: Fn, node: object) -> None:
        """:mod:`._cparser`."""
