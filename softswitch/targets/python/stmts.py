"""Statements and calls (methods, actions, functions, v1model externs)."""

from __future__ import annotations

from typing import Any

from ...frontend import ast as A
from ...frontend import types as T
from .context import UNSUPPORTED, FnCtx, fattr
from .exprs import ExprGen
from .externs import extern_function, extern_method
from .scope import Emitter, Sym, Val, pyname
from .values import ValueCompiler


class StmtCompiler(ValueCompiler):
    cur: FnCtx | None = None

    # ------------------------------------------------------------ statements
    def block(self, b: A.Block, ctx: FnCtx) -> None:
        inner = FnCtx(ctx.em, ctx.scope.child(), ctx.block, ctx.kind, ctx.outs, ctx.ret)
        n = len(ctx.em.lines)
        for s in b.stmts:
            self.stmt(s, inner)
        if len(ctx.em.lines) == n:
            ctx.em("pass")

    def body(self, s: A.Stmt, ctx: FnCtx) -> None:
        ctx.em.indent += 1
        n = len(ctx.em.lines)
        self.stmt(s, FnCtx(ctx.em, ctx.scope.child(), ctx.block, ctx.kind, ctx.outs, ctx.ret))
        if len(ctx.em.lines) == n:
            ctx.em("pass")
        ctx.em.indent -= 1

    def stmt(self, s: A.Stmt, ctx: FnCtx) -> None:
        self.cur = ctx
        em = ctx.em
        eg = ExprGen(self, ctx.scope)
        if isinstance(s, A.Assign):
            self.assign(s.lhs, eg.expr(s.rhs, self.lvalue_type(s.lhs, eg)), ctx, s.rhs)
        elif isinstance(s, A.CallStmt):
            self.call_stmt(s.call, ctx)
        elif isinstance(s, A.If):
            c = eg.expr(s.cond, T.BOOL)
            if c.type != T.BOOL:
                raise self.err(f"an if condition must be bool, not {c.type}", s.cond.pos)
            em(f"if {c.code}:")
            self.body(s.then, ctx)
            if s.other is not None:
                em("else:")
                self.body(s.other, ctx)
        elif isinstance(s, A.Block):
            self.block(s, ctx)
        elif isinstance(s, A.Exit):
            if ctx.kind == "parser":
                raise self.err("exit is not allowed in a parser", s.pos)
            em("raise PipelineExit()")
        elif isinstance(s, A.Return):
            if ctx.kind == "parser":
                raise self.err("return is not allowed in a parser", s.pos)
            if s.value is not None:
                if ctx.ret is None or ctx.ret == T.VOID:
                    raise self.err("this return cannot carry a value", s.pos)
                v = eg.coerce(eg.expr(s.value, ctx.ret), ctx.ret, s.value)
                self.emit_ret(ctx, v.code)
            else:
                self.emit_ret(ctx, None)
        elif isinstance(s, A.Switch):
            self.switch(s, ctx)
        elif isinstance(s, A.Empty):
            em("pass")
        elif isinstance(s, A.VarDecl):
            t = self.resolve_type(s.type, ctx.scope)
            code = em.tmp("v_" + s.name + "_")
            init = self.zero(t)
            if s.init is not None:
                v = eg.expr(s.init, t)
                init = self.value_for(v, t, s.init, eg)
            ctx.scope.syms[s.name] = Sym("var", code, t)
            em(f"{code} = {init}")
        elif isinstance(s, A.ConstDecl):
            self.declare_const(s, ctx.scope)
        else:
            raise self.err(UNSUPPORTED + f"statement {type(s).__name__}", getattr(s, "pos", A.NOPOS))

    def emit_ret(self, ctx: FnCtx, value: str | None) -> None:
        if ctx.outs:
            vals = ([value] if value is not None else []) + ctx.outs
            ctx.em(f"return ({', '.join(vals)},)")
        else:
            ctx.em(f"return {value}" if value is not None else "return None")

    def lvalue_type(self, lhs: A.Expr, eg: ExprGen) -> T.Type:
        return eg.expr(lhs).type

    def value_for(self, v: Val, t: T.Type, node: Any, eg: ExprGen) -> str:
        """Code for ``v`` stored into a location of type ``t`` (copies composites)."""
        if isinstance(t, T.Struct) and isinstance(v.type, T.Tuple):
            if isinstance(node, A.ListExpr):
                if len(node.items) != len(t.fields):
                    raise self.err(
                        f"{t.name} has {len(t.fields)} fields, the list has {len(node.items)}", node.pos
                    )
                parts = [
                    self.value_for(eg.expr(item, ft), ft, item, eg)
                    for item, (_, ft) in zip(node.items, t.fields, strict=True)
                ]
                return f"_mk({pyname('S', t.name)}, {t.is_header}, ({''.join(p + ', ' for p in parts)}))"
            raise self.err(f"cannot assign a {v.type} to {t}", node.pos)
        if v.type != t:
            v = eg.coerce(v, t, node)
        if T.is_composite(t) and not isinstance(node, A.Call):
            return f"{v.code}._copy()"
        return v.code

    def assign(self, lhs: A.Expr, v: Val, ctx: FnCtx, node: Any) -> None:
        eg = ExprGen(self, ctx.scope)
        if isinstance(lhs, A.Slice):
            base = eg.expr(lhs.expr)
            bt = eg.bits(base, lhs)
            hi, lo = eg.const_int(lhs.hi), eg.const_int(lhs.lo)
            if not (0 <= lo <= hi < bt.width):
                raise self.err(f"slice [{hi}:{lo}] out of range for {bt}", lhs.pos)
            m = (1 << (hi - lo + 1)) - 1
            v = eg.coerce(v, T.Bits(hi - lo + 1), node) if v.type != T.Bits(hi - lo + 1) else v
            self.check_lvalue(lhs.expr, ctx)
            ctx.em(f"{base.code} = ({base.code} & {bt.mask ^ (m << lo)}) | ({v.code} << {lo})")
            return
        self.check_lvalue(lhs, ctx)
        target = eg.expr(lhs)
        ctx.em(f"{target.code} = {self.value_for(v, target.type, node, eg)}")

    def switch(self, s: A.Switch, ctx: FnCtx) -> None:
        em = ctx.em
        eg = ExprGen(self, ctx.scope)
        v = eg.expr(s.expr)
        tmp = em.tmp("sw")
        em(f"{tmp} = {v.code}")
        pending: list[str] = []
        first = True
        default_seen = False
        for case in s.cases:
            if isinstance(case.label, A.Default):
                default_seen = True
                cond = "True"
            elif isinstance(v.type, T.ActionEnum):
                if not isinstance(case.label, A.Name):
                    raise self.err("a switch on action_run needs action names as labels", case.pos)
                info = self.info.tables[v.type.table]
                names = [r.name for r in info.actions if r.name.rsplit(".", 1)[-1] == case.label.name]
                names += [r.name for r in info.actions if r.name == case.label.name]
                if not names:
                    raise self.err(f"action {case.label.name} is not an action of {info.name}", case.pos)
                cond = f"{tmp} == {names[0]!r}"
            else:
                lv = eg.expr(case.label, v.type)
                if lv.const is None:
                    raise self.err("a switch label must be a constant", case.pos)
                if lv.type != v.type:
                    lv = eg.coerce(lv, v.type, case.label)
                cond = f"{tmp} == {lv.code}"
            pending.append(cond)
            if case.body is None:
                continue
            joined = " or ".join(f"({c})" for c in pending) if "True" not in pending else "True"
            em(f"{'if' if first else 'elif'} {joined}:")
            first = False
            pending = []
            self.body(case.body, ctx)
        del default_seen

    # ------------------------------------------------------------ calls
    def call_stmt(self, call: A.Call, ctx: FnCtx) -> None:
        code = self.call(call, ctx, ExprGen(self, ctx.scope), stmt=True)
        if code is not None and code.code:
            ctx.em(code.code)

    def call_expr(self, eg: ExprGen, call: A.Call) -> Val:
        if self.cur is None:
            raise self.err("a call is not allowed here", call.pos)
        ctx = FnCtx(self.cur.em, eg.scope, self.cur.block, self.cur.kind, self.cur.outs, self.cur.ret)
        v = self.call(call, ctx, eg, stmt=False)
        if v is None or v.type == T.VOID:
            raise self.err("this call has no value", call.pos)
        return v

    def call(self, call: A.Call, ctx: FnCtx, eg: ExprGen, stmt: bool) -> Val | None:
        f = call.func
        if isinstance(f, A.Member):
            if isinstance(f.expr, A.Name):
                sym = ctx.scope.lookup(f.expr.name)
                if sym is not None and sym.kind == "table":
                    if f.name != "apply" or call.args:
                        raise self.err("a table has only apply()", call.pos)
                    assert ctx.block is not None
                    return Val(f"{sym.code}({', '.join(ctx.block.params)})", sym.type)
                if sym is not None and sym.kind == "block":
                    return self.apply_block(sym, call, ctx, eg)
            if isinstance(f.expr, A.TypeMember) or (
                isinstance(f.expr, A.Name) and isinstance(self.types.get(f.expr.name), T.Block)
            ):
                raise self.err(UNSUPPORTED + "direct application of a control or parser type", call.pos)
            base = eg.expr(f.expr)
            return self.method(base, f, call, ctx, eg)
        if isinstance(f, A.Name):
            sym = ctx.scope.lookup(f.name)
            if sym is not None and sym.kind == "action":
                return self.call_action(f.name, call, ctx, eg)
            if f.name in self.functions:
                return self.call_function(self.functions[f.name], call, ctx, eg)
            if f.name in self.extern_funcs:
                return extern_function(self, f.name, call, ctx, eg)
            raise self.err(f"unknown function {f.name!r}", f.pos)
        raise self.err(UNSUPPORTED + "this kind of call", call.pos)

    def method(self, base: Val, f: A.Member, call: A.Call, ctx: FnCtx, eg: ExprGen) -> Val | None:
        t = base.type
        m = f.name
        if isinstance(t, T.Struct) and t.kind == "header":
            if m == "isValid":
                return Val(f"{base.code}._v", T.BOOL)
            if m in ("setValid", "setInvalid"):
                ctx.em(f"{base.code}._v = {m == 'setValid'}")
                if m == "setValid":
                    self.invalidate_siblings(f.expr, ctx, eg)
                return Val("", T.VOID)
        if isinstance(t, T.Struct) and t.kind == "header_union" and m == "isValid":
            parts = [f"{base.code}.{fattr(n)}._v" for n, _ in t.fields]
            return Val("(" + " or ".join(parts or ["False"]) + ")", T.BOOL)
        if isinstance(t, T.Stack) and m in ("push_front", "pop_front"):
            if len(call.args) != 1:
                raise self.err(f"{m} takes one argument", call.pos)
            n = eg.const_int(call.args[0])
            ctx.em(f"{base.code}.{m}({n}, {pyname('S', t.elem.name)})")
            return Val("", T.VOID)
        if isinstance(t, T.Extern):
            return extern_method(self, base, f, call, ctx, eg)
        raise self.err(f"{t} has no method {m!r}", call.pos)

    def bind_args(
        self, params: tuple[A.Param, ...], call: A.Call, ctx: FnCtx, eg: ExprGen, scope_types: Any = None
    ) -> tuple[list[str], list[tuple[A.Expr, T.Type]]]:
        """Argument codes and the (lvalue, type) pairs to copy back from scalar out/inout params."""
        args = list(call.args)
        if any(isinstance(a, A.NamedArg) for a in args):
            by_name = {a.name: a.value for a in args if isinstance(a, A.NamedArg)}
            args = [by_name[p.name] if p.name in by_name else A.Default(True) for p in params]
        if len(args) != len(params):
            raise self.err(f"expected {len(params)} arguments, got {len(args)}", call.pos)
        codes: list[str] = []
        outs: list[tuple[A.Expr, T.Type]] = []
        for p, a in zip(params, args, strict=True):
            t = self.resolve_type(p.type, scope_types or ctx.scope)
            if isinstance(a, A.Default):
                codes.append(self.zero(t))
                continue
            v = eg.expr(a, t)
            if p.direction in ("out", "inout"):
                self.check_lvalue(a, ctx)
                if v.type != t:
                    raise self.err(
                        f"argument for {p.direction} parameter {p.name} must be {t}, not {v.type}", a.pos
                    )
                if T.is_composite(t):
                    codes.append(v.code)
                else:
                    codes.append(v.code if p.direction == "inout" else self.zero(t))
                    outs.append((a, t))
            else:
                codes.append(self.value_for(v, t, a, eg))
        return codes, outs

    def copy_back(self, result: str, outs: list[tuple[A.Expr, T.Type]], skip: int, ctx: FnCtx) -> None:
        for i, (lv, t) in enumerate(outs):
            self.assign(lv, Val(f"{result}[{i + skip}]", t), ctx, lv)

    def void_call(self, code: str, outs: list[tuple[A.Expr, T.Type]], ctx: FnCtx) -> Val:
        """A call with no result: with out/inout arguments, run it as a statement and copy them back."""
        if not outs:
            return Val(code, T.VOID)
        tmp = ctx.em.tmp("r")
        ctx.em(f"{tmp} = {code}")
        self.copy_back(tmp, outs, 0, ctx)
        return Val("", T.VOID)

    def call_action(self, name: str, call: A.Call, ctx: FnCtx, eg: ExprGen) -> Val:
        if ctx.block is None:
            raise self.err("an action can only be called from a control", call.pos)
        fn, _, decl = self.resolve_action(name, ctx.block, call)  # type: ignore[attr-defined]
        codes, outs = self.bind_args(decl.params, call, ctx, eg)
        code = f"{fn}({', '.join(ctx.block.params + codes)})"
        return self.void_call(code, outs, ctx)

    def call_function(self, decl: A.FunctionDecl, call: A.Call, ctx: FnCtx, eg: ExprGen) -> Val:
        fn = pyname("FN", decl.proto.name)
        if fn not in self.compiled_functions:
            self.compiled_functions.add(fn)
            self.compile_function(decl, fn)
        ret = self.resolve_type(decl.proto.ret)
        codes, outs = self.bind_args(decl.proto.params, call, ctx, eg, self.globals)
        code = f"{fn}({', '.join(codes)})"
        if outs:
            tmp = ctx.em.tmp("r")
            ctx.em(f"{tmp} = {code}")
            skip = 0 if ret == T.VOID else 1
            self.copy_back(tmp, outs, skip, ctx)
            return Val(f"{tmp}[0]" if skip else "", ret)
        return Val(code, ret)

    def compile_function(self, decl: A.FunctionDecl, fn: str) -> None:
        if decl.proto.type_params:
            raise self.err(UNSUPPORTED + "generic functions", decl.pos)
        scope = self.globals.child()
        em = Emitter()
        names: list[str] = []
        outs: list[str] = []
        for p in decl.proto.params:
            t = self.resolve_type(p.type, scope)
            pn = pyname("a", p.name)
            names.append(pn)
            scope.syms[p.name] = Sym("var", pn, t)
            if p.direction in ("out", "inout") and not T.is_composite(t):
                outs.append(pn)
        em(f"def {fn}({', '.join(names)}):")
        em.indent = 1
        ret = self.resolve_type(decl.proto.ret)
        ctx = FnCtx(em, scope, None, "function", outs, ret)
        saved = self.cur
        self.block(decl.body, ctx)
        self.emit_ret(ctx, None if ret == T.VOID else "0")
        self.cur = saved
        self.out.lines.extend(em.lines)
        self.out("")

    def apply_block(self, sym: Sym, call: A.Call, ctx: FnCtx, eg: ExprGen) -> Val:
        decl = sym.obj
        assert isinstance(decl, A.ParserDecl | A.ControlDecl)
        params = tuple(p for p in decl.params if not self.is_packet(p, ctx))
        args = [a for a, p in zip(call.args, decl.params, strict=False) if not self.is_packet(p, ctx)]
        sub = A.Call(call.func, tuple(args), (), call.pos)
        codes, outs = self.bind_args(params, sub, ctx, eg)
        pk = ["pk"] if len(params) != len(decl.params) else []
        code = f"{sym.code}({', '.join(pk + codes)})"
        return self.void_call(code, outs, ctx)

    def is_packet(self, p: A.Param, ctx: FnCtx) -> bool:
        return isinstance(p.type, A.TName) and p.type.name in ("packet_in", "packet_out")
