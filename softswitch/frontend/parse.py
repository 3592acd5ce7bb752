"""Parse preprocessed P4 text into the AST (:mod:`.ast`)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer

from . import _lexer as lx
from . import ast as A
from .compile_time import check_division
from .declarations import check_unique_names
from .extern_calls import check_extern_calls
from .preprocess import SourceMap
from .stack_ops import check_stack_ops

# P4 constructs outside the subset: named in the error instead of a bare syntax error
UNSUPPORTED_WORDS = frozenset({"value_set", "action_selector", "this", "abstract", "list"})

_CLASSES = frozenset(
    {"INTEGER", "STRING_LITERAL", "TYPE_IDENTIFIER", "GENERIC_IDENTIFIER", "IDENTIFIER", "SHR_GT"}
)


class _P4Lexer(Lexer):
    def __init__(self, lexer_conf: Any) -> None:
        self.keywords: frozenset[str] = frozenset()
        self.names: dict[str, str] = {}
        for term in lexer_conf.terminals:
            pat = term.pattern
            if pat.type == "str":
                self.names[pat.value] = term.name
        self.keywords = frozenset(v for v in self.names if v[:1].isalpha() or v[:1] == "_")
        self.keywords = self.keywords - {"_"}

    def lex(self, text: str) -> Iterator[Token]:  # type: ignore[override]
        try:
            toks = lx.tokenize(text)
        except lx.LexError as exc:
            raise UnexpectedCharacters(text, 0, exc.line, exc.column) from None  # type: ignore[no-untyped-call]
        type_names = lx.collect_type_names(toks, self.keywords)
        for kind, t in lx.classify(toks, self.keywords, type_names):
            if t.text == "_" and kind == "IDENTIFIER":
                kind = "_"
            name = self.names.get(kind) if kind not in _CLASSES else kind
            if name is None:
                raise UnexpectedCharacters(text, t.pos, t.line, t.column)  # type: ignore[no-untyped-call]
            yield Token(
                name, t.text, t.pos, t.line, t.column, t.line, t.column + len(t.text), t.pos + len(t.text)
            )


@functools.cache
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "p4.lark").read_text()
    return Lark(grammar, parser="lalr", lexer=_P4Lexer, propagate_positions=True, maybe_placeholders=True)


def _pos(meta_or_tok: Any) -> A.Pos:
    line = getattr(meta_or_tok, "line", None)
    col = getattr(meta_or_tok, "column", None)
    if line is None or col is None:
        return A.NOPOS
    return (int(line), int(col))


def parse_int(text: str) -> A.IntLit:
    """A P4 integer literal (``8w5``, ``0x0800``, ``4s-1`` is not a literal)."""
    t = text.replace("_", "")
    width: int | None = None
    signed = False
    for sep in ("w", "s"):
        if sep in t and not t.lower().startswith("0x"):
            head, _, rest = t.partition(sep)
            if head.isdigit():
                width, signed, t = int(head), sep == "s", rest
                break
    low = t.lower()
    if low.startswith("0x"):
        value = int(low[2:], 16)
    elif low.startswith("0b"):
        value = int(low[2:], 2)
    elif low.startswith("0o"):
        value = int(low[2:], 8)
    elif low.startswith("0d"):
        value = int(low[2:], 10)
    else:
        value = int(low, 10)
    return A.IntLit(value, width, signed)


def _annos(items: list[Any]) -> tuple[A.Annotation, ...]:
    return tuple(i for i in items if isinstance(i, A.Annotation))


def _rest(items: list[Any]) -> list[Any]:
    return [i for i in items if not isinstance(i, A.Annotation)]


_BIN: Mapping[str, str] = MappingProxyType({
    "lor": "||", "land": "&&", "eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">=",
    "bor": "|", "bxor": "^", "band": "&", "shl": "<<", "shr": ">>", "add": "+", "sub": "-",
    "sadd": "|+|", "ssub": "|-|", "concat": "++", "mul": "*", "div": "/", "mod": "%",
})  # fmt: skip
_UN: Mapping[str, str] = MappingProxyType({"lnot": "!", "bnot": "~", "neg": "-", "pos": "+"})


@v_args(meta=True)
class _ToAst(Transformer[Token, A.Program]):
    def __default__(self, data: str, children: list[Any], meta: Any) -> Any:
        if data in _BIN:
            return A.Binary(_BIN[data], children[0], children[-1], _pos(meta))
        if data in _UN:
            return A.Unary(_UN[data], children[0], _pos(meta))
        return Tree(data, children, meta)

    # names
    def name(self, meta: Any, c: list[Token]) -> str:
        return str(c[0])

    def kw_apply(self, meta: Any, c: list[Any]) -> str:
        return "apply"

    def kw_key(self, meta: Any, c: list[Any]) -> str:
        return "key"

    def kw_actions(self, meta: Any, c: list[Any]) -> str:
        return "actions"

    def kw_entries(self, meta: Any, c: list[Any]) -> str:
        return "entries"

    def kw_state(self, meta: Any, c: list[Any]) -> str:
        return "state"

    def kw_type(self, meta: Any, c: list[Any]) -> str:
        return "type"

    def kw_priority(self, meta: Any, c: list[Any]) -> str:
        return "priority"

    def member_name(self, meta: Any, c: list[Any]) -> str:
        return str(c[0])

    def fname(self, meta: Any, c: list[Any]) -> str:
        return str(c[0])

    def annotation(self, meta: Any, c: list[Any]) -> A.Annotation:
        args = c[1] if len(c) > 1 and c[1] is not None else ()
        return A.Annotation(c[0], tuple(args), _pos(meta))

    def annotation_args(self, meta: Any, c: list[Any]) -> tuple[A.Expr, ...]:
        return tuple(x for x in c if x is not None)

    # types
    def t_bool(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TSimple("bool", _pos(meta))

    def t_error(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TSimple("error", _pos(meta))

    def t_string(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TSimple("string", _pos(meta))

    def t_int(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TSimple("int", _pos(meta))

    def t_void(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TSimple("void", _pos(meta))

    def t_dontcare(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TSimple("_", _pos(meta))

    def t_bit1(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TBit(A.IntLit(1), False, _pos(meta))

    def t_bit(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TBit(c[0], False, _pos(meta))

    def t_signed(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TBit(c[0], True, _pos(meta))

    def t_varbit(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TVarbit(c[0], _pos(meta))

    def width(self, meta: Any, c: list[Any]) -> A.Expr:
        x = c[0]
        if isinstance(x, Token):
            return parse_int(str(x))
        return x  # type: ignore[no-any-return]

    def rangle(self, meta: Any, c: list[Any]) -> None:
        return None

    def named_type(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TName(str(c[0]), (), _pos(meta))

    def specialized_type(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TName(str(c[0]), tuple(c[1]), _pos(meta))

    def type_args(self, meta: Any, c: list[Any]) -> list[A.TypeRef]:
        return list(c)

    def stack_type(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TStack(c[0], c[1], _pos(meta))

    def tuple_type(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return A.TTuple(tuple(c[0]), _pos(meta))

    def type_or_void(self, meta: Any, c: list[Any]) -> A.TypeRef:
        return c[0]  # type: ignore[no-any-return]

    def type_params(self, meta: Any, c: list[Any]) -> tuple[str, ...]:
        return tuple(str(x) for x in c if isinstance(x, Token))

    # type declarations
    def _structlike(self, kind: str, meta: Any, c: list[Any]) -> A.StructLike:
        rest = _rest(c)
        return A.StructLike(kind, str(rest[0]), tuple(rest[1:]), _annos(c), _pos(meta))

    def header_decl(self, meta: Any, c: list[Any]) -> A.StructLike:
        return self._structlike("header", meta, c)

    def union_decl(self, meta: Any, c: list[Any]) -> A.StructLike:
        return self._structlike("header_union", meta, c)

    def struct_decl(self, meta: Any, c: list[Any]) -> A.StructLike:
        return self._structlike("struct", meta, c)

    def struct_field(self, meta: Any, c: list[Any]) -> A.Field:
        rest = _rest(c)
        return A.Field(rest[0], rest[1], _annos(c), _pos(meta))

    def enum_decl(self, meta: Any, c: list[Any]) -> A.EnumDecl:
        rest = _rest(c)
        return A.EnumDecl(str(rest[0]), tuple(rest[1:]), None, (), _annos(c), _pos(meta))

    def serenum_decl(self, meta: Any, c: list[Any]) -> A.EnumDecl:
        rest = _rest(c)
        members = rest[2:]
        return A.EnumDecl(
            str(rest[1]),
            tuple(m[0] for m in members),
            rest[0],
            tuple(m[1] for m in members),
            _annos(c),
            _pos(meta),
        )

    def enum_member(self, meta: Any, c: list[Any]) -> tuple[str, A.Expr]:
        return (c[0], c[1])

    def error_decl(self, meta: Any, c: list[Any]) -> A.ErrorDecl:
        return A.ErrorDecl(tuple(c), _pos(meta))

    def match_kind_decl(self, meta: Any, c: list[Any]) -> A.MatchKindDecl:
        return A.MatchKindDecl(tuple(c), _pos(meta))

    def typedef_decl(self, meta: Any, c: list[Any]) -> A.TypedefDecl:
        rest = _rest(c)
        return A.TypedefDecl(rest[0], str(rest[1]), False, _annos(c), _pos(meta))

    def newtype_decl(self, meta: Any, c: list[Any]) -> A.TypedefDecl:
        rest = _rest(c)
        return A.TypedefDecl(rest[0], str(rest[1]), True, _annos(c), _pos(meta))

    def const_decl(self, meta: Any, c: list[Any]) -> A.ConstDecl:
        rest = _rest(c)
        return A.ConstDecl(rest[0], rest[1], rest[2], _annos(c), _pos(meta))

    # externs
    def extern_decl(self, meta: Any, c: list[Any]) -> A.ExternDecl:
        rest = _rest(c)
        name = str(rest[0])
        tparams: tuple[str, ...] = rest[1] if isinstance(rest[1], tuple) else ()
        members = [m for m in rest[1:] if not isinstance(m, tuple)]
        methods = tuple(m for m in members if isinstance(m, A.MethodProto))
        ctors: list[tuple[A.Param, ...]] = []
        for m in members:
            if isinstance(m, Tree):
                params: tuple[A.Param, ...] = m.children[0]  # type: ignore[assignment]
                ctors.append(params)
        return A.ExternDecl(name, tparams, methods, tuple(ctors), _annos(c), _pos(meta))

    def _proto(self, meta: Any, rest: list[Any]) -> A.MethodProto:
        rest = [r for r in rest if not (isinstance(r, Token) and r.type == "ABSTRACT")]
        ret, name = rest[0], rest[1]
        tparams = (
            rest[2] if isinstance(rest[2], tuple) and (not rest[2] or isinstance(rest[2][0], str)) else ()
        )
        params = rest[-1]
        return A.MethodProto(name, ret, params, tparams, _pos(meta))

    def method_proto(self, meta: Any, c: list[Any]) -> A.MethodProto:
        return self._proto(meta, _rest(c))

    def ctor_proto(self, meta: Any, c: list[Any]) -> Tree[Any]:
        return Tree("ctor", [_rest(c)[1]])

    def extern_func_decl(self, meta: Any, c: list[Any]) -> A.ExternFunc:
        return A.ExternFunc(self._proto(meta, _rest(c)), _annos(c), _pos(meta))

    def package_decl(self, meta: Any, c: list[Any]) -> A.PackageDecl:
        rest = _rest(c)
        tparams = rest[1] if len(rest) == 3 else ()
        return A.PackageDecl(str(rest[0]), tparams, rest[-1], _annos(c), _pos(meta))

    def params(self, meta: Any, c: list[Any]) -> tuple[A.Param, ...]:
        return tuple(p for p in c if p is not None)

    def param(self, meta: Any, c: list[Any]) -> A.Param:
        rest = _rest(c)
        direction = ""
        if isinstance(rest[0], str) and rest[0] in ("in", "out", "inout"):
            direction = rest.pop(0)
        elif rest[0] is None:
            rest.pop(0)
        return A.Param(direction, rest[0], rest[1], rest[2] if len(rest) > 2 else None, _annos(c), _pos(meta))

    def d_in(self, meta: Any, c: list[Any]) -> str:
        return "in"

    def d_out(self, meta: Any, c: list[Any]) -> str:
        return "out"

    def d_inout(self, meta: Any, c: list[Any]) -> str:
        return "inout"

    # functions and actions
    def function_decl(self, meta: Any, c: list[Any]) -> A.FunctionDecl:
        rest = _rest(c)
        proto = self._proto(meta, rest[:-1])
        return A.FunctionDecl(proto, rest[-1], _annos(c), _pos(meta))

    def action_decl(self, meta: Any, c: list[Any]) -> A.ActionDecl:
        rest = _rest(c)
        return A.ActionDecl(rest[0], rest[1], rest[2], _annos(c), _pos(meta))

    def instantiation(self, meta: Any, c: list[Any]) -> A.Instantiation:
        rest = _rest(c)
        t = rest[0]
        if isinstance(t, Token):
            t = A.TName(str(t), (), _pos(t))
        return A.Instantiation(t, rest[1], rest[2], _annos(c), _pos(meta))

    # parsers
    def _typed_block(self, rest: list[Any]) -> tuple[str, tuple[str, ...], tuple[A.Param, ...], list[Any]]:
        name = str(rest[0])
        i = 1
        tparams: tuple[str, ...] = ()
        if (
            isinstance(rest[i], tuple)
            and (not rest[i] or isinstance(rest[i][0], str))
            and not (rest[i] and isinstance(rest[i][0], A.Param))
        ):
            tparams = rest[i]
            i += 1
        elif rest[i] is None:
            i += 1
        params = rest[i]
        return name, tparams, params, rest[i + 1 :]

    def parser_proto(self, meta: Any, c: list[Any]) -> A.ParserDecl:
        name, tparams, params, _ = self._typed_block(_rest(c))
        return A.ParserDecl(name, tparams, params, (), None, (), _annos(c), _pos(meta))

    def ctor_params(self, meta: Any, c: list[Any]) -> Tree[Any]:
        return Tree("ctor_params", [c[0]])

    def parser_decl(self, meta: Any, c: list[Any]) -> A.ParserDecl:
        name, tparams, params, rest = self._typed_block(_rest(c))
        ctor: tuple[A.Param, ...] = ()
        if rest and (rest[0] is None or isinstance(rest[0], Tree)):
            ctor = tuple(rest[0].children[0]) if rest[0] is not None else ()  # type: ignore[arg-type]
            rest = rest[1:]
        locals_ = tuple(x for x in rest if not isinstance(x, A.ParserState))
        states = tuple(x for x in rest if isinstance(x, A.ParserState))
        return A.ParserDecl(name, tparams, params, ctor, locals_, states, _annos(c), _pos(meta))

    def parser_state(self, meta: Any, c: list[Any]) -> A.ParserState:
        rest = _rest(c)
        name, stmts, trans = rest[0], rest[1:-1], rest[-1]
        if trans.data == "goto":
            return A.ParserState(name, tuple(stmts), None, (), trans.children[0], _annos(c), _pos(meta))
        sel, cases = trans.children[0], trans.children[1:]
        return A.ParserState(name, tuple(stmts), tuple(sel), tuple(cases), "", _annos(c), _pos(meta))

    def select_case(self, meta: Any, c: list[Any]) -> A.SelectCase:
        return A.SelectCase(c[0], c[1], _pos(meta))

    def tuple_keyset(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.ListExpr(tuple(c), _pos(meta))

    def ks_mask(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Mask(c[0], c[1], _pos(meta))

    def ks_range(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Range(c[0], c[1], _pos(meta))

    def ks_default(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Default(False, _pos(meta))

    def ks_dontcare(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Default(True, _pos(meta))

    # controls
    def control_proto(self, meta: Any, c: list[Any]) -> A.ControlDecl:
        name, tparams, params, _ = self._typed_block(_rest(c))
        return A.ControlDecl(name, tparams, params, (), None, None, _annos(c), _pos(meta))

    def control_decl(self, meta: Any, c: list[Any]) -> A.ControlDecl:
        name, tparams, params, rest = self._typed_block(_rest(c))
        ctor: tuple[A.Param, ...] = ()
        if rest and (rest[0] is None or isinstance(rest[0], Tree)):
            ctor = tuple(rest[0].children[0]) if rest[0] is not None else ()  # type: ignore[arg-type]
            rest = rest[1:]
        body = rest[-1]
        return A.ControlDecl(name, tparams, params, ctor, tuple(rest[:-1]), body, _annos(c), _pos(meta))

    def table_decl(self, meta: Any, c: list[Any]) -> A.TableDecl:
        rest = _rest(c)
        name = rest[0]
        keys: tuple[A.KeyElement, ...] = ()
        actions: tuple[A.ActionRef, ...] = ()
        entries: tuple[A.ConstEntry, ...] | None = None
        entries_const = True
        props: list[tuple[str, A.Expr, bool]] = []
        for p in rest[1:]:
            if p.data == "key_prop":
                keys = tuple(p.children)
            elif p.data == "actions_prop":
                actions = tuple(x for x in p.children if isinstance(x, A.ActionRef))
            elif p.data == "entries_prop":
                kids = _rest(p.children)
                entries_const = any(isinstance(k, Tree) and k.data == "const" for k in kids)
                entries = tuple(x for x in kids if isinstance(x, A.ConstEntry))
            else:
                kids = _rest(p.children)
                is_const = isinstance(kids[0], Tree) and kids[0].data == "const"
                kids = kids[1:] if is_const else kids
                props.append((str(kids[0]), kids[1], is_const))
        return A.TableDecl(name, keys, actions, entries, tuple(props), _annos(c), entries_const, _pos(meta))

    def key_element(self, meta: Any, c: list[Any]) -> A.KeyElement:
        rest = _rest(c)
        return A.KeyElement(rest[0], rest[1], _annos(c), _pos(meta))

    def action_ref(self, meta: Any, c: list[Any]) -> A.ActionRef:
        rest = _rest(c)
        args = tuple(rest[1]) if len(rest) > 1 and rest[1] is not None else None
        return A.ActionRef(rest[0], args, _annos(c), _pos(meta))

    def entry(self, meta: Any, c: list[Any]) -> A.ConstEntry:
        prio = None
        if isinstance(c[0], Tree) and c[0].data == "const_prio":
            prio = parse_int(str(c[0].children[0])).value
            c = c[1:]
        elif c[0] is None:
            c = c[1:]
        return A.ConstEntry(c[0], c[1], prio, _pos(meta))

    # statements
    def block(self, meta: Any, c: list[Any]) -> A.Block:
        return A.Block(tuple(c), _pos(meta))

    def annotated_block(self, meta: Any, c: list[Any]) -> A.Stmt:
        block: A.Block = c[-1]
        return block

    def exit_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.Exit(_pos(meta))

    def return_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.Return(c[0] if c else None, _pos(meta))

    def empty_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.Empty(_pos(meta))

    def var_decl(self, meta: Any, c: list[Any]) -> A.VarDecl:
        rest = _rest(c)
        return A.VarDecl(rest[0], rest[1], rest[2], _annos(c), _pos(meta))

    def assignment(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.Assign(c[0], c[1], _pos(meta))

    def call_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        f = c[0]
        return A.CallStmt(A.Call(f, tuple(c[1]), (), _pos(meta)), _pos(meta))

    def generic_call_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.CallStmt(self.generic_call(meta, c), _pos(meta))  # type: ignore[arg-type]

    def generic_fcall_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.CallStmt(self.generic_fcall(meta, c), _pos(meta))  # type: ignore[arg-type]

    def if_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.If(c[0], c[1], c[2] if len(c) > 2 else None, _pos(meta))

    def switch_stmt(self, meta: Any, c: list[Any]) -> A.Stmt:
        return A.Switch(c[0], tuple(c[1:]), _pos(meta))

    def switch_case(self, meta: Any, c: list[Any]) -> A.SwitchCase:
        return A.SwitchCase(c[0], c[1] if len(c) > 1 else None, _pos(meta))

    def label_default(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Default(False, _pos(meta))

    # expressions
    def args(self, meta: Any, c: list[Any]) -> list[A.Expr]:
        return [x for x in c if x is not None]

    def dontcare_arg(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Default(True, _pos(meta))

    def named_arg(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.NamedArg(c[0], c[1], _pos(meta))

    def cond(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Cond(c[0], c[1], c[2], _pos(meta))

    def cast(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Cast(c[0], c[1], _pos(meta))

    def member(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Member(c[0], c[1], _pos(meta))

    def index(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Index(c[0], c[1], _pos(meta))

    def slice(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Slice(c[0], c[1], c[2], _pos(meta))

    def call(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Call(c[0], tuple(c[1]), (), _pos(meta))

    def generic_call(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Call(A.Member(c[0], str(c[1]), _pos(meta)), tuple(c[-1]), tuple(c[2]), _pos(meta))

    def generic_fcall(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.Call(A.Name(str(c[0]), _pos(meta)), tuple(c[-1]), tuple(c[1]), _pos(meta))

    def int_lit(self, meta: Any, c: list[Token]) -> A.Expr:
        lit = parse_int(str(c[0]))
        return A.IntLit(lit.value, lit.width, lit.signed, _pos(meta))

    def str_lit(self, meta: Any, c: list[Token]) -> A.Expr:
        return A.StrLit(str(c[0])[1:-1], _pos(meta))

    def true_lit(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.BoolLit(True, _pos(meta))

    def false_lit(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.BoolLit(False, _pos(meta))

    def name_ref(self, meta: Any, c: list[Token]) -> A.Expr:
        return A.Name(str(c[0]), _pos(meta))

    def type_member(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.TypeMember(str(c[0]), c[1], _pos(meta))

    def error_member(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.TypeMember("error", c[0], _pos(meta))

    def ctor_call(self, meta: Any, c: list[Any]) -> A.Expr:
        t = c[0]
        if isinstance(t, Token):
            t = A.TName(str(t), (), _pos(t))
        return A.CtorCall(t, tuple(c[1]), _pos(meta))

    def list_expr(self, meta: Any, c: list[Any]) -> A.Expr:
        return A.ListExpr(tuple(x for x in c if x is not None), _pos(meta))

    def invalid_expr(self, meta: Any, c: list[Any]) -> A.Expr:
        raise SyntaxError("not supported by softswitch: the invalid header expression {#}")

    def empty_decl(self, meta: Any, c: list[Any]) -> None:
        return None

    def start(self, meta: Any, c: list[Any]) -> A.Program:
        return A.Program(tuple(d for d in c if d is not None))


def parse(source: SourceMap) -> A.Program:
    """Parse preprocessed text; syntax errors become :class:`SourceError` with a caret."""
    try:
        tree = _parser().parse(source.text)
    except UnexpectedToken as exc:
        tok = exc.token
        if str(tok) in UNSUPPORTED_WORDS:
            raise source.error(f"not supported by softswitch: {tok}", exc.line, exc.column) from None
        if tok.type == "IDENTIFIER" and "TYPE_IDENTIFIER" in exc.expected:
            raise source.error(f"unknown type {str(tok)!r}", exc.line, exc.column) from None
        what = "end of input" if tok.type == "$END" else repr(str(tok))
        raise source.error(f"syntax error: unexpected {what}", exc.line, exc.column) from None
    except UnexpectedInput as exc:
        raise source.error("syntax error: unexpected character", exc.line, exc.column) from None
    try:
        prog: A.Program = _ToAst().transform(tree)
    except VisitError as exc:
        orig = exc.orig_exc
        meta = getattr(exc.obj, "meta", None)
        line, col = _pos(meta) if meta is not None else (1, 1)
        raise source.error(str(orig), line, col) from None
    check_unique_names(prog, source)
    check_division(prog, source)
    check_extern_calls(prog, source)
    check_stack_ops(prog, source)
    return prog
