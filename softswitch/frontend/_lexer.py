"""The P4 lexer: knows keywords, declared type names, ``>>`` and explicit type arguments.

P4's grammar is not context free without knowing which identifiers name types
(``T x;`` against ``a < b``), so the lexer tokenises the whole text first,
collects the type names its declarations introduce, then classifies tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f\v]+)
  | (?P<comment>//[^\n]*|/\*(?:.|\n)*?\*/)
  | (?P<int>\d+[ws](?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|0[dD][0-9_]+|\d[\d_]*)
        |0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|0[dD][0-9_]+|\d[\d_]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>&&&|\|\+\||\|-\||\.\.|\+\+|<<|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>=?:;,.(){}\[\]@\#])
    """,
    re.X,
)

_TYPE_DECL_KEYWORDS = frozenset(
    {"header", "header_union", "struct", "extern", "parser", "control", "package"}
)
_TYPE_START = frozenset({"bit", "int", "varbit", "bool", "tuple", "string", "error"})


@dataclass
class RawToken:
    kind: str  # "int", "str", "id", "punct"
    text: str
    line: int
    column: int
    pos: int


class LexError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def tokenize(text: str) -> list[RawToken]:
    out: list[RawToken] = []
    pos, line, line_start = 0, 1, 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise LexError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind = m.lastgroup or ""
        tok = m.group()
        if kind not in ("ws", "comment"):
            out.append(RawToken(kind, tok, line, pos - line_start + 1, pos))
        nl = tok.count("\n")
        if nl:
            line += nl
            line_start = pos + tok.rindex("\n") + 1
        pos = m.end()
    return out


def collect_type_names(toks: list[RawToken], keywords: frozenset[str]) -> set[str]:
    """Names that declarations in ``toks`` introduce as types (incl. type parameters)."""
    names: set[str] = set()
    texts = [t.text for t in toks]
    n = len(toks)
    for i, t in enumerate(toks):
        if t.kind != "id":
            continue
        word = t.text
        if word in _TYPE_DECL_KEYWORDS and i + 1 < n and toks[i + 1].kind == "id":
            nxt = toks[i + 1].text
            if nxt not in keywords:
                names.add(nxt)
        elif word == "enum":
            j = i + 1
            if j < n and texts[j] in ("bit", "int"):
                j += 1
                depth = 0
                while j < n:
                    if texts[j] == "<":
                        depth += 1
                    elif texts[j] == ">":
                        depth -= 1
                        if depth == 0:
                            j += 1
                            break
                    j += 1
            if j < n and toks[j].kind == "id":
                names.add(toks[j].text)
        elif word in ("typedef", "type"):
            j = i + 1
            while j < n and texts[j] != ";":
                j += 1
            if j - 1 > i and toks[j - 1].kind == "id":
                names.add(toks[j - 1].text)
        # type parameters: NAME < A, B > followed by ( or {, in a declaration
        if i + 1 < n and texts[i + 1] == "<" and i > 0:
            prev = toks[i - 1]
            declares = (
                prev.text in _TYPE_DECL_KEYWORDS
                or prev.text in ("void", ">", "bool")
                or (prev.kind == "id" and prev.text in names)
            )
            if not declares:
                continue
            j = i + 2
            params: list[str] = []
            while j + 1 < n and toks[j].kind == "id" and texts[j + 1] in (",", ">"):
                params.append(texts[j])
                if texts[j + 1] == ">":
                    break
                j += 2
            else:
                continue
            if j + 2 < n and texts[j + 2] in ("(", "{", ";") and all(p not in keywords for p in params):
                names.update(params)
    return names


def classify(
    toks: list[RawToken], keywords: frozenset[str], type_names: set[str]
) -> Iterator[tuple[str, RawToken]]:
    """Yield ``(terminal, token)``; terminal is a keyword/punctuation text or a token class."""
    n = len(toks)
    for i, t in enumerate(toks):
        if t.kind == "int":
            yield "INTEGER", t
        elif t.kind == "str":
            yield "STRING_LITERAL", t
        elif t.kind == "id":
            if t.text in keywords:
                yield t.text, t
            elif t.text in type_names:
                yield "TYPE_IDENTIFIER", t
            elif i + 2 < n and toks[i + 1].text == "<" and _starts_type(toks, i + 2, type_names):
                yield "GENERIC_IDENTIFIER", t
            else:
                yield "IDENTIFIER", t
        elif t.text == ">" and i + 1 < n and toks[i + 1].text == ">" and toks[i + 1].pos == t.pos + 1:
            yield "SHR_GT", t
        else:
            yield t.text, t


def _starts_type(toks: list[RawToken], i: int, type_names: set[str]) -> bool:
    t = toks[i]
    if t.text in _TYPE_START:
        return t.text != "error" or (i + 1 < len(toks) and toks[i + 1].text != ".")
    if t.text in type_names:
        return i + 1 < len(toks) and toks[i + 1].text not in (".", "(")
    return False
