"""Parsers, controls, actions and tables: instantiation and function generation."""

from __future__ import annotations

from typing import Any

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from .actions import ActionCompiler
from .context import UNSUPPORTED, BlockCtx, FnCtx, fattr
from .exprs import ExprGen
from .scope import Emitter, Sym, Val, pyname
from .tables_gen import compile_table

_PROP_KNOWN = frozenset(
    {"size", "default_action", "support_timeout", "counters", "meters", "implementation", "max_group_size"}
)


class BlockCompiler(ActionCompiler):
    # ------------------------------------------------------------ main
    def instantiate_main(self) -> dict[str, str]:
        main = self.globals.lookup("main")
        if main is None or not isinstance(main.obj, A.Instantiation):
            raise self.err("the program has no `main` package instantiation", (1, 1))
        inst: A.Instantiation = main.obj
        if not isinstance(inst.type, A.TName) or inst.type.name != "V1Switch":
            raise self.err(UNSUPPORTED + "packages other than V1Switch", inst.pos)
        if len(inst.args) != 6:
            raise self.err("V1Switch takes six blocks", inst.pos)
        entry: dict[str, str] = {}
        kinds = ("parser", "control", "control", "control", "control", "control")
        roles = ("PARSER", "VERIFY", "INGRESS", "EGRESS", "COMPUTE", "DEPARSER")
        for role, kind, arg in zip(roles, kinds, inst.args, strict=True):
            decl, args, cp = self.block_of(arg)
            if (kind == "parser") != isinstance(decl, A.ParserDecl):
                raise self.err(f"V1Switch expects a {kind} here", getattr(arg, "pos", inst.pos))
            entry[role] = self.compile_block(decl, cp, args, top=True)
            if role == "PARSER":
                if len(decl.params) != 4:
                    raise self.err("the v1model parser takes four parameters", decl.pos)
                entry["H"] = pyname("S", str(self.resolve_type(decl.params[1].type)))
                mt = self.resolve_type(decl.params[2].type)
                entry["M"] = pyname("S", str(mt))
                if isinstance(mt, T.Struct):
                    self.preserved(mt)
        entry["SM"] = pyname("S", "standard_metadata_t")
        for role in ("PARSER", "VERIFY", "INGRESS", "EGRESS", "COMPUTE", "DEPARSER", "H", "M", "SM"):
            self.out(f"ENTRY_{role} = {entry[role]}")
        return entry

    def controller_headers(self) -> None:
        for name, d in self.struct_decls.items():
            a = A.annotation(d.annotations, "controller_header")
            if d.kind != "header" or a is None:
                continue
            if not a.args or not isinstance(a.args[0], A.StrLit):
                raise self.err('@controller_header needs a name, e.g. @controller_header("packet_in")', a.pos)
            t = self.types[name]
            assert isinstance(t, T.Struct)
            fields = [(n, T.bit_width(ft)) for n, ft in t.fields]
            self.info.controller_headers.append(ir.ControllerHeaderInfo(a.args[0].value, name, fields))

    def preserved(self, mt: T.Struct) -> None:
        for name, args in mt.annotations:
            del name, args
        decl = self.struct_decls.get(mt.name)
        if decl is None:
            return
        for f in decl.fields:
            for a in f.annotations:
                if a.name == "field_list":
                    for arg in a.args:
                        idx = ExprGen(self, self.globals).const_int(arg)
                        self.info.preserved_fields.setdefault(idx, []).append(fattr(f.name))

    def block_of(self, arg: A.Expr) -> tuple[A.ParserDecl | A.ControlDecl, tuple[A.Expr, ...], str]:
        if isinstance(arg, A.CtorCall) and isinstance(arg.type, A.TName):
            decl = self.blocks.get(arg.type.name)
            if decl is None:
                raise self.err(f"unknown parser or control {arg.type.name!r}", arg.pos)
            return decl, arg.args, decl.name
        if isinstance(arg, A.Name):
            sym = self.globals.lookup(arg.name)
            if sym is not None and isinstance(sym.obj, A.Instantiation) and isinstance(sym.obj.type, A.TName):
                decl = self.blocks.get(sym.obj.type.name)
                if decl is not None:
                    return decl, sym.obj.args, arg.name
        raise self.err("expected a parser or control instantiation", getattr(arg, "pos", A.NOPOS))

    # ------------------------------------------------------------ blocks
    def compile_block(
        self, decl: A.ParserDecl | A.ControlDecl, cp: str, ctor_args: tuple[A.Expr, ...], top: bool = False
    ) -> str:
        gen = self.unique(pyname("B", cp))
        scope = self.globals.child()
        for tp in decl.type_params:
            scope.syms["type " + tp] = Sym("type", tp, T.TypeVar(tp))
        if len(ctor_args) != len(decl.ctor_params):
            raise self.err(f"{decl.name} takes {len(decl.ctor_params)} constructor arguments", decl.pos)
        for p, a in zip(decl.ctor_params, ctor_args, strict=True):
            t = self.resolve_type(p.type, scope)
            v = ExprGen(self, self.globals).expr(a, t)
            if v.const is None:
                raise self.err(UNSUPPORTED + "constructor arguments that are not constants", a.pos)
            scope.syms[p.name] = Sym("const", v.code, t, const=v.const)
        kind = "parser" if isinstance(decl, A.ParserDecl) else "control"
        blk = BlockCtx(kind, cp, gen, [], scope)
        params: list[str] = []
        for p in decl.params:
            t = self.resolve_type(p.type, scope)
            if isinstance(t, T.Extern) and t.name in ("packet_in", "packet_out"):
                scope.syms[p.name] = Sym("packet", "pk", t)
                continue
            pn = pyname("p", p.name)
            params.append(pn)
            if T.is_composite(t):
                scope.syms[p.name] = Sym("var", pn, t)
            else:
                blk.has_L = True
                blk.lfields.append((pn, self.zero(t)))
                scope.syms[p.name] = Sym("var", f"L.{pn}", t)
        blk.params = [*params, "L"]
        outs = [
            p
            for p in decl.params
            if p.direction in ("out", "inout") and scope.syms[p.name].code.startswith("L.")
        ]
        pre = Emitter()  # L initialisation
        saved_cur = self.cur
        self.cur = FnCtx(pre, scope, blk, kind)
        assert decl.locals is not None
        for loc in decl.locals:
            if isinstance(loc, A.ConstDecl):
                self.declare_const(loc, scope)
            elif isinstance(loc, A.VarDecl):
                t = self.resolve_type(loc.type, scope)
                attr = pyname("v", loc.name)
                blk.has_L = True
                blk.lfields.append((attr, self.zero(t)))
                scope.syms[loc.name] = Sym("var", f"L.{attr}", t)
                if loc.init is not None:
                    v = ExprGen(self, scope).expr(loc.init, t)
                    pre(f"L.{attr} = {ExprGen(self, scope).coerce(v, t, loc.init).code}")
            elif isinstance(loc, A.Instantiation):
                self.instantiate(loc, blk)
                self.cur = FnCtx(pre, scope, blk, kind)
            elif isinstance(loc, A.ActionDecl):
                self.declare_action(loc, blk)
            elif isinstance(loc, A.TableDecl):
                compile_table(self, loc, blk)
        for loc in decl.locals:  # check actions no table or call uses, as p4c does
            if isinstance(loc, A.ActionDecl):
                self.resolve_action(loc.name, blk, loc)
        lcls = pyname("L", gen)
        if blk.has_L:
            self.out(f"class {lcls}:")
            self.out(f"    __slots__ = {tuple(a for a, _ in blk.lfields)!r}")
            self.out("    def __init__(self):")
            for attr, z in blk.lfields:
                self.out(f"        self.{attr} = {z}")
            if not blk.lfields:
                self.out("        pass")
        fn = pyname("F", gen)
        pk = ["pk"] if any(s.kind == "packet" for s in scope.syms.values()) else []
        sig = ", ".join(pk + params)
        em = Emitter()
        em(f"def {fn}({sig}):")
        em.indent = 1
        em(f"L = {lcls}()" if blk.has_L else "L = None")
        for p in decl.params:
            s = scope.syms[p.name]
            if s.code.startswith("L."):
                em(f"{s.code} = {s.code[2:]}")
        for line in pre.lines:
            em(line)
        ctx = FnCtx(em, scope.child(), blk, kind, [scope.syms[p.name].code for p in outs])
        if isinstance(decl, A.ParserDecl):
            self.compile_states(decl, blk, ctx)
        else:
            assert decl.body is not None
            self.block(decl.body, ctx)
        self.emit_return(ctx)
        self.out.lines.extend(em.lines)
        self.out("")
        self.cur = saved_cur
        return fn

    # ------------------------------------------------------------ parsers
    def compile_states(self, decl: A.ParserDecl, blk: BlockCtx, ctx: FnCtx) -> None:
        names = {s.name for s in decl.states}
        if "start" not in names:
            raise self.err(f"parser {decl.name} has no start state", decl.pos)
        timeout = self.error_code("ParserTimeout") or 0
        em = ctx.em
        em(f"s = {pyname('PS', blk.gen, 'start')}")
        em("n = 0")
        em("while s is not None:")
        em(f"    s = s({', '.join(['pk', *blk.params])})")
        em("    n += 1")
        em("    if n > 10000:")
        em(f"        raise ParserReject({timeout})")
        for st in decl.states:
            sem = Emitter()
            sem(f"def {pyname('PS', blk.gen, st.name)}({', '.join(['pk', *blk.params])}):")
            sem.indent = 1
            sctx = FnCtx(sem, ctx.scope.child(), blk, "parser")
            self.cur = sctx
            for s in st.stmts:
                self.stmt(s, sctx)
            self.cur = sctx
            if st.select is None:
                sem(f"return {self.state_ref(st.next, names, blk, st)}")
            else:
                self.select(st, names, blk, sctx)
            self.out.lines.extend(sem.lines)
            self.out("")

    def state_ref(self, name: str, names: set[str], blk: BlockCtx, node: Any) -> str:
        if name == "accept":
            return "None"
        if name == "reject":
            raise self.err(
                UNSUPPORTED
                + "an explicit transition to reject (p4c's bmv2 back end rejects it too); use verify()",
                node.pos,
            )
        if name not in names:
            raise self.err(f"unknown parser state {name!r}", node.pos)
        return pyname("PS", blk.gen, name)

    def select(self, st: A.ParserState, names: set[str], blk: BlockCtx, ctx: FnCtx) -> None:
        assert st.select is not None
        eg = ExprGen(self, ctx.scope)
        keys: list[Val] = []
        for k in st.select:
            v = eg.expr(k)
            if v.type == T.BOOL:
                v = Val(f"int({v.code})", T.Bits(1))
            if not isinstance(v.type, T.Bits | T.Enum):
                raise self.err(f"cannot select on a value of type {v.type}", k.pos)
            tmp = ctx.em.tmp("k")
            ctx.em(f"{tmp} = {v.code}")
            keys.append(Val(tmp, v.type))
        for case in st.cases:
            cond = self.keyset_cond(case.keyset, keys, ctx)
            target = self.state_ref(case.state, names, blk, case)
            if cond == "True":
                ctx.em(f"return {target}")
                return
            ctx.em(f"if {cond}:")
            ctx.em(f"    return {target}")
        ctx.em(f"raise ParserReject({self.error_code('NoMatch') or 0})")

    def keyset_cond(self, ks: A.Expr, keys: list[Val], ctx: FnCtx) -> str:
        items: tuple[A.Expr, ...]
        if isinstance(ks, A.ListExpr):
            items = ks.items
        elif isinstance(ks, A.Default):
            return "True"
        else:
            items = (ks,)
        if len(items) != len(keys):
            raise self.err(f"the keyset has {len(items)} values for {len(keys)} keys", ks.pos)
        eg = ExprGen(self, ctx.scope)
        conds: list[str] = []
        for item, key in zip(items, keys, strict=True):
            kt = key.type
            if isinstance(item, A.Default):
                continue
            if isinstance(item, A.Mask):
                v, m = eg.expr(item.value, kt), eg.expr(item.mask, kt)
                conds.append(f"({key.code} & {m.code}) == ({v.code} & {m.code})")
            elif isinstance(item, A.Range):
                lo, hi = eg.expr(item.lo, kt), eg.expr(item.hi, kt)
                conds.append(f"{lo.code} <= {key.code} <= {hi.code}")
            else:
                v = eg.expr(item, kt)
                v = eg.coerce(v, kt, item) if v.type != kt else v
                conds.append(f"{key.code} == {v.code}")
        return " and ".join(conds) or "True"

    # ------------------------------------------------------------ instances
    def instantiate(self, inst: A.Instantiation, blk: BlockCtx) -> None:
        t = self.resolve_type(inst.type, blk.scope)
        cp = self.cp_name(blk.cp, inst.name, inst.annotations)
        if isinstance(t, T.Block):
            decl = self.blocks.get(t.name)
            if decl is None:
                raise self.err(f"{t.name} has no body", inst.pos)
            fn = self.compile_block(decl, cp, inst.args)
            blk.scope.syms[inst.name] = Sym("block", fn, t, obj=decl)
            return
        if not isinstance(t, T.Extern):
            raise self.err(f"cannot instantiate {t}", inst.pos)
        gen = self.unique(pyname("X", cp))
        eg = ExprGen(self, blk.scope)
        kind = t.name
        annos = {a.name: tuple(getattr(x, "value", None) for x in a.args) for a in inst.annotations}
        if kind in ("counter", "meter", "register"):
            if not inst.args:
                raise self.err(f"{kind} needs a size", inst.pos)
            size = eg.const_int(inst.args[0])
            info = ir.ExternInfo(kind, cp, gen, size=size, annotations=annos)
            if kind == "register":
                vt = t.args[0] if t.args else None
                if not isinstance(vt, T.Bits):
                    raise self.err(UNSUPPORTED + "register values that are not bit<W>/int<W>", inst.pos)
                info.width = vt.width
            else:
                info.unit = self.enum_member_name(inst.args[1], eg) if len(inst.args) > 1 else "packets"
        elif kind in ("direct_counter", "direct_meter"):
            info = ir.ExternInfo(
                kind, cp, gen, unit=self.enum_member_name(inst.args[0], eg), annotations=annos
            )
        elif kind == "action_profile" or kind == "action_selector":
            raise self.err(UNSUPPORTED + kind, inst.pos)
        else:
            raise self.err(UNSUPPORTED + f"extern {kind}", inst.pos)
        self.info.externs[cp] = info
        blk.scope.syms[inst.name] = Sym("extern", gen, t, obj=info)

    def enum_member_name(self, e: A.Expr, eg: ExprGen) -> str:
        v = eg.expr(e)
        if not isinstance(v.type, T.Enum) or v.const is None:
            raise self.err("expected an enum member", e.pos)
        return v.type.members[int(v.const)]  # type: ignore[call-overload]
