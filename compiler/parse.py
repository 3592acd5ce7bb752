"""Pass 1: text -> lark parse trees, one per statement.

The file is cut into statements at lines that begin with ``policy`` or
``middlebox``; each statement is parsed on its own so that one syntax error does
not hide the errors after it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from dysco.compiler.lexer import UNSUPPORTED, PolicyLexer, Unsupported
from dysco.errors import SourceError, SourcePos

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


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement's parse tree and where it starts in the file."""

    tree: Tree[Token]
    first_line: int
    text: str
    """The statement's own text; token positions are relative to it."""


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("dysco.compiler").joinpath("policy.lark").read_text()
    return Lark(grammar, parser="lalr", start="statement", lexer=PolicyLexer, maybe_placeholders=False)


def split_statements(text: str) -> list[tuple[int, str]]:
    """``(first_line, text)`` of each statement; text before the first keyword is its own chunk."""
    starts = [m.start() for m in _STATEMENT_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    chunks: list[tuple[int, str]] = []
    line = 1
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        chunk = text[start:end]
        if chunk.strip() and _has_code(chunk):
            chunks.append((line, chunk))
        line += chunk.count("\n")
    return chunks


def _has_code(chunk: str) -> bool:
    return any(ln.strip() and not ln.lstrip().startswith("#") for ln in chunk.split("\n"))


@functools.lru_cache(maxsize=256)
def _parse_chunk(chunk: str) -> Tree[Token]:
    """Statements repeat (a shared declaration, an edited file read again): parse each text once.
    Token positions are relative to the chunk, so a cached tree fits any place in any file."""
    return _parser().parse(chunk)


def parse_statement(chunk: str, first_line: int, filename: str, full_text: str) -> Statement:
    """Parse one statement; raise :class:`SourceError` at the first problem."""
    try:
        tree = _parse_chunk(chunk)
    except Unsupported as exc:
        tok = exc.token
        pos = SourcePos(filename, tok.line + first_line - 1 if tok.line else first_line, tok.column or 1)
        why = UNSUPPORTED[str(tok)]
        raise SourceError(f"'{tok}' {why}", pos, full_text) from None
    except UnexpectedInput as exc:
        raise _syntax_error(exc, chunk, first_line, filename, full_text) from None
    return Statement(tree, first_line, chunk)


def _syntax_error(
    exc: UnexpectedInput, chunk: str, first_line: int, filename: str, full_text: str
) -> SourceError:
    line = (exc.line if exc.line and exc.line > 0 else chunk.count("\n") + 1) + first_line - 1
    column = exc.column if exc.column and exc.column > 0 else 1
    if isinstance(exc, UnexpectedCharacters):
        at = exc.pos_in_stream or 0
        ch = chunk[at] if at < len(chunk) else ""
        if ch == "[":
            msg = "byte-offset expressions such as tcp[13] are not supported"
        else:
            msg = f"unexpected character {ch!r}" + _expected(exc.allowed)
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            msg = "unexpected end of statement" + _expected(exc.accepts or exc.expected)
            line, column = _end_position(chunk, first_line)
        else:
            msg = f"unexpected '{tok!s}'" + _expected(exc.accepts or exc.expected)
    elif isinstance(exc, UnexpectedEOF):
        msg = "unexpected end of statement" + _expected(set(exc.expected))
        line, column = _end_position(chunk, first_line)
    else:  # pragma: no cover - lark has no other kinds
        msg = "syntax error"
    return SourceError(msg, SourcePos(filename, line, column), full_text)


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
