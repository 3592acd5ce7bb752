"""Tables: keys, actions, properties and ``const entries`` -> :class:`~.ir.TableInfo` + apply function."""

from __future__ import annotations

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from .actions import ActionCompiler
from .context import UNSUPPORTED, BlockCtx
from .exprs import ExprGen
from .scope import Emitter, Sym, pyname

MATCH_KINDS = ("exact", "lpm", "ternary", "range", "optional")


def compile_table(c: ActionCompiler, decl: A.TableDecl, blk: BlockCtx) -> None:
    cp = c.cp_name(blk.cp, decl.name, decl.annotations)
    gen = c.unique(pyname("T", cp))
    eg = ExprGen(c, blk.scope)
    keys: list[ir.KeyInfo] = []
    key_codes: list[str] = []
    for k in decl.keys:
        if k.match_kind not in c.match_kinds:
            raise c.err(f"unknown match kind {k.match_kind!r}", k.pos)
        if k.match_kind not in MATCH_KINDS:
            raise c.err(UNSUPPORTED + f"match kind {k.match_kind}", k.pos)
        v = eg.expr(k.expr)
        if v.type == T.BOOL:
            code, w = f"int({v.code})", 1
        elif isinstance(v.type, T.Bits) or (isinstance(v.type, T.Enum) and v.type.underlying is not None):
            code, w = v.code, T.bit_width(v.type)
        else:
            raise c.err(
                f"a table key must be bit<W>, int<W>, bool or a serializable enum, not {v.type}", k.pos
            )
        a = A.annotation(k.annotations, "name")
        name = a.args[0].value if a and a.args and isinstance(a.args[0], A.StrLit) else expr_text(k.expr)
        keys.append(ir.KeyInfo(name, w, k.match_kind))
        key_codes.append(code)
    if sum(1 for k in keys if k.match_kind == "lpm") > 1:
        raise c.err("a table can have at most one lpm key", decl.pos)
    refs: list[ir.TableActionRef] = []
    arg_widths: dict[str, list[int]] = {}
    for ref in decl.actions:
        if ref.args:
            raise c.err(UNSUPPORTED + "action arguments bound in a table's action list", ref.pos)
        fn, info, adecl = c.resolve_action(ref.name, blk, ref)
        if any(p.direction for p in adecl.params):
            raise c.err(f"action {ref.name} has directional parameters; a table cannot call it", ref.pos)
        scope = "DEFAULT_ONLY" if A.annotation(ref.annotations, "defaultonly") else ""
        scope = "TABLE_ONLY" if A.annotation(ref.annotations, "tableonly") else scope
        refs.append(ir.TableActionRef(info.name, scope, fn))
        arg_widths[info.name] = [p.width for p in info.params]
    by_local = {r.name.rsplit(".", 1)[-1]: r.name for r in refs} | {r.name: r.name for r in refs}

    def action_call(e: A.Expr, node: A.Expr | A.ActionRef) -> tuple[str, tuple[int, ...]]:
        if isinstance(e, A.Call) and isinstance(e.func, A.Name):
            name, args = e.func.name, e.args
        elif isinstance(e, A.Name):
            name, args = e.name, ()
        else:
            raise c.err("expected an action call", e.pos)
        sym = blk.scope.lookup(name)
        full = by_local.get(name)
        if sym is not None and sym.kind == "action":
            _, info, _ = c.resolve_action(name, blk, e)
            full = info.name
        if full is None or full not in arg_widths:
            raise c.err(f"action {name} is not in the actions of table {decl.name}", e.pos)
        widths = arg_widths[full]
        if len(args) != len(widths):
            raise c.err(f"action {name} takes {len(widths)} arguments, got {len(args)}", e.pos)
        vals = tuple(eg.const_int(a) & ((1 << w) - 1) for a, w in zip(args, widths, strict=True))
        return full, vals

    default_action, default_const = "", False
    default_args: tuple[int, ...] = ()
    size, timeout = 1024, False
    direct_counter = direct_meter = None
    for pname, pval, pconst in decl.props:
        if pname not in _PROPS:
            raise c.err(f"unknown table property {pname!r}", pval.pos)
        if pname == "default_action":
            default_action, default_args = action_call(pval, pval)
            default_const = pconst
        elif pname == "size":
            size = eg.const_int(pval)
        elif pname == "support_timeout":
            v = eg.expr(pval)
            if v.type != T.BOOL or v.const is None:
                raise c.err("support_timeout must be true or false", pval.pos)
            timeout = bool(v.const)
        elif pname in ("counters", "meters"):
            sym = blk.scope.lookup(pval.name) if isinstance(pval, A.Name) else None
            want = "direct_counter" if pname == "counters" else "direct_meter"
            if (
                sym is None
                or sym.kind != "extern"
                or not isinstance(sym.obj, ir.ExternInfo)
                or sym.obj.kind != want
            ):
                raise c.err(f"{pname} must name a {want} instance", pval.pos)
            sym.obj.table = cp
            if pname == "counters":
                direct_counter = sym.obj.name
            else:
                direct_meter = sym.obj.name
        else:
            raise c.err(UNSUPPORTED + f"table property {pname}", pval.pos)
    if not default_action:
        fn, noaction, _ = c.resolve_action("NoAction", blk, decl)
        if noaction.name not in arg_widths:
            refs.append(ir.TableActionRef(noaction.name, "DEFAULT_ONLY", fn))
            arg_widths[noaction.name] = []
        default_action = noaction.name
    entries = None
    if decl.entries is not None:
        entries = []
        n = len(decl.entries)
        for i, ent in enumerate(decl.entries):
            match = entry_match(c, eg, ent.keyset, keys, decl)
            action, args = action_call(
                A.Call(A.Name(ent.action.name, ent.action.pos), ent.action.args or (), (), ent.action.pos),
                ent.action,
            )
            prio = ent.priority if ent.priority is not None else n - i
            entries.append(ir.ConstEntryInfo(match, action, args, prio))
    annos = {a.name: tuple(getattr(x, "value", None) for x in a.args) for a in decl.annotations}
    tinfo = ir.TableInfo(
        cp, gen, keys, refs, default_action, default_args, default_const, size, timeout, entries,
        direct_counter, direct_meter, annos,
    )  # fmt: skip
    c.info.tables[cp] = tinfo
    em = Emitter()
    apply = pyname("TA", gen)
    em(f"def {apply}({', '.join(blk.params)}):")
    key = "(" + "".join(k + ", " for k in key_codes) + ")"
    em(f"    r = {gen}.lookup({key})")
    em(f"    r.fn({', '.join(blk.params)}, *r.args)")
    em("    return r")
    c.out.lines.extend(em.lines)
    c.out("")
    blk.scope.syms[decl.name] = Sym("table", apply, T.TableResult(cp), obj=tinfo)


