"""Code generation for the core and v1model externs."""

from __future__ import annotations

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from .context import UNSUPPORTED, FnCtx, fattr
from .exprs import ExprGen
from .scope import Val
from .values import ValueCompiler

VOID = Val("", T.VOID)


def _nargs(c: ValueCompiler, call: A.Call, *counts: int) -> None:
    if len(call.args) not in counts:
        want = " or ".join(map(str, counts))
        raise c.err(f"expected {want} arguments, got {len(call.args)}", call.pos)


def _out(c: ValueCompiler, e: A.Expr, ctx: FnCtx, eg: ExprGen) -> Val:
    c.check_lvalue(e, ctx)
    return eg.expr(e)


def _uint(c: ValueCompiler, e: A.Expr, eg: ExprGen, width: int = 32) -> Val:
    v = eg.expr(e, T.Bits(width))
    if v.type == T.INT:
        v = eg.coerce(v, T.Bits(width), e)
    eg.bits(v, e)
    return v


def extern_method(
    c: ValueCompiler, base: Val, f: A.Member, call: A.Call, ctx: FnCtx, eg: ExprGen
) -> Val | None:
    t = base.type
    assert isinstance(t, T.Extern)
    m = f.name
    em = ctx.em
    code = c.error_code
    if t.name == "packet_in":
        if ctx.kind != "parser":
            raise c.err("packet_in methods can only be used in a parser", call.pos)
        too_short = code("PacketTooShort") or 0
        if m == "extract":
            _nargs(c, call, 1, 2)
            target = call.args[0]
            if isinstance(target, A.Member) and target.name == "next":
                stack = eg.expr(target.expr)
                if isinstance(stack.type, T.Stack):
                    em(f"if {stack.code}.nxt >= {stack.type.size}:")
                    em(f"    raise ParserReject({code('StackOutOfBounds') or 0})")
                    em(f"{stack.code}.a[{stack.code}.nxt]._ex(pk, {too_short})")
                    em(f"{stack.code}.nxt += 1")
                    return VOID
            h = _out(c, target, ctx, eg)
            if not (isinstance(h.type, T.Struct) and h.type.is_header):
                raise c.err(f"extract needs a header, not {h.type}", target.pos)
            varbit = any(isinstance(ft, T.Varbit) for _, ft in h.type.fields)
            if len(call.args) == 2:
                if not varbit:
                    raise c.err("the two-argument extract needs a header with a varbit field", call.pos)
                n = _uint(c, call.args[1], eg)
                bad = code("ParserInvalidArgument") or 0
                em(f"{h.code}._ex_var(pk, {too_short}, {n.code}, {bad})")
            else:
                if varbit:
                    raise c.err("a header with a varbit field needs the two-argument extract", call.pos)
                em(f"{h.code}._ex(pk, {too_short})")
            c.invalidate_siblings(target, ctx, eg)
            return VOID
        if m == "lookahead":
            if len(call.type_args) != 1 or call.args:
                raise c.err("lookahead takes one type argument and no arguments", call.pos)
            lt = c.resolve_type(call.type_args[0], ctx.scope)
            if isinstance(lt, T.Bits):
                return Val(f"_lookahead(pk, {lt.width}, {too_short})", lt)
            if isinstance(lt, T.Struct) and lt.is_header and all(isinstance(x, T.Bits) for _, x in lt.fields):
                return Val(f"_lookahead_hdr(pk, S_{lt.name}, {too_short})", lt)
            raise c.err(UNSUPPORTED + f"lookahead of {lt}", call.pos)
        if m == "advance":
            _nargs(c, call, 1)
            n = _uint(c, call.args[0], eg)
            em(f"_advance(pk, {n.code}, {too_short})")
            return VOID
        if m == "length":
            return Val("(pk.n * 8)", T.Bits(32))
        raise c.err(f"packet_in has no method {m!r}", call.pos)
    if t.name == "packet_out":
        if m != "emit":
            raise c.err(f"packet_out has no method {m!r}", call.pos)
        _nargs(c, call, 1)
        emit(c, eg.expr(call.args[0]), call.args[0], ctx)
        return VOID
    info = _instance(c, base, ctx)
    gen = base.code
    if t.name == "counter":
        _nargs(c, call, 1)
        em(f"{gen}.count({_uint(c, call.args[0], eg).code}, _PS.length)")
        return VOID
    if t.name == "direct_counter":
        _nargs(c, call, 0)
        if info.table is None:
            raise c.err(f"direct_counter {info.name} is not attached to a table", call.pos)
        return VOID
    if t.name == "meter" and m == "execute_meter":
        _nargs(c, call, 2)
        out = _out(c, call.args[1], ctx, eg)
        ot = eg.bits(out, call.args[1])
        em(f"{out.code} = {gen}.execute({_uint(c, call.args[0], eg).code}, _PS.length) & {ot.mask}")
        return VOID
    if t.name == "direct_meter" and m == "read":
        _nargs(c, call, 1)
        out = _out(c, call.args[0], ctx, eg)
        ot = eg.bits(out, call.args[0])
        em(f"{out.code} = _PS.meter_color & {ot.mask}")
        return VOID
    if t.name == "register":
        vt = T.Bits(info.width)
        if m == "read" and len(call.args) == 2:
            out = _out(c, call.args[0], ctx, eg)
            if out.type != vt and not (isinstance(out.type, T.Bits) and out.type.width == info.width):
                raise c.err(f"register {info.name} holds {vt}, not {out.type}", call.args[0].pos)
            em(f"{out.code} = {gen}.read({_uint(c, call.args[1], eg).code})")
            return VOID
        if m == "read" and len(call.args) == 1:
            return Val(f"{gen}.read({_uint(c, call.args[0], eg).code})", vt)
        if m == "write":
            _nargs(c, call, 2)
            v = eg.expr(call.args[1], vt)
            v = eg.coerce(v, vt, call.args[1]) if v.type != vt and v.type == T.INT else v
            em(f"{gen}.write({_uint(c, call.args[0], eg).code}, {v.code})")
            return VOID
    raise c.err(f"{t.name} has no method {m!r}", call.pos)


