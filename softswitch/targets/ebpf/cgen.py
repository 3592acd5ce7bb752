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

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from ...frontend.preprocess import SourceMap
from ._clayout import (
    MAX_PAYLOAD_CSUMS,
    PACKET,
    STAT_DROP,
    STAT_IN,
    STAT_OUT,
    STAT_PASS,
    V1_PARAMS,
    Blk,
    CProgram,
    ExternLayout,
    Fn,
    KeyField,
    TableLayout,
    Unsupported,
    c_ident,
)
from ._cparser import CParser

# The deparser's headers take ``hlen`` bytes where the parser took ``off``.  Growing pushes room at
# the head (any protocol).  Shrinking removes bytes after the MAC header with
# bpf_skb_adjust_room, which the kernel allows for IPv4/IPv6 packets only; any other packet (a
# packet-out whose controller header hides the EtherType) has its payload moved forward in
# SHIFT_CHUNK pieces and its tail cut, up to SHIFT_MAX payload bytes (longer ones are dropped).
RESIZE = [
    "#define PARSER_STEPS 1024  /* calls of the parser's step one parse may take (ParserTimeout beyond) */",
    "/* the parser's reads: straight from the linear part of the packet when the bytes are there",
    "   (a helper call costs as much as a parser state), else through the helper */",
    "#define PKT_DIRECT_MAX 1024",
    "static __always_inline long pkt_load(struct __sk_buff *skb, __u32 off, __u8 *to, __u32 n) {",
    "    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;",
    "    if (off < PKT_DIRECT_MAX && data + off + n <= end) {",
    "        __builtin_memcpy(to, data + off, n);",
    "        return 0;",
    "    }",
    "    return bpf_skb_load_bytes(skb, off, to, n);",
    "}",
    "#define SHIFT_CHUNK 64",
    "#define SHIFT_STEPS 32",
    "/* a global function: the verifier checks it once, not at every path that reaches the deparser */",
    "__attribute__((noinline)) int shift_front(struct __sk_buff *skb, __u32 off, __u32 n) {",
    "    __u32 len = skb->len;",
    "    __u32 src = off;",
    "    __u8 buf[SHIFT_CHUNK];",
    "    if (n > off || len < off) return -1;",
    "    for (int i = 0; i < SHIFT_STEPS && src < len; i++) {",
    "        __u32 k = len - src;",
    "        if (k > SHIFT_CHUNK) k = SHIFT_CHUNK;",
    "        if (k == 0) break;",
    "        if (bpf_skb_load_bytes(skb, src, buf, k) < 0) return -1;",
    "        if (bpf_skb_store_bytes(skb, src - n, buf, k, 0) < 0) return -1;",
    "        src += k;",
    "    }",
    "    if (src < len) return -1;",
    "    return bpf_skb_change_tail(skb, len - n, 0);",
    "}",
    "/* *macl: where the kernel thinks the MAC header ends (14 on Ethernet ports; growing the head",
    "   moves it, and adjust_room removes the bytes right after it, which must be header bytes) */",
    "static __always_inline int resize(struct __sk_buff *skb, __u32 off, __u32 hlen, __u32 *macl) {",
    "    if (hlen == off) return 0;",
    "    if (hlen > off) {",
    "        if (bpf_skb_change_head(skb, hlen - off, 0) < 0) return -1;",
    "        *macl += hlen - off;",
    "        return 0;",
    "    }",
    "    __u32 n = off - hlen;",
    "    if (*macl + n <= off && bpf_skb_adjust_room(skb, -(__s32)n, BPF_ADJ_ROOM_MAC, 0) == 0) return 0;",
    "    return shift_front(skb, off, n);",
    "}",
    "",
]


