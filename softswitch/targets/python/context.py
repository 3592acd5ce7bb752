"""The compiler's shared state: the program's types, scopes, contexts and control-plane IR.

The passes that use it, and their order, are in :mod:`.passes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dysco.errors import SourceError

from ... import ir
from ...frontend import ast as A
from ...frontend import types as T
from ...frontend.preprocess import SourceMap
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


__all__ = [
    "UNSUPPORTED",
    "V1_BLOCKS",
    "BlockCtx",
    "Compiled",
    "Compiler",
    "FnCtx",
    "Val",
    "fattr",
]