def _instance(c: ValueCompiler, base: Val, ctx: FnCtx) -> ir.ExternInfo:
    for info in c.info.externs.values():
        if info.gen == base.code:
            return info
    raise c.err(f"{base.type} is not an extern instance", (0, 0))


def emit(c: ValueCompiler, v: Val, node: A.Expr, ctx: FnCtx) -> None:
    t = v.type
    if isinstance(t, T.Struct):
        if t.is_header:
            ctx.em(f"{v.code}._em(pk)")
            return
        for n, ft in t.fields:
            emit(c, Val(f"{v.code}.{fattr(n)}", ft), node, ctx)
        return
    if isinstance(t, T.Stack):
        ctx.em(f"for _h in {v.code}.a:")
        ctx.em("    _h._em(pk)")
        return
    raise c.err(f"emit needs a header, a header stack or a struct of them, not {t}", node.pos)


def extern_function(c: ValueCompiler, name: str, call: A.Call, ctx: FnCtx, eg: ExprGen) -> Val:
    em = ctx.em
    args = call.args
    if name == "mark_to_drop":
        _nargs(c, call, 1)
        sm = _out(c, args[0], ctx, eg)
        em(f"{sm.code}.egress_spec = DROP_PORT")
        em(f"{sm.code}.mcast_grp = 0")
        return VOID
    if name == "verify":
        _nargs(c, call, 2)
        if ctx.kind != "parser":
            raise c.err("verify can only be used in a parser", call.pos)
        cond, err = eg.expr(args[0], T.BOOL), eg.expr(args[1])
        if cond.type != T.BOOL or err.type != T.ERROR:
            raise c.err("verify takes a bool and an error", call.pos)
        em(f"if not {cond.code}:")
        em(f"    raise ParserReject({err.code})")
        return VOID
    if name == "NoAction":
        return VOID
    if name == "hash":
        _nargs(c, call, 5)
        out = _out(c, args[0], ctx, eg)
        ot = eg.bits(out, args[0])
        algo = c.hash_algo(args[1], eg)
        base = eg.expr(args[2], ot)
        mx = eg.expr(args[4], ot)
        data, nbits = c.concat(c.flatten(args[3], eg))
        value = f"_hash_out({algo!r}, {base.code}, _to_bytes({data}, {nbits}), {mx.code})"
        em(f"{out.code} = {value} & {ot.mask}")
        return VOID
    if name == "random":
        _nargs(c, call, 3)
        out = _out(c, args[0], ctx, eg)
        ot = eg.bits(out, args[0])
        lo, hi = eg.expr(args[1], ot), eg.expr(args[2], ot)
        em(f"{out.code} = _random({lo.code}, {hi.code}) & {ot.mask}")
        return VOID
    if name == "digest":
        _nargs(c, call, 2)
        if call.type_args and isinstance(args[1], A.ListExpr):
            dt = c.resolve_type(call.type_args[0], ctx.scope)
            if not isinstance(dt, T.Struct) or len(dt.fields) != len(args[1].items):
                raise c.err(f"the digest list does not match {dt}", args[1].pos)
            vals = []
            for item, (_, ft) in zip(args[1].items, dt.fields, strict=True):
                iv = eg.expr(item, ft)
                vals.append((eg.coerce(iv, ft, item) if iv.type != ft else iv).code)
            d = c.digest_info(dt, args[1])
        else:
            v = eg.expr(args[1])
            d = c.digest_info(v.type, args[1])
            vals = [code for code, _ in c.flatten_val(v, args[1])]
        em(f"_PS.digests.append(({d.name!r}, ({''.join(x + ', ' for x in vals)})))")
        return VOID
    if name in (
        "verify_checksum",
        "verify_checksum_with_payload",
        "update_checksum",
        "update_checksum_with_payload",
    ):
        _nargs(c, call, 4)
        cond = eg.expr(args[0], T.BOOL)
        algo = c.hash_algo(args[3], eg)
        fields = c.flatten(args[1], eg)
        target = eg.expr(args[2])
        tt = eg.bits(target, args[2])
        data, nbits = c.concat(fields)
        payload = name.endswith("_with_payload")
        if algo == "csum16" and not payload and nbits.isdigit() and int(nbits) % 16 == 0:
            value = f"_csum16_int({data}, {int(nbits) // 8})"
        else:
            extra = " + _PS.payload" if payload else ""
            value = f"_hash({algo!r}, _to_bytes({data}, {nbits}){extra})"
        if name.startswith("verify"):
            em(f"if {cond.code} and ({value} & {tt.mask}) != {target.code}:")
            em("    _PS.checksum_error = 1")
        else:
            c.check_lvalue(args[2], ctx)
            em(f"if {cond.code}:")
            em(f"    {target.code} = {value} & {tt.mask}")
        return VOID
    if name in ("clone", "clone_preserving_field_list"):
        _nargs(c, call, 2 if name == "clone" else 3)
        session = _uint(c, args[1], eg)
        fl = str(eg.const_int(args[2])) if name != "clone" else "None"
        em(f"_PS.clone_session = {session.code}")
        em(f"_PS.clone_fields = {fl}")
        return VOID
    if name in ("resubmit_preserving_field_list", "recirculate_preserving_field_list"):
        _nargs(c, call, 1)
        attr = "resubmit" if name.startswith("resubmit") else "recirculate"
        em(f"_PS.{attr} = {eg.const_int(args[0])}")
        return VOID
    if name == "truncate":
        _nargs(c, call, 1)
        em(f"_PS.truncate = {_uint(c, args[0], eg).code}")
        return VOID
    if name in ("assert", "assume"):
        _nargs(c, call, 1)
        cond = eg.expr(args[0], T.BOOL)
        pos = c.sm.pos(*call.pos)
        em(f"if not {cond.code}:")
        em(f"    raise P4AssertionError({f'{name} failed at {pos.file}:{pos.line}'!r})")
        return VOID
    if name == "log_msg":
        for a in args[1:]:
            eg.expr(a)
        return VOID
    raise c.err(UNSUPPORTED + f"extern function {name}", call.pos)
