"""Lower a checked v1model program to C for the TC hook (clsact ingress, direct action).

One C function per program (``dysco_tc``): the parser as labels, verify checksum,
ingress, egress, compute checksum and the deparser inlined in v1model order; one
static function per action and per table apply.  Header fields live in a context
struct on the stack as ``__u64`` (widths up to 64 bits); headers are read from and
written back to the packet with ``bpf_skb_load_bytes`` / ``bpf_skb_store_bytes``.

Tables become maps: exact keys a HASH, an lpm key an LPM_TRIE (exact fields first,
the lpm field last), each with ``max_entries`` = the table's ``size``; the default
action is a one-slot ARRAY.  A value is ``{action index, args[]}``.  The layout is
described by :class:`TableLayout` so the device encodes entries the same way.

Anything outside this subset raises :class:`Unsupported` naming the construct and
its source position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dysco.errors import UserError

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from ...frontend.preprocess import SourceMap

_PACKET = ("packet_in", "packet_out")
V1_PARAMS = ("parser", "verify", "ingress", "egress", "compute", "deparser")
MAX_WIDTH = 64
STAT_IN, STAT_OUT, STAT_DROP, STAT_PASS = 0, 1, 2, 3


class Unsupported(UserError):
    """A construct the ebpf back end cannot compile (yet)."""


@dataclass(frozen=True)
class KeyField:
    name: str
    width: int
    match_kind: str  # exact | lpm
    nbytes: int


@dataclass
class TableLayout:
    """How one table is laid out in its maps (shared by the C generator and the device)."""

    name: str  # control-plane name
    index: int
    map_name: str  # entries
    default_map: str  # the default action (ARRAY, one slot)
    kind: str  # hash | lpm
    size: int
    keys: list[KeyField]  # in map-key order (exact first, lpm last)
    actions: list[str]  # control-plane action names; the value's ``action`` is an index here
    max_params: int
    default_action: str = ""
    default_args: tuple[int, ...] = ()

    @property
    def key_bytes(self) -> int:
        return sum(k.nbytes for k in self.keys)


@dataclass(frozen=True)
class ExternLayout:
    """A counter (PERCPU_ARRAY of {packets, bytes}) or register (ARRAY of __u64) instance."""

    name: str  # control-plane name
    kind: str  # counter | register
    map_name: str
    size: int
    width: int = 0  # registers: value width


@dataclass
class CProgram:
    source: str
    tables: dict[str, TableLayout]
    externs: dict[str, ExternLayout] = field(default_factory=dict)
    func: str = "dysco_tc"
    ports_map: str = "ports_in"
    egress_map: str = "ports_out"
    stats_map: str = "stats"


@dataclass
class _Blk:
    """Names a block's parameters stand for in C, and its local actions/tables."""

    cname: str
    params: dict[str, tuple[str, T.Type | None]]  # p4 name -> (C lvalue, type)
    actions: dict[str, A.ActionDecl] = field(default_factory=dict)
    tables: dict[str, A.TableDecl] = field(default_factory=dict)
    externs: dict[str, ExternLayout] = field(default_factory=dict)


@dataclass
class _Fn:
    """One C body being generated."""

    lines: list[str]
    blk: _Blk
    vars: dict[str, tuple[str, T.Type]] = field(default_factory=dict)
    indent: int = 1

    def __call__(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)


def _c_ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _mask(w: int) -> str:
    return f"0x{(1 << w) - 1:x}ULL"


def _bytes_expr(buf: str, start: int, n: int) -> str:
    parts = [
        f"((__u64){buf}[{start + i}] << {8 * (n - 1 - i)})" if n - 1 - i else f"(__u64){buf}[{start + i}]"
        for i in range(n)
    ]
    return "(" + " | ".join(parts) + ")"