class CGen(CParser):
    """The passes in order: block instances and their state structs, then per block (v1model
    order) parser / controls / deparser into one TC function; tables, actions and externs are
    generated the first time a body uses them."""

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
            f"    struct s_{c_ident(structs[0].name)} H;\n"
            f"    struct s_{c_ident(structs[1].name)} M;\n"
            f"    struct s_{c_ident(structs[2].name)} SM;\n"
            "    __u32 truncate;  /* v1model truncate(): the length the packet leaves with, 0: whole */\n"
            "    __u32 clone;     /* I2E clone requested: session + 1 */\n"
            "    __u32 clone_fl;  /* its field list + 1 (0: none) */\n"
            f"    __u64 cko[{MAX_PAYLOAD_CSUMS}][2];  /* update_checksum_with_payload: the parsed sums */\n"
            "    __u32 ckd;  /* ... the ones to apply */\n"
            f"    __u64 ckv[{MAX_PAYLOAD_CSUMS}];  /* an l4 update_checksum's value */\n"
            "    __u32 poff;  /* the parser's offset between steps (in map memory, so the verifier does not\n"
            "                    carry its exact value from one step to the next) */\n"
            "};"
        )
        roles = ("H", "M", "SM")
        role_of = dict(zip([t.name for t in structs], roles, strict=True))
        # dysco_tc runs parser, verify and ingress; egress, compute and deparser are the function
        # egress_path, which an I2E clone runs first on its own state (the packet as received)
        body = Fn([], Blk("", {}))
        tail = Fn([], Blk("", {}))
        for kind, d in zip(V1_PARAMS, blocks, strict=True):
            params: dict[str, tuple[str, T.Type | None]] = {}
            data_params = [p for p in d.params if not (isinstance(p.type, A.TName) and p.type.name in PACKET)]
            for p in d.params:
                if isinstance(p.type, A.TName) and p.type.name in PACKET:
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
            blk = Blk(c_ident(d.name), params)
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
            self.kind = kind
            fn = Fn((body if kind in ("parser", "verify", "ingress") else tail).lines, blk)
            fn(f"/* {kind}: {d.name} */")
            if isinstance(d, A.ParserDecl):
                self.parser(d, fn)
                self.run_parser(fn, "c", "off", "")
                fn("ck_snapshot(c);")
            else:
                if kind == "deparser":
                    self.deparser(d, fn)
                else:
                    assert d.body is not None
                    # v1model: exit ends this control; the pipeline goes on with the next block
                    fn.exit_label = f"x_{blk.cname}"
                    self.block(d.body, fn)
                    fn.indent = 0
                    fn(f"{fn.exit_label}: ;")
                    fn.indent = 1
                if kind == "ingress":
                    if self.clones_used:
                        self.i2e_clone(fn, self.field_lists(structs[1], ing))
                    fn("if (c->SM.f_egress_spec == 511)")
                    fn("    goto drop;")
                    fn("c->SM.f_egress_port = c->SM.f_egress_spec;")
                    fn("if (egress_path(skb, c, off, &macl) < 0)")
                    fn("    goto drop;")
                elif kind == "egress":
                    fn("if (c->SM.f_egress_spec == 511)")
                    fn("    goto drop;")
        self.fns += self.snapshot()
        self.fns += [
            "/* egress, compute checksum and deparser: the new header length, -1 if egress dropped the",
            "   packet (unchanged), -2 if the packet could not be rewritten (broken) */",
            "/* a global function: the verifier checks it once, not per path of ingress reaching it */",
            "__attribute__((noinline))",
            "int egress_path(struct __sk_buff *skb, struct ctx *c, __u32 off, __u32 *macl) {",
            "    if (!c || !macl)",
            "        return -2;",
            "    __u8 b[64];",
            "    __u32 outoff = 0;",
            "    __u32 hlen = 0;",
            f"    __u32 ckoff[{MAX_PAYLOAD_CSUMS}] = {{}};  /* where each payload checksum field went */",
            "    __u32 ckat = 0;",
            *tail.lines,
            "    return (int)hlen;",
            "drop:",
            "    return -1;",
            "broken:",
            "    return -2;",
            "}",
            "",
        ]
        return CProgram(self.render(body.lines), self.tables, self.externs)

    def field_lists(self, meta: T.Struct, node: object) -> dict[int, list[str]]:
        """``@field_list(N)`` indices of the metadata struct's fields: what a clone keeps."""
        decl = next((d for d in self.prog.decls if isinstance(d, A.StructLike) and d.name == meta.name), None)
        out: dict[int, list[str]] = {}
        for f in decl.fields if decl is not None else ():
            for a in f.annotations:
                if a.name != "field_list":
                    continue
                for arg in a.args:
                    if not isinstance(arg, A.IntLit):
                        raise self.unsupported("a @field_list index that is not a literal", node)
                    out.setdefault(arg.value, []).append(f.name)
        return out

    def i2e_clone(self, fn: Fn, lists: dict[int, list[str]]) -> None:
        """An ingress-to-egress clone: the packet as received, parsed again into the second
        scratch slot with the field list's metadata, runs egress_path and is sent out of the
        session's port with bpf_clone_redirect; the original's deparser then replaces the
        clone's headers (``off`` = their length)."""
        fn("if (c->clone) {")
        fn.indent += 1
        fn("__u32 sess = c->clone - 1;")
        fn("__u32 one = 1;")
        fn("struct clone_to *ct = bpf_map_lookup_elem(&clones, &sess);")
        fn("struct ctx *c2 = 0;")
        fn("if (ct && bpf_map_update_elem(&scratch, &one, z, BPF_ANY) == 0)")
        fn("    c2 = bpf_map_lookup_elem(&scratch, &one);")
        fn("__u32 cport = ct ? ct->port : 0;")
        fn("__u32 *cif = bpf_map_lookup_elem(&ports_out, &cport);")
        fn("if (ct && c2 && cif) {")
        fn.indent += 1
        fn("__u32 off2 = 0;")
        fn("c2->SM.f_ingress_port = c->SM.f_ingress_port;")
        fn("c2->SM.f_packet_length = c->SM.f_packet_length;")
        fn("c2->SM.f_instance_type = 1;  /* PKT_INSTANCE_TYPE_INGRESS_CLONE */")
        self.run_parser(fn, "c2", "off2", "2")
        fn("ck_snapshot(c2);")
        fn("switch (c->clone_fl) {")
        for idx, names in sorted(lists.items()):
            copies = " ".join(f"c2->M.f_{n} = c->M.f_{n};" for n in names)
            fn(f"case {idx + 1}: {copies} break;")
        fn("default: break;")
        fn("}")
        fn("c2->SM.f_egress_port = cport;")
        fn("c2->SM.f_egress_rid = ct->rid;")
        fn("c2->SM.f_egress_spec = 0;")
        fn("int hl2 = egress_path(skb, c2, off2, &macl);")
        fn("if (hl2 == -2)")
        fn("    goto drop;")
        fn("if (hl2 >= 0) {")
        fn("    bpf_clone_redirect(skb, *cif, 0);")
        fn("    off = (__u32)hl2;")
        fn("}")
        fn.indent -= 1
        fn("}")
        fn.indent -= 1
        fn("}")

    def render(self, body: list[str]) -> str:
        head = [
            "/* generated by dysco softswitch (ebpf target); do not edit */",
            "#include <linux/bpf.h>",
            "#include <linux/pkt_cls.h>",
            "#include <bpf/bpf_helpers.h>",
            "#include <bpf/bpf_endian.h>",
            "",
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u32);"
            ' __uint(max_entries, 512); } ports_in SEC(".maps");',
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u32);"
            ' __uint(max_entries, 512); } ports_out SEC(".maps");',
            "struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64);"
            ' __uint(max_entries, 4); } stats SEC(".maps");',
            "",
            *RESIZE,
            "struct counter { __u64 packets; __u64 bytes; };",
            "/* clone sessions: session id -> the one replica's port and instance */",
            "struct clone_to { __u32 port; __u32 rid; };",
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, struct clone_to);"
            ' __uint(max_entries, 1024); } clones SEC(".maps");',
            "",
            "/* trTCM (RFC 2698) as v1model runs it; tokens are kept in units x 1e9 (rate x ns) */",
            "struct meter { struct bpf_spin_lock lock; __u32 configured; __u64 cir, cburst, pir, pburst;"
            " __u64 tc, tp, last; };",
            "#define NS 1000000000ULL",
            "static __always_inline __u64 refill(__u64 t, __u64 rate, __u64 burst, __u64 dt) {",
            "    __u64 cap = burst * NS;",
            "    if (t >= cap) return cap;",
            "    if (rate == 0) return t;",
            "    if (dt >= (cap - t) / rate) return cap;",
            "    return t + rate * dt;",
            "}",
            "static __always_inline __u64 meter_execute(void *map, __u32 idx, __u64 amount) {",
            "    struct meter *m = bpf_map_lookup_elem(map, &idx);",
            "    if (!m) return 0;",
            "    __u64 now = bpf_ktime_get_ns();",
            "    __u64 colour = 0;",
            "    __u64 a = amount * NS;",
            "    bpf_spin_lock(&m->lock);",
            "    if (m->configured) {",
            "        __u64 dt = now > m->last ? now - m->last : 0;",
            "        m->last = now;",
            "        __u64 tp = refill(m->tp, m->pir, m->pburst, dt);",
            "        __u64 tc = refill(m->tc, m->cir, m->cburst, dt);",
            "        if (tp < a) {",
            "            colour = 2;",
            "        } else if (tc < a) {",
            "            colour = 1;",
            "            tp -= a;",
            "        } else {",
            "            tp -= a;",
            "            tc -= a;",
            "        }",
            "        m->tp = tp;",
            "        m->tc = tc;",
            "    }",
            "    bpf_spin_unlock(&m->lock);",
            "    return colour;",
            "}",
            "",
            "static __always_inline void stat(__u32 i) {",
            "    __u64 *v = bpf_map_lookup_elem(&stats, &i);",
            "    if (v) __sync_fetch_and_add(v, 1);",
            "}",
            "",
        ]
        main = [
            "/* the packet's headers and metadata, one per CPU (too big for the 512-byte BPF stack),",
            "   reset from the never-written `zeros` by a map update (clang has no large memset for BPF) */",
            "struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __type(key, __u32); __type(value, struct ctx);"
            ' __uint(max_entries, 2); } scratch SEC(".maps");  /* 0: the packet, 1: its I2E clone */',
            "struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, struct ctx);"
            ' __uint(max_entries, 1); } zeros SEC(".maps");',
            "",
            'SEC("tc")',
            "int dysco_tc(struct __sk_buff *skb) {",
            "    __u32 ifindex = skb->ingress_ifindex;",
            "    __u32 *inport = bpf_map_lookup_elem(&ports_in, &ifindex);",
            "    if (!inport) {",
            f"        stat({STAT_PASS});",
            "        return TC_ACT_OK;",
            "    }",
            f"    stat({STAT_IN});",
            "    __u32 zero = 0;",
            "    struct ctx *z = bpf_map_lookup_elem(&zeros, &zero);",
            "    if (!z || bpf_map_update_elem(&scratch, &zero, z, BPF_ANY) < 0)",
            "        goto drop;",
            "    struct ctx *c = bpf_map_lookup_elem(&scratch, &zero);",
            "    if (!c)",
            "        goto drop;",
            "    __u8 b[64];",
            "    __u32 off = 0;",
            "    __u32 outoff = 0;",
            "    __u32 macl = 14;",
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


def generate(
    prog: A.Program, sm: SourceMap, types: dict[str, T.Type], errors: list[str], info: ir.ProgramInfo
) -> CProgram:
    """The C source and map layout of a checked program (:class:`Unsupported` for what it cannot do)."""
    return CGen(prog, sm, types, errors, info).generate()


__all__ = [
    "STAT_DROP",
    "STAT_IN",
    "STAT_OUT",
    "STAT_PASS",
    "CProgram",
    "ExternLayout",
    "KeyField",
    "TableLayout",
    "Unsupported",
    "generate",
]
