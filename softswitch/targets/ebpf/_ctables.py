"""Tables: maps (HASH, LPM_TRIE, or an ARRAY scanned with bpf_loop), apply functions, action_run."""

from __future__ import annotations

from ...frontend import ast as A
from ._clayout import Blk, Fn, KeyField, TableLayout, c_ident
from ._cstmts import CStmts


class CTables(CStmts):
    def apply_table(self, t: A.TableDecl, fn: Fn) -> str:
        """The name of the table's apply function: it returns ``(action index + 1) << 1 | hit``."""
        blk = fn.blk
        decl = self.decls[next(n for n in self.decls if c_ident(n) == blk.cname)]
        cp = self.cp_name(decl.name, t.name, t.annotations)
        info = self.info.tables.get(cp)
        if info is None:
            raise self.unsupported(f"table {t.name} (not in the program's control-plane IR)", t)
        name = f"apply_{c_ident(cp)}"
        if name in self.done_tables:
            return name
        self.done_tables.add(name)
        if info.direct_counter:
            raise self.unsupported("direct counters", t)
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
            max_params, info.default_action, info.default_args, info.support_timeout,
        )  # fmt: skip
        self.tables[cp] = lay
        nargs = max(max_params, 1)
        hit_ns = " __u64 hit_ns;" if info.support_timeout else ""
        body = Fn([], blk)
        if scan:
            nk = max(len(keys), 1)
            self.out += [
                f"/* table {cp} (ternary/range/optional: a bounded scan of {info.size} slots) */",
                f"struct v{idx} {{ __u32 valid; __u32 prio; __u32 action; __u32 pad;"
                f" __u64 lo[{nk}]; __u64 hi[{nk}]; __u64 args[{nargs}];{hit_ns} }};",
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
            # an entry's memory is allocated when it is written: a session table of 2^20 entries
            # costs its buckets (16 bytes a slot) until it fills (LPM_TRIE needs the flag anyway)
            flags = " __uint(map_flags, BPF_F_NO_PREALLOC);"
            pre = "__u32 prefixlen; " if kind == "lpm" else ""
            self.out += [
                f"/* table {cp} ({kind}, size {info.size}) */",
                f"struct k{idx} {{ {pre}__u8 k[{max(nkey, 1)}]; }};",
                f"struct v{idx} {{ __u32 action; __u32 pad; __u64 args[{nargs}];{hit_ns} }};",
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
        if info.support_timeout:
            # the last hit, for the server's idle-timeout sweep (every hit writes it)
            body("if (v)")
            body("    v->hit_ns = bpf_ktime_get_ns();")
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

    def switch_on_action(self, s: A.Switch, fn: Fn) -> None:
        call = s.expr.expr if isinstance(s.expr, A.Member) and s.expr.name == "action_run" else None
        if not (isinstance(call, A.Call) and isinstance(call.func, A.Member) and call.func.name == "apply"):
            raise self.unsupported("switch on anything but table.apply().action_run", s)
        tname = call.func.expr.name if isinstance(call.func.expr, A.Name) else ""
        tdecl = fn.blk.tables.get(tname)
        if tdecl is None:
            raise self.unsupported(f"switch on table {tname}", s)
        apply = self.apply_table(tdecl, fn)
        decl = self.decls[next(n for n in self.decls if c_ident(n) == fn.blk.cname)]
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

    def find_action(self, cp: str, blk: Blk, blk_name: str) -> A.ActionDecl | None:
        for a in blk.actions.values():
            if self.cp_name(blk_name, a.name, a.annotations) == cp:
                return a
        return None