class CGen:
    def __init__(
        self,
        prog: A.Program,
        sm: SourceMap,
        types: dict[str, T.Type],
        errors: list[str],
        info: ir.ProgramInfo,
    ) -> None:
        self.prog = prog
        self.sm = sm
        self.types = types
        self.errors = errors
        self.info = info
        self.out: list[str] = []
        self.fns: list[str] = []
        self.tables: dict[str, TableLayout] = {}
        self.decls: dict[str, A.ParserDecl | A.ControlDecl] = {}
        self.consts: dict[str, tuple[int, T.Type]] = {}
        self.extracted: list[str] = []
        self.emitted: list[str] = []
        self.done_actions: set[str] = set()
        self.done_tables: set[str] = set()
        self.externs: dict[str, ExternLayout] = {}
        self.done_structs: set[str] = set()

    # ------------------------------------------------------------ errors
    def unsupported(self, what: str, node: object) -> Unsupported:
        pos = getattr(node, "pos", A.NOPOS)
        where = self.sm.pos(pos[0] if pos != A.NOPOS else 1, 1)
        return Unsupported(f"not supported by the ebpf backend: {what} ({where.file}:{where.line})")

    # ------------------------------------------------------------ types
    def resolve(self, tr: A.TypeRef, node: object) -> T.Type:
        if isinstance(tr, A.TBit) and isinstance(tr.width, A.IntLit):
            if tr.signed:
                raise self.unsupported("int<W> (signed) values", node)
            return T.Bits(tr.width.value)
        if isinstance(tr, A.TSimple) and tr.kind == "bool":
            return T.BOOL
        if isinstance(tr, A.TName) and tr.name in self.types:
            return self.types[tr.name]
        raise self.unsupported(f"type {tr}", node)

    def width(self, t: T.Type, node: object) -> int:
        if t == T.BOOL:
            return 1
        if t == T.ERROR:
            return 32
        if isinstance(t, T.Enum):
            return t.underlying.width if t.underlying is not None else 32
        if isinstance(t, T.Bits):
            if t.signed:
                raise self.unsupported("int<W> (signed) values", node)
            if t.width > MAX_WIDTH:
                raise self.unsupported(f"bit<{t.width}> (wider than {MAX_WIDTH} bits)", node)
            return t.width
        raise self.unsupported(f"a value of type {t}", node)

    def c_struct(self, t: T.Struct, done: set[str], node: object) -> None:
        if t.name in done:
            return
        for _, ft in t.fields:
            if isinstance(ft, T.Struct):
                if ft.kind == "header_union":
                    raise self.unsupported("header unions", node)
                self.c_struct(ft, done, node)
            elif isinstance(ft, T.Stack):
                self.c_struct(ft.elem, done, node)
            elif isinstance(ft, T.Varbit):
                raise self.unsupported("varbit fields", node)
        done.add(t.name)
        lines = [f"struct s_{_c_ident(t.name)} {{"]
        if t.is_header:
            lines.append("    __u8 _v;")
        for n, ft in t.fields:
            if isinstance(ft, T.Struct):
                lines.append(f"    struct s_{_c_ident(ft.name)} f_{n};")
            elif isinstance(ft, T.Stack):
                lines.append(f"    struct s_{_c_ident(ft.elem.name)} f_{n}[{ft.size}];")
                lines.append(f"    __u32 f_{n}__n;  /* nextIndex */")
            else:
                self.width(ft, node)
                lines.append(f"    __u64 f_{n};")
        if not t.fields and not t.is_header:
            lines.append("    __u8 _empty;")
        lines.append("};")
        self.out += lines

    # ------------------------------------------------------------ program
    def generate(self) -> CProgram:
        main = next((d for d in self.prog.decls if isinstance(d, A.Instantiation) and d.name == "main"), None)
        if main is None or not isinstance(main.type, A.TName) or main.type.name != "V1Switch":
            raise self.unsupported("a main package other than V1Switch", main)
        for d in self.prog.decls:
            if isinstance(d, A.ParserDecl | A.ControlDecl) and d.locals is not None:
                self.decls[d.name] = d
            elif isinstance(d, A.ConstDecl):
                t = self.resolve(d.type, d)
                if not isinstance(d.value, A.IntLit):
                    raise self.unsupported("a constant that is not a literal", d)
                self.consts[d.name] = (d.value.value, t)
        blocks: list[A.ParserDecl | A.ControlDecl] = []
        for arg in main.args:
            if not (isinstance(arg, A.CtorCall) and isinstance(arg.type, A.TName) and not arg.args):
                raise self.unsupported("a V1Switch argument that is not a plain block instance", arg)
            blk_decl = self.decls.get(arg.type.name)
            if blk_decl is None:
                raise self.unsupported(f"block {arg.type.name}", arg)
            blocks.append(blk_decl)
        if len(blocks) != 6:
            raise self.unsupported("a V1Switch without six blocks", main)
        # the program state: one struct per parameter type of the ingress control
        ing = blocks[2]
        pt = [self.resolve(p.type, p) for p in ing.params]
        if len(pt) != 3 or not all(isinstance(t, T.Struct) for t in pt):
            raise self.unsupported("an ingress control without (headers, metadata, standard_metadata)", ing)
        done = self.done_structs
        structs = [t for t in pt if isinstance(t, T.Struct)]
        for t in structs:
            self.c_struct(t, done, ing)
        self.out.append(
            "struct ctx {\n"
            f"    struct s_{_c_ident(structs[0].name)} H;\n"
            f"    struct s_{_c_ident(structs[1].name)} M;\n"
            f"    struct s_{_c_ident(structs[2].name)} SM;\n"
            "    __u32 truncate;  /* v1model truncate(): the length the packet leaves with, 0: whole */\n"
            "};"
        )
        roles = ("H", "M", "SM")
        role_of = dict(zip([t.name for t in structs], roles, strict=True))
        body = _Fn([], _Blk("", {}))
        for kind, d in zip(V1_PARAMS, blocks, strict=True):
            params: dict[str, tuple[str, T.Type | None]] = {}
            data_params = [
                p for p in d.params if not (isinstance(p.type, A.TName) and p.type.name in _PACKET)
            ]
            for p in d.params:
                if isinstance(p.type, A.TName) and p.type.name in _PACKET:
                    params[p.name] = ("", None)
                    continue
                if isinstance(p.type, A.TName) and p.type.name in d.type_params:
                    # a generic block (control C<H, M>(inout H hdr, ...)): bound by position
                    t = structs[data_params.index(p)]
                else:
                    t = self.resolve(p.type, p)
                if not isinstance(t, T.Struct) or t.name not in role_of:
                    raise self.unsupported(f"a block parameter of type {t}", p)
                params[p.name] = (f"c->{role_of[t.name]}", t)
            blk = _Blk(_c_ident(d.name), params)
            if isinstance(d, A.ControlDecl):
                for loc in d.locals or ():
                    if isinstance(loc, A.ActionDecl):
                        blk.actions[loc.name] = loc
                    elif isinstance(loc, A.TableDecl):
                        blk.tables[loc.name] = loc
                    elif isinstance(loc, A.Instantiation):
                        blk.externs[loc.name] = self.extern_instance(loc, d)
                    else:
                        raise self.unsupported(f"control-local {type(loc).__name__}", loc)
            fn = _Fn(body.lines, blk)
            fn(f"/* {kind}: {d.name} */")
            if isinstance(d, A.ParserDecl):
                self.parser(d, fn)
            else:
                if kind == "deparser":
                    self.deparser(d, fn)
                else:
                    assert d.body is not None
                    self.block(d.body, fn)
                if kind == "ingress":
                    fn("if (c->SM.f_egress_spec == 511)")
                    fn("    goto drop;")
                    fn("c->SM.f_egress_port = c->SM.f_egress_spec;")
                elif kind == "egress":
                    fn("if (c->SM.f_egress_spec == 511)")
                    fn("    goto drop;")
        if sorted(self.extracted) != sorted(set(self.emitted)) or len(set(self.emitted)) != len(self.emitted):
            raise self.unsupported(
                "a deparser that does not emit exactly the headers the parser extracts", blocks[5]
            )
        return CProgram(self.render(body.lines), self.tables, self.externs)

    def render(self, body: list[str]) -> str:
        head = [
            "/* generated by dysco softswitch (ebpf target); do not edit */",
            "#include <linux/bpf.h>",
            "#include <linux/pkt_cls.h>",
            "#include <bpf/bpf_helpers.h>",
            "",
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u32);"
            ' __uint(max_entries, 512); } ports_in SEC(".maps");',
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u32);"
            ' __uint(max_entries, 512); } ports_out SEC(".maps");',
            "struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64);"
            ' __uint(max_entries, 4); } stats SEC(".maps");',
            "",
            "struct counter { __u64 packets; __u64 bytes; };",
            "",
            "static __always_inline void stat(__u32 i) {",
            "    __u64 *v = bpf_map_lookup_elem(&stats, &i);",
            "    if (v) __sync_fetch_and_add(v, 1);",
            "}",
            "",
        ]
        main = [
            'SEC("tc")',
            "int dysco_tc(struct __sk_buff *skb) {",
            "    __u32 ifindex = skb->ingress_ifindex;",
            "    __u32 *inport = bpf_map_lookup_elem(&ports_in, &ifindex);",
            "    if (!inport) {",
            f"        stat({STAT_PASS});",
            "        return TC_ACT_OK;",
            "    }",
            f"    stat({STAT_IN});",
            "    struct ctx cx = {};",
            "    struct ctx *c = &cx;",
            "    __u8 b[64];",
            "    __u32 off = 0;",
            "    __u32 outoff = 0;",
            "    c->SM.f_ingress_port = *inport;",
            "    c->SM.f_packet_length = skb->len;",
            *body,
            "    {",
            "        __u32 eport = (__u32)c->SM.f_egress_port;",
            "        __u32 *oif = bpf_map_lookup_elem(&ports_out, &eport);",
            "        if (!oif)",
            "            goto drop;",
            "        if (c->truncate && c->truncate < skb->len)",
            "            if (bpf_skb_change_tail(skb, c->truncate, 0) < 0)",
            "                goto drop;",
            f"        stat({STAT_OUT});",
            "        return bpf_redirect(*oif, 0);",
            "    }",
            "drop:",
            f"    stat({STAT_DROP});",
            "    return TC_ACT_SHOT;",
            "}",
            "",
            'char LICENSE[] SEC("license") = "GPL";',
        ]
        return "\n".join(head + self.out + [""] + self.fns + main) + "\n"

    # ------------------------------------------------------------ parser
    def parser(self, d: A.ParserDecl, fn: _Fn) -> None:
        for loc in d.locals or ():
            if not isinstance(loc, A.VarDecl):
                raise self.unsupported(f"parser-local {type(loc).__name__}", loc)
            t = self.resolve(loc.type, loc)
            w = self.width(t, loc)
            cname = f"pv_{fn.blk.cname}_{loc.name}"
            init = self.expr(loc.init, fn, w)[0] if loc.init is not None else "0"
            fn(f"__u64 {cname} = ({init}) & {_mask(w)};")
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

    def keyset_cond(self, ks: A.Expr, var: str, w: int | None, fn: _Fn) -> str:
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

    def is_const_name(self, e: A.Expr) -> bool:
        return isinstance(e, A.Name) and e.name in self.consts

    def struct_eq(self, a: str, b: str, t: T.Struct) -> str:
        """P4 equality: field by field; two invalid headers are equal whatever their fields."""
        parts = []
        for n, ft in t.fields:
            if isinstance(ft, T.Stack):
                raise self.unsupported("comparing structs that hold header stacks", ft)
            if isinstance(ft, T.Struct):
                parts.append(self.struct_eq(f"{a}.f_{n}", f"{b}.f_{n}", ft))
            else:
                parts.append(f"({a}.f_{n} == {b}.f_{n})")
        fields = " && ".join(parts) or "1"
        if t.is_header:
            return f"(({a}._v == {b}._v) && (!{a}._v || ({fields})))"
        return f"({fields})"

    def lookahead(self, e: A.Call, fn: _Fn) -> tuple[str, int]:
        """``pkt.lookahead<bit<W>>()``: the next W bits, not consumed (read before the statement)."""
        t = self.resolve(e.type_args[0], e)
        w = self.width(t, e)
        nb = (w + 7) // 8
        var = f"la{len(fn.lines)}"
        fn(f"__u64 {var} = 0;")
        fn(f"if (bpf_skb_load_bytes(skb, off, b, {nb}) < 0) {{")
        fn(f"    c->SM.f_parser_error = {self.error_code('PacketTooShort', e)};")
        fn(f"    goto p_{fn.blk.cname}_reject;")
        fn("}")
        sh = 8 * nb - w
        v = _bytes_expr("b", 0, nb)
        fn(f"{var} = {f'({v} >> {sh})' if sh else v} & {_mask(w)};")
        return var, w

    def state_label(self, name: str, names: set[str], lab: str, node: object) -> str:
        if name in ("accept", "reject"):
            return lab + name
        if name not in names:
            raise self.unsupported(f"transition to unknown state {name}", node)
        return lab + name

    def error_code(self, name: str, node: object) -> int:
        if name not in self.errors:
            raise self.unsupported(f"error.{name}", node)
        return self.errors.index(name)

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

    def extract(self, arg: A.Expr, fn: _Fn, node: object) -> None:
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
        if stack is None:
            self.extracted.append(code)
        elif f"{stack[0]}[]" not in self.extracted:
            self.extracted.append(f"{stack[0]}[]")
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
            v = _bytes_expr("b", first, nb)
            v = f"({v} >> {shift})" if shift else v
            fn(f"{code}.f_{name} = {v} & {_mask(w)};")
        fn(f"{code}._v = 1;")
        fn(f"off += {n};")
        if stack is not None:
            fn(f"{stack[0]}__n += 1;")

    # ------------------------------------------------------------ deparser
    def deparser(self, d: A.ControlDecl, fn: _Fn) -> None:
        assert d.body is not None
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
                self.emitted.append(f"{code}[]")
                for i in range(t.size):
                    self.emit_header(f"{code}[{i}]", t.elem, s, fn, record=False)
                continue
            if not isinstance(t, T.Struct):
                raise self.unsupported("emit of something that is not a header", s)
            for hcode, ht in self.headers_in(code, t, s):
                self.emit_header(hcode, ht, s, fn)
        fn("if (outoff != off)")
        fn("    goto drop;")

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

    def emit_header(self, code: str, t: T.Struct, s: object, fn: _Fn, record: bool = True) -> None:
        lay = self.header_layout(t, s)
        n = sum(w for _, _, w in lay) // 8
        if record:
            self.emitted.append(code)
        fn(f"if ({code}._v) {{")
        for i in range(n):
            parts = []
            for name, o, w in lay:
                lo, hi = max(o, 8 * i), min(o + w, 8 * i + 8)
                if lo >= hi:
                    continue
                chunk = f"(({code}.f_{name} >> {o + w - hi}) & {_mask(hi - lo)})"
                sh = 8 * i + 8 - hi
                parts.append(f"({chunk} << {sh})" if sh else chunk)
            fn(f"    b[{i}] = (__u8)({' | '.join(parts)});")
        fn(f"    if (bpf_skb_store_bytes(skb, outoff, b, {n}, 0) < 0)")
        fn("        goto drop;")
        fn(f"    outoff += {n};")
        fn("}")

    # ------------------------------------------------------------ statements
    def block(self, b: A.Block, fn: _Fn) -> None:
        for s in b.stmts:
            self.stmt(s, fn)

    def stmt(self, s: A.Stmt, fn: _Fn) -> None:
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
            fn(f"{lhs} = ({rhs}) & {_mask(w)};")
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
            fn(f"struct s_{_c_ident(st.name)} {cname} = {{}};")
            fn.vars[s.name] = (cname, st)
            if s.init is not None:
                self.stmt(A.Assign(A.Name(s.name, s.pos), s.init, s.pos), fn)
        elif isinstance(s, A.VarDecl):
            t = self.resolve(s.type, s)
            w = self.width(t, s)
            cname = f"v_{s.name}_{len(fn.lines)}"
            init = self.expr(s.init, fn, w)[0] if s.init is not None else "0"
            fn(f"__u64 {cname} = ({init}) & {_mask(w)};")
            fn.vars[s.name] = (cname, t)
        elif isinstance(s, A.Switch):
            self.switch_on_action(s, fn)
        elif isinstance(s, A.CallStmt):
            value = self.call(s.call, fn)
            if value is not None:
                fn(f"{value};")
        else:
            raise self.unsupported(f"statement {type(s).__name__}", s)

    def call(self, call: A.Call, fn: _Fn) -> str | None:
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
            if f.name in ("setValid", "setInvalid"):
                raise self.unsupported(f"{f.name}() (the deparser would change the packet's length)", call)
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
                fn(f"    goto p_{fn.blk.cname}_reject;")
                fn("}")
                return None
            if f.name in ("update_checksum", "verify_checksum"):
                self.checksum(f.name, call, fn)
                return None
            if f.name == "NoAction":
                return None
        raise self.unsupported(f"call of {getattr(f, 'name', f)}", call)

    def checksum(self, which: str, call: A.Call, fn: _Fn) -> None:
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
        if which == "update_checksum":
            fn(f"    {target} = (~s) & 0xffff;")
        else:
            fn(f"    if (((~s) & 0xffff) != {target})")
            fn("        c->SM.f_checksum_error = 1;")
        fn("}")

    @staticmethod
    def csum16_into(var: str, fields: list[tuple[str, int]], fn: _Fn) -> None:
        """Declare ``var``: the folded one's-complement sum (not inverted) of the fields' 16-bit words."""
        terms: list[str] = []
        o = 0
        for code, w in fields:
            k = o // 16
            while k * 16 < o + w:
                lo, hi = max(o, 16 * k), min(o + w, 16 * k + 16)
                chunk = f"(({code} >> {o + w - hi}) & {_mask(hi - lo)})"
                sh = 16 * k + 16 - hi
                terms.append(f"({chunk} << {sh})" if sh else chunk)
                k += 1
            o += w
        fn(f"    __u64 {var} = {' + '.join(terms) or '0'};")
        for _ in range(4):
            fn(f"    {var} = ({var} & 0xffff) + ({var} >> 16);")

    def data_list(self, e: A.Expr, fn: _Fn) -> list[tuple[str, int]]:
        items = e.items if isinstance(e, A.ListExpr) else (e,)
        out: list[tuple[str, int]] = []
        for it in items:
            code, w = self.expr(it, fn)
            if w is None:
                raise self.unsupported("a value without a width in a field list", it)
            out.append((code, w))
        return out

    def hash(self, call: A.Call, fn: _Fn) -> None:
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
                parts.append(f"(({code} & {_mask(fw)}) << {o})" if o else f"({code} & {_mask(fw)})")
            fn(f"    __u64 h = {' | '.join(parts) or '0'};")
        fn(f"    __u64 m = {mx};")
        fn(f"    {target} = (m ? ({base}) + h % m : ({base})) & {_mask(w)};")
        fn("}")

    # ------------------------------------------------------------ counters and registers
    def extern_instance(self, loc: A.Instantiation, d: A.ControlDecl) -> ExternLayout:
        kind = loc.type.name if isinstance(loc.type, A.TName) else ""
        cp = self.cp_name(d.name, loc.name, loc.annotations)
        info = self.info.externs.get(cp)
        if kind not in ("counter", "register") or info is None:
            raise self.unsupported(f"extern instances in a control ({kind or loc.type} {loc.name})", loc)
        idx = len(self.externs)
        if kind == "counter":
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

    def extern_method(self, lay: ExternLayout, method: str, call: A.Call, fn: _Fn) -> None:
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
            fn(f"    {out} = v ? (*v & {_mask(self.width(t, call))}) : 0;")
            fn("}")
        elif lay.kind == "register" and method == "write" and len(args) == 2:
            idx, _ = self.expr(args[0], fn, 32)
            val, _ = self.expr(args[1], fn, lay.width)
            fn("{")
            fn(f"    __u32 i = (__u32)({idx});")
            fn(f"    __u64 *v = bpf_map_lookup_elem(&{lay.map_name}, &i);")
            fn("    if (v)")
            fn(f"        *v = ({val}) & {_mask(lay.width)};")
            fn("}")
        else:
            raise self.unsupported(f"{lay.kind}.{method} with {len(args)} arguments", call)

    # ------------------------------------------------------------ actions and tables
    def action(self, a: A.ActionDecl, blk: _Blk) -> str:
        name = f"act_{blk.cname}_{_c_ident(a.name)}"
        if name in self.done_actions:
            return name
        self.done_actions.add(name)
        fn = _Fn([], blk)
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

    def cp_name(self, blk_name: str, local: str, annos: tuple[A.Annotation, ...]) -> str:
        a = A.annotation(annos, "name")
        if a is not None and a.args and isinstance(a.args[0], A.StrLit):
            n = a.args[0].value
            return n[1:] if n.startswith(".") else f"{blk_name}.{n}"
        return f"{blk_name}.{local}"

    def apply_table(self, t: A.TableDecl, fn: _Fn) -> str:
        """The name of the table's apply function: it returns ``(action index + 1) << 1 | hit``."""
        blk = fn.blk
        decl = self.decls[next(n for n in self.decls if _c_ident(n) == blk.cname)]
        cp = self.cp_name(decl.name, t.name, t.annotations)
        info = self.info.tables.get(cp)
        if info is None:
            raise self.unsupported(f"table {t.name} (not in the program's control-plane IR)", t)
        name = f"apply_{_c_ident(cp)}"
        if name in self.done_tables:
            return name
        self.done_tables.add(name)
        if info.direct_counter or info.direct_meter or info.support_timeout:
            raise self.unsupported("direct counters, direct meters and idle timeouts", t)
        kinds = [k.match_kind for k in t.keys]
        if any(k not in ("exact", "lpm", "ternary", "range", "optional") for k in kinds):
            bad = next(k for k in kinds if k not in ("exact", "lpm", "ternary", "range", "optional"))
            raise self.unsupported(f"{bad} match (table {cp})", t)
        scan = any(k in ("ternary", "range", "optional") for k in kinds) or kinds.count("lpm") > 1
        if scan:
            order = list(range(len(kinds)))
        else:
            order = [i for i, k in enumerate(kinds) if k == "exact"] + [
                i for i, k in enumerate(kinds) if k == "lpm"
            ]
        keys: list[KeyField] = []
        key_code: list[tuple[str, int]] = []
        for i in order:
            ke = t.keys[i]
            code, _ = self.expr(ke.expr, fn)
            w = self.width(self.expr_type(ke.expr, fn), ke)
            if ke.match_kind == "lpm" and w % 8 and not scan:
                raise self.unsupported(f"an lpm key of {w} bits (not whole bytes)", ke)
            keys.append(KeyField(info.keys[i].name, w, ke.match_kind, (w + 7) // 8))
            key_code.append((code, w))
        idx = len(self.tables)
        actions = [r.name for r in info.actions]
        max_params = max((len(self.info.actions[a].params) for a in actions), default=0)
        kind = "scan" if scan else ("lpm" if "lpm" in kinds else "hash")
        lay = TableLayout(
            cp, idx, f"t{idx}", f"d{idx}", kind, info.size, keys, actions,
            max_params, info.default_action, info.default_args,
        )  # fmt: skip
        self.tables[cp] = lay
        nargs = max(max_params, 1)
        body = _Fn([], blk)
        if scan:
            nk = max(len(keys), 1)
            self.out += [
                f"/* table {cp} (ternary/range/optional: a bounded scan of {info.size} slots) */",
                f"struct v{idx} {{ __u32 valid; __u32 prio; __u32 action; __u32 pad;"
                f" __u64 lo[{nk}]; __u64 hi[{nk}]; __u64 args[{nargs}]; }};",
                f"struct q{idx} {{ __u64 key[{nk}]; __u32 best; __u32 best_prio; int found; }};",
                f"struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32);"
                f" __type(value, struct v{idx}); __uint(max_entries, {max(info.size, 1)}); }}"
                f' t{idx} SEC(".maps");',
            ]
            conds = []
            for j, kf in enumerate(keys):
                if kf.match_kind == "range":
                    conds.append(f"(e->lo[{j}] <= q->key[{j}] && q->key[{j}] <= e->hi[{j}])")
                else:
                    conds.append(f"((q->key[{j}] & e->hi[{j}]) == e->lo[{j}])")
            self.fns += [
                f"static long scan{idx}(__u32 i, void *p) {{",
                f"    struct q{idx} *q = p;",
                f"    struct v{idx} *e = bpf_map_lookup_elem(&t{idx}, &i);",
                "    if (!e || !e->valid)",
                "        return 0;",
                f"    if (!({' && '.join(conds) or '1'}))",
                "        return 0;",
                "    if (!q->found || e->prio > q->best_prio) {",
                "        q->found = 1;",
                "        q->best = i;",
                "        q->best_prio = e->prio;",
                "    }",
                "    return 0;",
                "}",
                "",
            ]
            body(f"struct q{idx} q = {{}};")
            for j, (code, _w) in enumerate(key_code):
                body(f"q.key[{j}] = {code};")
            body(f"bpf_loop({max(info.size, 1)}, scan{idx}, &q, 0);")
            body(f"struct v{idx} *v = q.found ? bpf_map_lookup_elem(&t{idx}, &q.best) : 0;")
        else:
            nkey = lay.key_bytes
            mtype = "BPF_MAP_TYPE_LPM_TRIE" if kind == "lpm" else "BPF_MAP_TYPE_HASH"
            flags = " __uint(map_flags, BPF_F_NO_PREALLOC);" if kind == "lpm" else ""
            pre = "__u32 prefixlen; " if kind == "lpm" else ""
            self.out += [
                f"/* table {cp} ({kind}, size {info.size}) */",
                f"struct k{idx} {{ {pre}__u8 k[{max(nkey, 1)}]; }};",
                f"struct v{idx} {{ __u32 action; __u32 pad; __u64 args[{nargs}]; }};",
                f"struct {{ __uint(type, {mtype}); __type(key, struct k{idx}); __type(value, struct v{idx});"
                f' __uint(max_entries, {max(info.size, 1)});{flags} }} t{idx} SEC(".maps");',
            ]
            body(f"struct k{idx} key = {{}};")
            if kind == "lpm":
                body(f"key.prefixlen = {8 * nkey};")
            pos = 0
            for (code, _w), kf in zip(key_code, keys, strict=True):
                for j in range(kf.nbytes):
                    body(f"key.k[{pos + j}] = (__u8)(({code}) >> {8 * (kf.nbytes - 1 - j)});")
                pos += kf.nbytes
            body(f"struct v{idx} *v = bpf_map_lookup_elem(&t{idx}, &key);")
        self.out.append(
            f"struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, struct v{idx});"
            f' __uint(max_entries, 1); }} d{idx} SEC(".maps");'
        )
        body("int hit = v != 0;")
        body("if (!v) {")
        body("    __u32 zero = 0;")
        body(f"    v = bpf_map_lookup_elem(&d{idx}, &zero);")
        body("    if (!v)")
        body("        return 0;")
        body("}")
        body("__u32 run = v->action;")
        body("switch (run) {")
        for ai, an in enumerate(actions):
            adecl = self.find_action(an, blk, decl.name)
            if adecl is None:
                if an == "NoAction":
                    continue
                raise self.unsupported(f"action {an}", t)
            fname = self.action(adecl, blk)
            args = ", ".join(["c", *[f"v->args[{j}]" for j in range(len(self.info.actions[an].params))]])
            body(f"case {ai}: {fname}({args}); break;")
        body("default: break;")
        body("}")
        body("return ((run + 1) << 1) | hit;")
        self.fns += [f"static __always_inline __u32 {name}(struct ctx *c) {{", *body.lines, "}", ""]
        return name

    def switch_on_action(self, s: A.Switch, fn: _Fn) -> None:
        call = s.expr.expr if isinstance(s.expr, A.Member) and s.expr.name == "action_run" else None
        if not (isinstance(call, A.Call) and isinstance(call.func, A.Member) and call.func.name == "apply"):
            raise self.unsupported("switch on anything but table.apply().action_run", s)
        tname = call.func.expr.name if isinstance(call.func.expr, A.Name) else ""
        tdecl = fn.blk.tables.get(tname)
        if tdecl is None:
            raise self.unsupported(f"switch on table {tname}", s)
        apply = self.apply_table(tdecl, fn)
        decl = self.decls[next(n for n in self.decls if _c_ident(n) == fn.blk.cname)]
        lay = self.tables[self.cp_name(decl.name, tdecl.name, tdecl.annotations)]
        fn(f"switch ({apply}(c) >> 1) {{")
        for case in s.cases:
            if isinstance(case.label, A.Default):
                fn("default:")
            elif isinstance(case.label, A.Name) and case.label.name in fn.blk.actions:
                a = fn.blk.actions[case.label.name]
                cp = self.cp_name(decl.name, a.name, a.annotations)
                fn(f"case {lay.actions.index(cp) + 1}:")
            elif isinstance(case.label, A.Name) and case.label.name in lay.actions:
                fn(f"case {lay.actions.index(case.label.name) + 1}:")
            else:
                raise self.unsupported(f"switch label {case.label}", case)
            if case.body is not None:
                fn("{")
                fn.indent += 1
                self.block(case.body, fn)
                fn.indent -= 1
                fn("}")
                fn("break;")
        fn("}")

    def find_action(self, cp: str, blk: _Blk, blk_name: str) -> A.ActionDecl | None:
        for a in blk.actions.values():
            if self.cp_name(blk_name, a.name, a.annotations) == cp:
                return a
        return None

    # ------------------------------------------------------------ expressions
    def lvalue(self, e: A.Expr, fn: _Fn) -> tuple[str, T.Type]:
        if isinstance(e, A.Name):
            if e.name in fn.vars:
                return fn.vars[e.name]
            p = fn.blk.params.get(e.name)
            if p is not None and p[1] is not None:
                return p[0], p[1]
            raise self.unsupported(f"name {e.name}", e)
        if isinstance(e, A.Member):
            base, bt = self.lvalue(e.expr, fn)
            if isinstance(bt, T.Struct):
                for n, ft in bt.fields:
                    if n == e.name:
                        return f"{base}.f_{n}", ft
            if isinstance(bt, T.Stack) and e.name in ("next", "last"):
                # a run-time index, bounded for the verifier (callers check nextIndex first)
                idx = f"{base}__n" if e.name == "next" else f"({base}__n - 1)"
                return f"{base}[{idx} < {bt.size} ? {idx} : 0]", bt.elem
            raise self.unsupported(f"member {e.name} of {bt}", e)
        if isinstance(e, A.Index):
            base, bt = self.lvalue(e.expr, fn)
            if not isinstance(bt, T.Stack):
                raise self.unsupported(f"indexing {bt}", e)
            if not isinstance(e.index, A.IntLit) or not 0 <= e.index.value < bt.size:
                raise self.unsupported("a stack index that is not a literal within the stack", e)
            return f"{base}[{e.index.value}]", bt.elem
        raise self.unsupported(f"expression {type(e).__name__} as an lvalue", e)

    def expr_type(self, e: A.Expr, fn: _Fn) -> T.Type:
        return self.lvalue(e, fn)[1]

    def expr(self, e: A.Expr, fn: _Fn, want: int | None = None) -> tuple[str, int | None]:
        """C code and bit width (None: bool or an untyped integer literal)."""
        if isinstance(e, A.IntLit):
            w = e.width or want
            v = e.value & ((1 << w) - 1) if w else e.value
            return f"{v}ULL", e.width
        if isinstance(e, A.BoolLit):
            return ("1" if e.value else "0"), None
        if isinstance(e, A.Name) and e.name in self.consts:
            v, t = self.consts[e.name]
            return f"{v}ULL", self.width(t, e)
        if isinstance(e, A.Member) and e.name in ("lastIndex", "size", "nextIndex"):
            base, bt = self.lvalue(e.expr, fn)
            if isinstance(bt, T.Stack):
                if e.name == "size":
                    return f"{bt.size}ULL", 32
                return (f"(({base}__n - 1) & 0xffffffffULL)" if e.name == "lastIndex" else f"{base}__n"), 32
        if isinstance(e, A.Name | A.Member | A.Index) and not (
            isinstance(e, A.Member) and e.name in ("hit", "miss")
        ):
            code, t = self.lvalue(e, fn)
            if t == T.BOOL:
                return code, None
            return code, self.width(t, e)
        if isinstance(e, A.Member) and isinstance(e.expr, A.Call):
            call = self.call(e.expr, fn)
            if call is None:
                raise self.unsupported(f".{e.name} of a call", e)
            if e.name not in ("hit", "miss"):
                raise self.unsupported(f".{e.name} of a table apply", e)
            return (f"({call} & 1)" if e.name == "hit" else f"!({call} & 1)"), None
        if isinstance(e, A.Call):
            f = e.func
            if isinstance(f, A.Member) and f.name == "lookahead" and not e.args and len(e.type_args) == 1:
                return self.lookahead(e, fn)
            if isinstance(f, A.Member) and f.name == "isValid" and not e.args:
                code, _ = self.lvalue(f.expr, fn)
                return f"{code}._v", None
            raise self.unsupported(f"call of {getattr(f, 'name', f)} in an expression", e)
        if isinstance(e, A.TypeMember):
            if e.type_name == "error":
                return str(self.error_code(e.member, e)), 32
            et = self.types.get(e.type_name)
            if isinstance(et, T.Enum) and e.member in et.members:
                n = et.value(e.member) if et.underlying is not None else et.members.index(e.member)
                return f"{n}ULL", self.width(et, e)
            raise self.unsupported(f"{e.type_name}.{e.member}", e)
        if isinstance(e, A.Unary):
            uv, w = self.expr(e.expr, fn, want)
            if e.op == "!":
                return f"(!{uv})", None
            if e.op == "~" and w:
                return f"((~{uv}) & {_mask(w)})", w
            if e.op == "-" and w:
                return f"((-{uv}) & {_mask(w)})", w
            raise self.unsupported(f"unary {e.op}", e)
        if isinstance(e, A.Binary):
            if e.op in ("&&", "||"):
                lv, _ = self.expr(e.left, fn)
                rv, _ = self.expr(e.right, fn)
                return f"({lv} {e.op} {rv})", None
            if e.op in ("==", "!=") and isinstance(e.left, A.Name | A.Member):
                lt = self.lvalue(e.left, fn) if not self.is_const_name(e.left) else None
                if lt is not None and isinstance(lt[1], T.Struct):
                    rt = self.lvalue(e.right, fn)
                    if rt[1] != lt[1]:
                        raise self.unsupported("comparing values of different types", e)
                    eq = self.struct_eq(lt[0], rt[0], lt[1])
                    return (eq if e.op == "==" else f"(!{eq})"), None
            lv, lw = self.expr(e.left, fn, want)
            rv, rw = self.expr(e.right, fn, lw or want)
            if lw is None and rw is not None:
                lv, lw = self.expr(e.left, fn, rw)
            w = lw or rw or want
            if e.op in ("==", "!=", "<", ">", "<=", ">="):
                return f"({lv} {e.op} {rv})", None
            if e.op in ("+", "-", "*", "&", "|", "^", "<<", ">>"):
                if w is None:
                    raise self.unsupported("arithmetic on untyped integers", e)
                return f"(({lv} {e.op} {rv}) & {_mask(w)})", w
            raise self.unsupported(f"operator {e.op}", e)
        if isinstance(e, A.Cast):
            t = self.resolve(e.type, e)
            w = self.width(t, e)
            cv, _ = self.expr(e.expr, fn, w)
            return f"(({cv}) & {_mask(w)})", w
        if isinstance(e, A.Slice) and isinstance(e.hi, A.IntLit) and isinstance(e.lo, A.IntLit):
            sv, _ = self.expr(e.expr, fn)
            w = e.hi.value - e.lo.value + 1
            return f"(({sv} >> {e.lo.value}) & {_mask(w)})", w
        if isinstance(e, A.Cond):
            cv, _ = self.expr(e.cond, fn)
            tv, tw = self.expr(e.then, fn, want)
            ov, ow = self.expr(e.other, fn, tw or want)
            return f"({cv} ? {tv} : {ov})", tw or ow
        raise self.unsupported(f"expression {type(e).__name__}", e)


def generate(
    prog: A.Program, sm: SourceMap, types: dict[str, T.Type], errors: list[str], info: ir.ProgramInfo
) -> CProgram:
    """The C source and map layout of a checked program (:class:`Unsupported` for what it cannot do)."""
    return CGen(prog, sm, types, errors, info).generate()
