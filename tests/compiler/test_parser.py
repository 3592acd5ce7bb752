"""The parser: our LALR driver against lark's own, and the AST it builds while parsing.

lark's LALR parser, fed by our lexer, is the reference: on the same grammar our
driver must build the same trees and stop at the same token with the same
expected terminals.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedToken as LarkUnexpectedToken
from lark.lexer import Lexer as LarkLexer
from lark.lexer import LexerState

from dysco.compiler import lalr
from dysco.compiler.build import statement
from dysco.compiler.generate import PredicateGenerator
from dysco.compiler.lexer import Lexer, UnexpectedCharacter, Unsupported
from dysco.compiler.parse import _tree_actions, parse_tree, split_statements, tables
from dysco.compiler.passes import compile_text, dump_stage
from dysco.errors import SourceErrors

from .test_properties import WORDS


class _OurLexer(LarkLexer):
    """Our lexer behind lark's lexer interface, reading lark's own parser states."""

    __future_interface__ = 1

    def __init__(self, conf: Any) -> None:
        self._literals = {t.pattern.value: t.name for t in conf.terminals if t.pattern.type == "str"}
        self._lexer: Lexer | None = None

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        if self._lexer is None:
            states = parser_state.parse_conf.parse_table.states
            self._lexer = Lexer([frozenset(states[s]) for s in range(len(states))], self._literals)
        for kind, value, start, line, column in self._lexer.tokens(
            lexer_state.text.text, parser_state.state_stack
        ):
            yield Token(kind, value, start, line, column)


@pytest.fixture(scope="module")
def reference() -> Lark:
    grammar = resources.files("dysco.compiler").joinpath("policy.lark").read_text()
    return Lark(grammar, parser="lalr", start="statement", lexer=_OurLexer, maybe_placeholders=False)


def _chunks(seed: int) -> list[str]:
    gen = PredicateGenerator(random.Random(seed))
    return [chunk for _, chunk in split_statements(gen.policy_file(3))]


@given(st.integers(0, 2**32))
def test_same_trees_as_lark(reference: Lark, seed: int) -> None:
    for chunk in _chunks(seed):
        assert parse_tree(chunk) == reference.parse(chunk)


def _ours(chunk: str) -> tuple[str, int, int, set[str]] | Tree[Token]:
    try:
        tree: Tree[Token] = lalr.run(tables(), chunk, _tree_actions())
        return tree
    except lalr.UnexpectedToken as exc:
        kind, _, _, line, column = exc.token
        return kind, line, column, exc.accepts
    except UnexpectedCharacter as exc:
        return "char", exc.line, exc.column, set()
    except Unsupported as exc:
        return "UNSUPPORTED", exc.token[3], exc.token[4], set()


def _theirs(reference: Lark, chunk: str) -> tuple[str, int, int, set[str]] | Tree[Token]:
    try:
        tree: Tree[Token] = reference.parse(chunk)
        return tree
    except LarkUnexpectedToken as exc:
        if exc.token.type == "$END":  # lark puts it where the last token was; we put it after
            return "$END", -1, -1, exc.accepts
        return exc.token.type, exc.line, exc.column, exc.accepts
    except UnexpectedCharacter as exc:
        return "char", exc.line, exc.column, set()
    except Unsupported as exc:
        return "UNSUPPORTED", exc.token[3], exc.token[4], set()


@given(
    st.sampled_from(["policy p: ", "middlebox m { ", "policy p: port 80 -> ", ""]),
    st.lists(st.sampled_from(WORDS), max_size=25).map(" ".join),
)
def test_same_errors_as_lark(reference: Lark, start: str, soup: str) -> None:
    chunk = start + soup
    ours, theirs = _ours(chunk), _theirs(reference, chunk)
    if isinstance(ours, tuple) and ours[0] == "$END":
        assert isinstance(theirs, tuple)
        ours = ("$END", -1, -1, ours[3])
    assert ours == theirs


def test_the_tree_of_a_statement() -> None:
    tree = parse_tree("policy p: dst port 80 or (not 443) -> fw, 10.0.0.1")
    assert tree.pretty() == (
        "policy\n  p\n  binop\n    primitive\n      dst\n      port\n      80\n    or\n"
        "    group\n      negation\n        not\n        bare\t443\n  hop\tfw\n  hop\t10.0.0.1\n"
    )


def test_parse_stage_shows_every_statement() -> None:
    text = "middlebox fw { instances 10.0.2.1; }\n\npolicy p: tcp -> fw\n"
    assert dump_stage(text, "f", "parse") == (
        "middlebox\n  fw\n  instances\t10.0.2.1\npolicy\n  p\n  proto_name\ttcp\n  hop\tfw\n"
    )


def test_a_group_passes_on_the_qualifiers_before_it() -> None:
    text = (
        "middlebox fw { instances 10.0.2.1; }\n"
        "policy p: port 80 and (host 10.0.0.1 or 10.0.0.2) or 443 -> fw\n"
    )
    assert dump_stage(text, "f", "ast") == (
        "middlebox fw @1: instances 10.0.2.1; select round-robin\n"
        "policy p @2: ((tcp src or dst port 80 and (src or dst host 10.0.0.1 or src or dst host 10.0.0.2))"
        " or tcp src or dst port 443) -> fw\n"
    )


def test_a_syntax_error_comes_before_a_value_error_in_the_same_statement() -> None:
    with pytest.raises(SourceErrors) as info:
        compile_text("middlebox fw { instances 10.0.2.1; }\npolicy p: port 99999 and ( -> fw\n", "f")
    (err,) = info.value.errors
    assert (err.pos.line, err.pos.column) == (2, 28)
    assert err.message.startswith("unexpected '->'")


def test_a_repeated_statement_has_the_positions_of_its_own_line() -> None:
    body = "policy p: port 99999 -> fw\n"
    for blank_lines in (0, 3, 0):
        with pytest.raises(SourceErrors) as info:
            compile_text("middlebox fw { instances 10.0.2.1; }\n" + "\n" * blank_lines + body, "f")
        assert [(e.pos.line, e.pos.column) for e in info.value.errors] == [(2 + blank_lines, 16)]
    first = statement("policy q: port 80 -> fw\n", 5)
    assert statement("policy q: port 80 -> fw\n", 5) is first  # built once
    moved = statement("policy q: port 80 -> fw\n", 9)
    assert (first.loc.line, moved.loc.line) == (5, 9)


def test_the_source_of_a_policy_skips_comments() -> None:
    (pol,) = compile_text(
        "middlebox fw { instances 10.0.2.1; }\n"
        "policy p: # web -> not ssh\n  port 80   # the web\n  or 443 -> # to: the -> firewall\n fw\n"
    ).source.policies
    assert pol.source == "port 80 or 443"
