"""The compiler: AST -> checked program information + generated Python source.

Passes, in order (each a method below, run by :func:`compile_program`):

1. ``declare``: global types, constants, errors, externs, actions, functions, blocks;
2. ``classes``: one Python class per header/struct type;
3. ``instantiate``: the ``main`` package's six v1model blocks, recursively
   (sub-controls, sub-parsers), generating a function per parser state,
   action, table apply and control body, and recording tables and externs
   in :class:`~.ir.ProgramInfo`;
4. ``entry points``: names the v1model pipeline calls.

Statements and calls are in :mod:`.stmts`, expressions in :mod:`.exprs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dysco.errors import SourceError

from ..frontend import ast as A
from ..frontend import types as T
from ..frontend.preprocess import SourceMap
from . import ir
from .exprs import ExprGen
from .scope import Emitter, Scope, Sym, Val, fattr, pyname

UNSUPPORTED = "not supported by softswitch: "
V1_BLOCKS = ("PARSER", "VERIFY", "INGRESS", "EGRESS", "COMPUTE", "DEPARSER")


@dataclass
class BlockCtx:
    """One parser or control instance being compiled."""

    kind: str  # parser | control
    cp: str  # control-plane name prefix
    gen: str  # generated-name prefix
    params: list[str]  # Python parameter names of its generated functions (incl. "L")
    scope: Scope
    lfields: list[tuple[str, str]] = field(default_factory=list)  # (attr, zero-code)
    has_L: bool = False


@dataclass
class FnCtx:
    """One generated Python function body."""

    em: Emitter
    scope: Scope
    block: BlockCtx | None
    kind: str  # parser | control | action | function
    outs: list[str] = field(default_factory=list)
    ret: T.Type | None = None


@dataclass
class Compiled:
    source: str
    info: ir.ProgramInfo
    types: dict[str, T.Type]
    errors: list[str]
    entry: dict[str, str]


class Compiler:
    def __init__(self, prog: A.Program, sm: SourceMap) -> None:
        self.prog = prog
        self.sm = sm
        self.types: dict[str, T.Type] = {}
        self.struct_decls: dict[str, A.StructLike] = {}
        self.errors: list[str] = []
        self.match_kinds: set[str] = set()
        self.externs: dict[str, A.ExternDecl] = {}
        self.extern_funcs: dict[str, A.ExternFunc] = {}
        self.functions: dict[str, A.FunctionDecl] = {}
        self.compiled_functions: set[str] = set()
        self.blocks: dict[str, A.ParserDecl | A.ControlDecl] = {}
        self.globals = Scope()
        self.global_actions: dict[str, A.ActionDecl] = {}
        self.info = ir.ProgramInfo()
        self.out = Emitter()
        self.gen_names: set[str] = set()

    # ------------------------------------------------------------ errors
    def err(self, msg: str, pos: A.Pos) -> SourceError:
        line, col = pos if pos != A.NOPOS else (1, 1)
        return self.sm.error(msg, line, col)

    def error_code(self, name: str) -> int | None:
        return self.errors.index(name) if name in self.errors else None

    def unique(self, name: str) -> str:
        base, n = name, 1
        while name in self.gen_names:
            n += 1
            name = f"{base}_{n}"
        self.gen_names.add(name)
        return name

    # ------------------------------------------------------------ types
    def resolve_type(self, tr: A.TypeRef, scope: Scope | None = None) -> T.Type:
        if isinstance(tr, A.TBit):
            w = ExprGen(self, scope or self.globals).const_int(tr.width)
            if w <= 0 or w > 4096:
                raise self.err(f"bad width {w}", tr.pos)
            return T.Bits(w, tr.signed)
        if isinstance(tr, A.TVarbit):
            return T.Varbit(ExprGen(self, scope or self.globals).const_int(tr.width))
        if isinstance(tr, A.TSimple):
            return {"bool": T.BOOL, "error": T.ERROR, "string": T.STRING, "int": T.INT, "void": T.VOID}.get(
                tr.kind, T.TypeVar("_")
            )
        if isinstance(tr, A.TName):
            if scope is not None:
                sym = scope.lookup("type " + tr.name)
                if sym is not None:
                    return sym.type
            t = self.types.get(tr.name)
            if t is None:
                raise self.err(f"unknown type {tr.name!r}", tr.pos)
            if isinstance(t, T.Extern) and tr.args:
                return T.Extern(t.name, tuple(self.resolve_type(a, scope) for a in tr.args))
            return t
        if isinstance(tr, A.TStack):
            elem = self.resolve_type(tr.elem, scope)
            if not isinstance(elem, T.Struct) or elem.kind == "struct":
                raise self.err("a header stack's element must be a header or header_union", tr.pos)
            return T.Stack(elem, ExprGen(self, scope or self.globals).const_int(tr.size))
        if isinstance(tr, A.TTuple):
            return T.Tuple(tuple(self.resolve_type(a, scope) for a in tr.args))
        raise self.err(UNSUPPORTED + f"type {tr}", A.NOPOS)

    def zero(self, t: T.Type) -> str:
        if isinstance(t, T.Struct):
            return f"{pyname('S', t.name)}()"
        if isinstance(t, T.Stack):
            return f"HeaderStack([{pyname('S', t.elem.name)}() for _ in range({t.size})])"
        if t == T.BOOL:
            return "False"
        if isinstance(t, T.Enum) and t.underlying is None:
            return "0"
        return "0"

    # ------------------------------------------------------------ pass 1: declarations
    def declare(self) -> None:
        for d in self.prog.decls:
            self.declare_one(d)

    def declare_one(self, d: A.Decl) -> None:
        g = self.globals
        if isinstance(d, A.StructLike):
            fields: list[tuple[str, T.Type]] = []
            seen: set[str] = set()
            for f in d.fields:
                if f.name in seen:
                    raise self.err(f"duplicate field {f.name!r}", f.pos)
                seen.add(f.name)
                ft = self.resolve_type(f.type)
                if d.kind == "header" and not isinstance(ft, T.Bits | T.Varbit | T.Enum) and ft != T.BOOL:
                    raise self.err(
                        f"a header field must be bit<W>, int<W>, varbit<W> or bool, not {ft}", f.pos
                    )
                if isinstance(ft, T.Enum) and ft.underlying is None and d.kind == "header":
                    raise self.err("a header field cannot have a non-serializable enum type", f.pos)
                if d.kind == "header_union" and not (isinstance(ft, T.Struct) and ft.is_header):
                    raise self.err("a header_union member must be a header", f.pos)
                fields.append((f.name, ft))
            annos = tuple((a.name, tuple(getattr(x, "value", None) for x in a.args)) for a in d.annotations)
            self.types[d.name] = T.Struct(d.kind, d.name, tuple(fields), annos)
            self.struct_decls[d.name] = d
            if d.kind == "header":
                nbits = sum(T.bit_width(t) if not isinstance(t, T.Varbit) else 0 for _, t in fields)
                vb = [n for n, t in fields if isinstance(t, T.Varbit)]
                if len(vb) > 1:
                    raise self.err(UNSUPPORTED + "more than one varbit field in a header", d.pos)
                if nbits % 8:
                    raise self.err(UNSUPPORTED + f"header {d.name} is {nbits} bits, not whole bytes", d.pos)
        elif isinstance(d, A.EnumDecl):
            if d.underlying is None:
                self.types[d.name] = T.Enum(d.name, d.members)
            else:
                u = self.resolve_type(d.underlying)
                if not isinstance(u, T.Bits):
                    raise self.err("an enum's underlying type must be bit<W> or int<W>", d.pos)
                eg = ExprGen(self, g)
                vals = tuple(int(eg.expr(v, u).const or 0) for v in d.values)  # type: ignore[call-overload]
                self.types[d.name] = T.Enum(d.name, d.members, u, vals)
        elif isinstance(d, A.ErrorDecl):
            for m in d.members:
                if m not in self.errors:
                    self.errors.append(m)
        elif isinstance(d, A.MatchKindDecl):
            self.match_kinds.update(d.members)
        elif isinstance(d, A.TypedefDecl):
            self.types[d.name] = self.resolve_type(d.type)
        elif isinstance(d, A.ConstDecl):
            self.declare_const(d, g)
        elif isinstance(d, A.ExternDecl):
            self.externs[d.name] = d
            self.types[d.name] = T.Extern(d.name)
        elif isinstance(d, A.ExternFunc):
            self.extern_funcs[d.proto.name] = d
        elif isinstance(d, A.FunctionDecl):
            self.functions[d.proto.name] = d
        elif isinstance(d, A.ActionDecl):
            self.global_actions[d.name] = d
            g.syms[d.name] = Sym("action", d.name, T.VOID, obj=d)
        elif isinstance(d, A.ParserDecl | A.ControlDecl):
            kind = "parser" if isinstance(d, A.ParserDecl) else "control"
            self.types[d.name] = T.Block(kind, d.name)
            if d.locals is not None:
                self.blocks[d.name] = d
        elif isinstance(d, A.PackageDecl):
            self.types[d.name] = T.Block("package", d.name)
        elif isinstance(d, A.Instantiation):
            g.syms[d.name] = Sym("instance", d.name, T.VOID, obj=d)

    def declare_const(self, d: A.ConstDecl, scope: Scope) -> None:
        t = self.resolve_type(d.type, scope)
        v = ExprGen(self, scope).expr(d.value, t)
        if v.const is None:
            raise self.err(f"the value of constant {d.name} is not known at compile time", d.value.pos)
        if v.type != t:
            v = ExprGen(self, scope).coerce(v, t, d.value)
        scope.syms[d.name] = Sym("const", v.code, t, const=v.const)

    # ------------------------------------------------------------ pass 2: classes
    def classes(self) -> None:
        em = self.out
        for name, t in self.types.items():
            if not isinstance(t, T.Struct) or t.name != name:
                continue
            cls = pyname("S", name)
            attrs = [fattr(f) for f, _ in t.fields]
            vb = [f for f, ft in t.fields if isinstance(ft, T.Varbit)]
            slots = (["_v"] if t.is_header else []) + attrs + [fattr(f) + "__w" for f in vb]
            em(f"class {cls}:")
            # Scalar fields start as class attributes, so making a struct per packet costs one
            # allocation and only the fields a packet writes land in the instance (no __slots__).
            composite = [(a, ft) for (_, ft), a in zip(t.fields, attrs, strict=True) if T.is_composite(ft)]
            em(f"    _fields = {tuple(slots)!r}")
            if t.is_header:
                em("    _v = False")
            for (_, ft), a in zip(t.fields, attrs, strict=True):
                if not T.is_composite(ft):
                    em(f"    {a} = {self.zero(ft)}")
            for f in vb:
                em(f"    {fattr(f)}__w = 0")
            if composite:
                em("    def __init__(self):")
                for a, ft in composite:
                    em(f"        self.{a} = {self.zero(ft)}")
            em("    def _copy(self):")
            em(f"        o = {cls}.__new__({cls})")
            em("        o.__dict__.update(self.__dict__)")
            for a, _ in composite:
                em(f"        o.{a} = self.{a}._copy()")
            em("        return o")
            if t.is_header:
                self.header_codecs(t, cls)
            em("")

    def header_codecs(self, t: T.Struct, cls: str) -> None:
        em = self.out
        fixed = all(not isinstance(ft, T.Varbit) for _, ft in t.fields)
        widths = [(fattr(f), ft) for f, ft in t.fields]
        if fixed:
            nbits = sum(T.bit_width(ft) for _, ft in widths)
            nbytes = nbits // 8
            em("    def _ex(self, pk, too_short):")
            em("        o = pk.off")
            em(f"        e = o + {nbytes}")
            em("        if e > pk.n:")
            em("            raise ParserReject(too_short)")
            em("        pk.off = e")
            em("        x = int.from_bytes(pk.data[o:e], 'big')")
            shift = nbits
            for a, ft in widths:
                w = T.bit_width(ft)
                shift -= w
                v = f"(x >> {shift})" if shift else "x"
                v = f"({v} & {(1 << w) - 1})" if shift + w < nbits else v
                em(f"        self.{a} = {'bool(' + v + ')' if ft == T.BOOL else v}")
            em("        self._v = True")
            em("    def _bits(self):")
            parts = []
            shift = nbits
            for a, ft in widths:
                shift -= T.bit_width(ft)
                val = f"int(self.{a})" if ft == T.BOOL else f"self.{a}"
                parts.append(f"({val} << {shift})" if shift else val)
            em(f"        return {' | '.join(parts) or '0'}")
            em("    def _em(self, pk):")
            em("        if self._v:")
            em(f"            pk.out.append(self._bits().to_bytes({nbytes}, 'big'))")
            em(f"    _nbits = {nbits}")
            return
        # a header with one varbit field
        em("    def _ex_var(self, pk, too_short, vbits, bad_arg):")
        fixed_bits = sum(T.bit_width(ft) for _, ft in widths if not isinstance(ft, T.Varbit))
        vmax = next(ft.max_width for _, ft in widths if isinstance(ft, T.Varbit))
        em(f"        if vbits > {vmax} or vbits % 8:")
        em("            raise ParserReject(bad_arg)")
        em(f"        nbits = {fixed_bits} + vbits")
        em("        o = pk.off")
        em("        e = o + nbits // 8")
        em("        if e > pk.n:")
        em("            raise ParserReject(too_short)")
        em("        pk.off = e")
        em("        x = int.from_bytes(pk.data[o:e], 'big')")
        for a, ft in reversed(widths):
            if isinstance(ft, T.Varbit):
                em(f"        self.{a} = x & ((1 << vbits) - 1)")
                em(f"        self.{a}__w = vbits")
                em("        x >>= vbits")
            else:
                w = T.bit_width(ft)
                em(f"        self.{a} = x & {(1 << w) - 1}")
                em(f"        x >>= {w}")
        em("        self._v = True")
        em("    def _em(self, pk):")
        em("        if not self._v:")
        em("            return")
        em("        x = 0")
        em("        n = 0")
        for a, ft in widths:
            if isinstance(ft, T.Varbit):
                em(f"        x = (x << self.{a}__w) | self.{a}")
                em(f"        n += self.{a}__w")
            else:
                em(f"        x = (x << {T.bit_width(ft)}) | self.{a}")
                em(f"        n += {T.bit_width(ft)}")
        em("        pk.out.append(x.to_bytes(n // 8, 'big'))")

    # ------------------------------------------------------------ control-plane names
    @staticmethod
    def cp_name(prefix: str, local: str, annos: Sequence[A.Annotation]) -> str:
        a = A.annotation(tuple(annos), "name")
        if a is not None and a.args and isinstance(a.args[0], A.StrLit):
            n = a.args[0].value
            if n.startswith("."):
                return n[1:]
            return f"{prefix}.{n}" if prefix else n
        return f"{prefix}.{local}" if prefix else local


def compile_program(prog: A.Program, sm: SourceMap) -> Compiled:
    from .blocks import BlockCompiler

    c = BlockCompiler(prog, sm)
    c.declare()
    c.classes()
    entry = c.instantiate_main()
    c.controller_headers()
    return Compiled(c.out.text(), c.info, c.types, c.errors, entry)


__all__ = [
    "UNSUPPORTED",
    "V1_BLOCKS",
    "BlockCtx",
    "Compiled",
    "Compiler",
    "FnCtx",
    "Val",
    "compile_program",
    "fattr",
]
