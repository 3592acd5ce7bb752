"""AST of the P4_16 subset: frozen dataclasses, one per construct.

Every node has ``pos = (line, column)`` in the preprocessed text; the
:class:`~dysco.softswitch.frontend.preprocess.SourceMap` maps it to a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

Pos = tuple[int, int]
NOPOS: Pos = (0, 0)


@dataclass(frozen=True)
class Annotation:
    name: str
    args: tuple[Expr, ...] = ()
    pos: Pos = NOPOS


# ---------------------------------------------------------------- types (syntax)
@dataclass(frozen=True)
class TBit:
    width: Expr
    signed: bool = False
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TVarbit:
    width: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TSimple:
    """``bool``, ``error``, ``string``, ``int`` (arbitrary precision), ``void`` or ``_``."""

    kind: str
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TName:
    name: str
    args: tuple[TypeRef, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TStack:
    elem: TypeRef
    size: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TTuple:
    args: tuple[TypeRef, ...]
    pos: Pos = NOPOS


TypeRef = TBit | TVarbit | TSimple | TName | TStack | TTuple


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class IntLit:
    value: int
    width: int | None = None
    signed: bool = False
    pos: Pos = NOPOS


@dataclass(frozen=True)
class BoolLit:
    value: bool
    pos: Pos = NOPOS


@dataclass(frozen=True)
class StrLit:
    value: str
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Name:
    name: str
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TypeMember:
    """``Type.member`` (enum members) and ``error.member``."""

    type_name: str
    member: str
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Member:
    expr: Expr
    name: str
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Index:
    expr: Expr
    index: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Slice:
    expr: Expr
    hi: Expr
    lo: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Call:
    func: Expr
    args: tuple[Expr, ...]
    type_args: tuple[TypeRef, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class CtorCall:
    type: TypeRef
    args: tuple[Expr, ...]
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Unary:
    op: str
    expr: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Binary:
    op: str
    left: Expr
    right: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Cond:
    cond: Expr
    then: Expr
    other: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Cast:
    type: TypeRef
    expr: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Expr, ...]
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Mask:
    value: Expr
    mask: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Range:
    lo: Expr
    hi: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Default:
    """``default`` in a keyset, ``_`` (don't care) in a keyset or argument list."""

    dontcare: bool = False
    pos: Pos = NOPOS


@dataclass(frozen=True)
class NamedArg:
    name: str
    value: Expr
    pos: Pos = NOPOS


Expr = (
    IntLit
    | BoolLit
    | StrLit
    | Name
    | TypeMember
    | Member
    | Index
    | Slice
    | Call
    | CtorCall
    | Unary
    | Binary
    | Cond
    | Cast
    | ListExpr
    | Mask
    | Range
    | Default
    | NamedArg
)


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Assign:
    lhs: Expr
    rhs: Expr
    pos: Pos = NOPOS


@dataclass(frozen=True)
class CallStmt:
    call: Call
    pos: Pos = NOPOS


@dataclass(frozen=True)
class If:
    cond: Expr
    then: Stmt
    other: Stmt | None
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Block:
    stmts: tuple[Stmt, ...]
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Exit:
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Return:
    value: Expr | None
    pos: Pos = NOPOS


@dataclass(frozen=True)
class SwitchCase:
    label: Expr  # Default() for default
    body: Block | None
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Switch:
    expr: Expr
    cases: tuple[SwitchCase, ...]
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Empty:
    pos: Pos = NOPOS


@dataclass(frozen=True)
class VarDecl:
    type: TypeRef
    name: str
    init: Expr | None
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ConstDecl:
    type: TypeRef
    name: str
    value: Expr
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


Stmt = Assign | CallStmt | If | Block | Exit | Return | Switch | Empty | VarDecl | ConstDecl


# ---------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Field:
    type: TypeRef
    name: str
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class StructLike:
    """``header``, ``header_union`` or ``struct`` (``kind``)."""

    kind: str
    name: str
    fields: tuple[Field, ...]
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class EnumDecl:
    name: str
    members: tuple[str, ...]
    underlying: TypeRef | None = None
    values: tuple[Expr, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ErrorDecl:
    members: tuple[str, ...]
    pos: Pos = NOPOS


@dataclass(frozen=True)
class MatchKindDecl:
    members: tuple[str, ...]
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TypedefDecl:
    type: TypeRef
    name: str
    newtype: bool = False
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Param:
    direction: str  # "", "in", "out", "inout"
    type: TypeRef
    name: str
    default: Expr | None = None
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class MethodProto:
    name: str
    ret: TypeRef
    params: tuple[Param, ...]
    type_params: tuple[str, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ExternDecl:
    name: str
    type_params: tuple[str, ...]
    methods: tuple[MethodProto, ...]
    ctors: tuple[tuple[Param, ...], ...] = ()
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ExternFunc:
    proto: MethodProto
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class FunctionDecl:
    proto: MethodProto
    body: Block
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ActionDecl:
    name: str
    params: tuple[Param, ...]
    body: Block
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class Instantiation:
    type: TypeRef
    args: tuple[Expr, ...]
    name: str
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class SelectCase:
    keyset: Expr
    state: str
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ParserState:
    name: str
    stmts: tuple[Stmt, ...]
    select: tuple[Expr, ...] | None  # None: plain ``transition NAME``
    cases: tuple[SelectCase, ...]
    next: str = ""
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ParserDecl:
    name: str
    type_params: tuple[str, ...]
    params: tuple[Param, ...]
    ctor_params: tuple[Param, ...]
    locals: tuple[VarDecl | ConstDecl | Instantiation, ...] | None  # None: prototype
    states: tuple[ParserState, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class KeyElement:
    expr: Expr
    match_kind: str
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ActionRef:
    name: str
    args: tuple[Expr, ...] | None
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ConstEntry:
    keyset: Expr
    action: ActionRef
    priority: int | None = None
    pos: Pos = NOPOS


@dataclass(frozen=True)
class TableDecl:
    name: str
    keys: tuple[KeyElement, ...]
    actions: tuple[ActionRef, ...]
    entries: tuple[ConstEntry, ...] | None
    props: tuple[tuple[str, Expr, bool], ...]  # (name, value, const)
    annotations: tuple[Annotation, ...] = ()
    entries_const: bool = True
    pos: Pos = NOPOS


@dataclass(frozen=True)
class ControlDecl:
    name: str
    type_params: tuple[str, ...]
    params: tuple[Param, ...]
    ctor_params: tuple[Param, ...]
    locals: tuple[VarDecl | ConstDecl | Instantiation | ActionDecl | TableDecl, ...] | None
    body: Block | None = None
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


@dataclass(frozen=True)
class PackageDecl:
    name: str
    type_params: tuple[str, ...]
    params: tuple[Param, ...]
    annotations: tuple[Annotation, ...] = ()
    pos: Pos = NOPOS


Decl = (
    StructLike
    | EnumDecl
    | ErrorDecl
    | MatchKindDecl
    | TypedefDecl
    | ConstDecl
    | ExternDecl
    | ExternFunc
    | FunctionDecl
    | ActionDecl
    | Instantiation
    | ParserDecl
    | ControlDecl
    | PackageDecl
)


@dataclass(frozen=True)
class Program:
    decls: tuple[Decl, ...] = field(default_factory=tuple)


def annotation(annos: tuple[Annotation, ...], name: str) -> Annotation | None:
    for a in annos:
        if a.name == name:
            return a
    return None


def walk(node: object) -> Iterator[object]:
    """Every AST node under ``node`` (itself included; tuples are walked through), depth first."""
    yield node
    if isinstance(node, tuple):
        for item in node:
            yield from walk(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if isinstance(value, tuple) or dataclasses.is_dataclass(value):
                yield from walk(value)
