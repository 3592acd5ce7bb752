"""Actions: one generated function per action and block, and the P4Info record of each."""

from __future__ import annotations

from typing import Any

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from .context import UNSUPPORTED, BlockCtx, FnCtx
from .scope import Emitter, Sym, pyname
from .stmts import StmtCompiler


class ActionCompiler(StmtCompiler):
    def emit_return(self, ctx: FnCtx, value: str | None = None) -> None:
        if ctx.outs:
            vals = ([value] if value is not None else []) + ctx.outs
            ctx.em(f"return ({', '.join(vals)},)")
        elif value is not None:
            ctx.em(f"return {value}")
        else:
            ctx.em("return None")

    # ------------------------------------------------------------ actions
    def declare_action(self, decl: A.ActionDecl, blk: BlockCtx) -> None:
        blk.scope.syms[decl.name] = Sym("action", decl.name, T.VOID, obj=(decl, blk.cp))

    def action_fn(
        self, decl: A.ActionDecl, cp_prefix: str, blk: BlockCtx, scope_parent: Any
    ) -> tuple[str, ir.ActionInfo]:
        """Generate (once per block) the function of an action; return its name and P4Info record."""
        cp = self.cp_name(cp_prefix, decl.name, decl.annotations)
        key = f"{blk.gen}:{cp}"
        fn = pyname("A", blk.gen, cp)
        info = self.info.actions.get(cp)
        if key in self.gen_names:
            assert info is not None
            return fn, info
        self.gen_names.add(key)
        scope = scope_parent.child()
        em = Emitter()
        dir_params = [p for p in decl.params if p.direction]
        data_params = [p for p in decl.params if not p.direction]
        if (
            dir_params
            and data_params
            and decl.params.index(data_params[0]) < decl.params.index(dir_params[-1])
        ):
            raise self.err("directionless action parameters must come last", decl.pos)
        names: list[str] = []
        outs: list[str] = []
        pinfo: list[ir.ActionParamInfo] = []
        for p in decl.params:
            t = self.resolve_type(p.type, scope)
            pn = pyname("a", p.name)
            names.append(pn)
            scope.syms[p.name] = Sym("var", pn, t)
            if p.direction in ("out", "inout") and not T.is_composite(t):
                outs.append(pn)
            if not p.direction:
                if not isinstance(t, T.Bits | T.Enum) and t != T.BOOL:
                    raise self.err(UNSUPPORTED + f"action data of type {t}", p.pos)
                pinfo.append(ir.ActionParamInfo(p.name, T.bit_width(t)))
        annos = {a.name: tuple(getattr(x, "value", None) for x in a.args) for a in decl.annotations}
        if info is None:
            info = ir.ActionInfo(cp, pinfo, fn, annos)
            self.info.actions[cp] = info
        em(f"def {fn}({', '.join(blk.params + names)}):")
        em.indent = 1
        ctx = FnCtx(em, scope, blk, "action", outs)
        saved_cur = self.cur
        self.block(decl.body, ctx)
        self.cur = saved_cur
        self.emit_return(ctx)
        self.out.lines.extend(em.lines)
        self.out("")
        return fn, info

    def resolve_action(self, name: str, blk: BlockCtx, node: Any) -> tuple[str, ir.ActionInfo, A.ActionDecl]:
        sym = blk.scope.lookup(name)
        if sym is None or sym.kind != "action":
            raise self.err(f"unknown action {name!r}", node.pos)
        if isinstance(sym.obj, tuple):
            decl, prefix = sym.obj
        else:
            decl, prefix = sym.obj, ""
        fn, info = self.action_fn(decl, prefix, blk, self.globals if not prefix else blk.scope)
        return fn, info, decl
