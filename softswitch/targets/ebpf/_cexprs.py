"""Expressions, lvalues, types and widths (the base of the C generator)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from ...frontend.preprocess import SourceMap
from ._clayout import (
    MAX_WIDTH,
    ExternLayout,
    Fn,
    PayloadCsum,
    TableLayout,
    Unsupported,
    bytes_expr,
    c_ident,
    mask,
)


class CExprs(ABC):
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
        self.done_actions: set[str] = set()
        self.done_tables: set[str] = set()
        self.externs: dict[str, ExternLayout] = {}
        self.done_structs: set[str] = set()
        self.kind = ""  # the v1model block being generated (parser, verify, ingress, ...)
        self.clones_used = False  # an I2E clone call was generated
        self.parser_run: tuple[str, int, int, int] = ("", 0, 0, 0)  # step function, accept, reject, timeout
        self.parser_order: dict[str, int] = {}  # parser states in reverse postorder (forward edges jump)
        self.payload_csums: list[PayloadCsum] = []

    def unsupported(self, what: str, node: object) -> Unsupported:
        pos = getattr(node, "pos", A.NOPOS)
        where = self.sm.pos(pos[0] if pos != A.NOPOS else 1, 1)
        return Unsupported(f"not supported by the ebpf backend: {what} ({where.file}:{where.line})")

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
        lines = [f"struct s_{c_ident(t.name)} {{"]
        if t.is_header:
            lines.append("    __u8 _v;")
        for n, ft in t.fields:
            if isinstance(ft, T.Struct):
                lines.append(f"    struct s_{c_ident(ft.name)} f_{n};")
            elif isinstance(ft, T.Stack):
                lines.append(f"    struct s_{c_ident(ft.elem.name)} f_{n}[{ft.size}];")
                lines.append(f"    __u32 f_{n}__n;  /* nextIndex */")
            else:
                self.width(ft, node)
                lines.append(f"    __u64 f_{n};")
        if not t.fields and not t.is_header:
            lines.append("    __u8 _empty;")
        lines.append("};")
        self.out += lines

    def error_code(self, name: str, node: object) -> int:
        if name not in self.errors:
            raise self.unsupported(f"error.{name}", node)
        return self.errors.index(name)

    def cp_name(self, blk_name: str, local: str, annos: tuple[A.Annotation, ...]) -> str:
        a = A.annotation(annos, "name")
        if a is not None and a.args and isinstance(a.args[0], A.StrLit):
            n = a.args[0].value
            return n[1:] if n.startswith(".") else f"{blk_name}.{n}"
        return f"{blk_name}.{local}"

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

    def reject(self, fn: Fn, node: object) -> str:
        """The C statement that ends the parser in its reject state."""
        if not fn.reject:
            raise self.unsupported("a parser operation outside a parser", node)
        return fn.reject

    def lookahead(self, e: A.Call, fn: Fn) -> tuple[str, int]:
        """``pkt.lookahead<bit<W>>()``: the next W bits, not consumed (read before the statement)."""
        t = self.resolve(e.type_args[0], e)
        w = self.width(t, e)
        nb = (w + 7) // 8
        var = f"la{len(fn.lines)}"
        fn(f"__u64 {var} = 0;")
        fn(f"if (pkt_load(skb, off, b, {nb}) < 0) {{")
        fn(f"    c->SM.f_parser_error = {self.error_code('PacketTooShort', e)};")
        fn(f"    {self.reject(fn, e)}")
        fn("}")
        sh = 8 * nb - w
        v = bytes_expr("b", 0, nb)
        fn(f"{var} = {f'({v} >> {sh})' if sh else v} & {mask(w)};")
        return var, w

    def lvalue(self, e: A.Expr, fn: Fn) -> tuple[str, T.Type]:
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

    def expr_type(self, e: A.Expr, fn: Fn) -> T.Type:
        return self.lvalue(e, fn)[1]

    def expr(self, e: A.Expr, fn: Fn, want: int | None = None) -> tuple[str, int | None]:
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
                return f"((~{uv}) & {mask(w)})", w
            if e.op == "-" and w:
                return f"((-{uv}) & {mask(w)})", w
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
                return f"(({lv} {e.op} {rv}) & {mask(w)})", w
            raise self.unsupported(f"operator {e.op}", e)
        if isinstance(e, A.Cast):
            t = self.resolve(e.type, e)
            w = self.width(t, e)
            cv, _ = self.expr(e.expr, fn, w)
            return f"(({cv}) & {mask(w)})", w
        if isinstance(e, A.Slice) and isinstance(e.hi, A.IntLit) and isinstance(e.lo, A.IntLit):
            sv, _ = self.expr(e.expr, fn)
            w = e.hi.value - e.lo.value + 1
            return f"(({sv} >> {e.lo.value}) & {mask(w)})", w
        if isinstance(e, A.Cond):
            cv, _ = self.expr(e.cond, fn)
            tv, tw = self.expr(e.then, fn, want)
            ov, ow = self.expr(e.other, fn, tw or want)
            return f"({cv} ? {tv} : {ov})", tw or ow
        raise self.unsupported(f"expression {type(e).__name__}", e)

    @abstractmethod
    def call(self, call: A.Call, fn: Fn) -> str | None:
        """A call statement (or a table apply inside an expression): :mod:`._cstmts`."""