_PROPS = frozenset({"default_action", "size", "support_timeout", "counters", "meters", "implementation"})


def entry_match(
    c: ActionCompiler, eg: ExprGen, ks: A.Expr, keys: list[ir.KeyInfo], decl: A.TableDecl
) -> list[tuple[str, int, int]]:
    items = ks.items if isinstance(ks, A.ListExpr) else (ks,)
    if len(items) != len(keys):
        raise c.err(f"entry has {len(items)} key values, table {decl.name} has {len(keys)} keys", ks.pos)
    out: list[tuple[str, int, int]] = []
    for item, k in zip(items, keys, strict=True):
        full = (1 << k.width) - 1
        t = T.Bits(k.width)
        if isinstance(item, A.Default):
            if k.match_kind == "exact":
                raise c.err("an exact key cannot be a wildcard", item.pos)
            out.append(("dontcare", 0, 0))
        elif isinstance(item, A.Mask):
            v, m = eg.const_int(item.value) & full, eg.const_int(item.mask) & full
            if k.match_kind == "lpm":
                plen = bin(m).count("1")
                if m != (full ^ ((1 << (k.width - plen)) - 1)):
                    raise c.err("an lpm mask must be a prefix", item.pos)
                out.append(("lpm", v & m, plen))
            elif k.match_kind == "ternary":
                out.append(("ternary", v & m, m))
            else:
                raise c.err(f"a mask is not allowed for a {k.match_kind} key", item.pos)
        elif isinstance(item, A.Range):
            if k.match_kind != "range":
                raise c.err(f"a range is not allowed for a {k.match_kind} key", item.pos)
            out.append(("range", eg.const_int(item.lo) & full, eg.const_int(item.hi) & full))
        else:
            kv = eg.expr(item, t)
            if not isinstance(kv.const, int):
                raise c.err("table entry keys must be constants", item.pos)
            value = int(kv.const) & full
            extra = {"lpm": k.width, "ternary": full, "range": value}.get(k.match_kind, 0)
            out.append((k.match_kind, value, extra))
    return out


def expr_text(e: A.Expr) -> str:
    """A key expression as p4c names its match field."""
    if isinstance(e, A.Name):
        return e.name
    if isinstance(e, A.Member):
        return f"{expr_text(e.expr)}.{e.name}"
    if isinstance(e, A.Index):
        return f"{expr_text(e.expr)}[{expr_text(e.index)}]"
    if isinstance(e, A.IntLit):
        return str(e.value)
    if isinstance(e, A.Slice):
        return f"{expr_text(e.expr)}[{expr_text(e.hi)}:{expr_text(e.lo)}]"
    if isinstance(e, A.Call):
        return f"{expr_text(e.func)}()"
    if isinstance(e, A.TypeMember):
        return f"{e.type_name}.{e.member}"
    return "key"
