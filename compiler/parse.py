"""Pass 1: a policy file's statements, and the parser that runs on each.

The file is cut into statements at lines that begin with ``policy`` or
``middlebox``; each statement is parsed on its own so that one syntax error does
not hide the errors after it.

The parser is the LALR(1) parser of ``policy.lark`` (:mod:`dysco.compiler.lalr`),
run with a set of actions: compiling uses those of :mod:`dysco.compiler.build`,
which build the AST as the parser reduces; ``dysco compile --stage parse`` uses
:func:`parse_tree`, which builds the tree lark would.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from lark import Token, Tree

from dysco.compiler import lalr
from dysco.compiler.lexer import UNSUPPORTED, Tok, UnexpectedCharacter, Unsupported

_STATEMENT_START = re.compile(r"^[ \t]*(policy|middlebox)(?![A-Za-z0-9_-])", re.MULTILINE)

# What a terminal looks like, for "expected ..." messages.
_TERMINAL_TEXT = {
    "AND": "'and'",
    "OR": "'or'",
    "NOT": "'not'",
    "DIR": "'src' or 'dst'",
    "PROTO": "'proto'",
    "PREFIX": "an address prefix",
    "ADDR_MASK": "an address and mask",
    "PQUAL": "'tcp' or 'ip'",
    "AQUAL": "'host', 'net', 'port' or 'portrange'",
    "ADDR": "an IPv4 address",
    "NUMBER": "a number",
    "PORTRANGE": "a port range",
    "NAME": "a name",
    "WORD": "a name",
    "ESCAPED": "an escaped name",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COLON": "':'",
    "SEMICOLON": "';'",
    "COMMA": "','",
    "_ARROW": "'->'",
    "MIDDLEBOX": "'middlebox'",
    "POLICY": "'policy'",
    "INSTANCES": "'instances'",
    "SELECT": "'select'",
}


class StatementError(Exception):
    """What is wrong with a statement, at a line of the file and a column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@functools.cache
def tables() -> lalr.Tables:
    """The parser tables of ``policy.lark`` (built once per process)."""
    grammar = resources.files("dysco.compiler").joinpath("policy.lark").read_text()
    return lalr.load(grammar, "statement")


def split_statements(text: str) -> list[tuple[int, str]]:
    """``(first_line, text)`` of each statement; text before the first keyword is its own chunk."""
    starts = [m.start() for m in _STATEMENT_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    starts.append(len(text))
    chunks: list[tuple[int, str]] = []
    line = 1
    for i in range(len(starts) - 1):
        chunk = text[starts[i] : starts[i + 1]]
        if _has_code(chunk):
            chunks.append((line, chunk))
        line += chunk.count("\n")
    return chunks


def _has_code(chunk: str) -> bool:
    head = chunk.lstrip()
    if not head:
        return False
    if head[0] != "#":
        return True
    return any(ln.strip() and not ln.lstrip().startswith("#") for ln in chunk.split("\n"))


def parse(
    chunk: str,
    first_line: int,
    actions: Sequence[lalr.Action | None],
    context: Any = None,
    on_shift: Mapping[str, Callable[[Any, Tok], Any]] | None = None,
) -> Any:
    """Run the parser on one statement that starts at line ``first_line`` of its file;
    raise :class:`StatementError` at the first syntax error."""
    try:
        return lalr.run(tables(), chunk, actions, context, on_shift)
    except Unsupported as exc:
        _, value, _, line, column = exc.token
        raise StatementError(f"'{value}' {UNSUPPORTED[value]}", line + first_line - 1, column) from None
    except UnexpectedCharacter as exc:
        raise _unexpected_character(exc, chunk, first_line) from None
    except lalr.UnexpectedToken as exc:
        raise _unexpected_token(exc, chunk, first_line) from None


def parse_tree(chunk: str, first_line: int = 1) -> Tree[Token]:
    """The statement's parse tree, shaped as lark shapes it (tokens positioned in ``chunk``)."""
    tree: Tree[Token] = parse(chunk, first_line, _tree_actions())
    return tree


def check_syntax(chunk: str, first_line: int) -> None:
    """Raise :class:`StatementError` if the statement has a syntax error."""
    parse(chunk, first_line, _no_actions())


@functools.cache
def _tree_actions() -> tuple[lalr.Action, ...]:
    return tuple(_tree_action(rule) for rule in tables().rules)


def _tree_action(rule: lalr.Rule) -> lalr.Action:
    def build(_context: object, children: list[Any]) -> Any:
        kept: list[Any] = []
        for i in rule.keep:
            child = children[i]
            if i in rule.splice:
                kept.extend(child.children)
            elif rule.is_terminal(i):
                kind, value, start, line, column = child
                end = start + len(value)
                kept.append(Token(kind, value, start, line, column, line, column + len(value), end))
            else:
                kept.append(child)
        if rule.expand1 and len(kept) == 1:
            return kept[0]
        return Tree(rule.label, kept)

    return build


@functools.cache
def _no_actions() -> tuple[lalr.Action, ...]:
    return tuple(_nothing for _ in tables().rules)


def _nothing(_context: object, _children: list[Any]) -> None:
    return None


# ---- syntax errors ----------------------------------------------------------


def _unexpected_character(exc: UnexpectedCharacter, chunk: str, first_line: int) -> StatementError:
    line = exc.line + first_line - 1
    if chunk[exc.pos] == "[":
        return StatementError("byte-offset expressions such as tcp[13] are not supported", line, exc.column)
    message = f"unexpected character {chunk[exc.pos]!r}" + _expected(exc.accepts)
    return StatementError(message, line, exc.column)


def _unexpected_token(exc: lalr.UnexpectedToken, chunk: str, first_line: int) -> StatementError:
    kind, value, _, line, column = exc.token
    if kind == "$END":
        line, column = _end_position(chunk, first_line)
        return StatementError("unexpected end of statement" + _expected(exc.accepts), line, column)
    return StatementError(f"unexpected '{value}'" + _expected(exc.accepts), line + first_line - 1, column)


def _end_position(chunk: str, first_line: int) -> tuple[int, int]:
    """The position just after the last non-comment character of the statement."""
    lines = chunk.split("\n")
    for idx in range(len(lines) - 1, -1, -1):
        code = lines[idx].split("#", 1)[0].rstrip()
        if code:
            return first_line + idx, len(code) + 1
    return first_line, 1


_PRIMITIVE_START = frozenset({"AQUAL", "NOT", "LPAR", "NUMBER"})


def _expected(names: set[str] | frozenset[str]) -> str:
    names = {n for n in names if not n.startswith("$") and n != "UNSUPPORTED"}
    if names >= _PRIMITIVE_START:
        return "; expected a primitive such as 'port 80' or 'host 10.0.0.1', 'not' or '('"
    shown = sorted({_TERMINAL_TEXT.get(n, n.lower()) for n in names})
    if not shown:
        return ""
    if len(shown) == 1:
        return f"; expected {shown[0]}"
    return f"; expected {', '.join(shown[:-1])} or {shown[-1]}"
