"""Running the policy grammar's LALR(1) tables with actions of our choosing.

lark turns ``policy.lark`` into LALR(1) tables (:func:`load`); :func:`run` drives them
over the tokens of :mod:`dysco.compiler.lexer` and calls one *action* per reduction.
:mod:`dysco.compiler.build` passes actions that build the AST directly, so compiling
makes no parse tree at all; :mod:`dysco.compiler.parse` passes actions that build the
tree lark itself would build (for ``--stage parse``).

The loop is the textbook LALR(1) loop, as lark's parser runs it too, cut down to what this
grammar needs: per token a dictionary lookup and a list append, per reduction one call.
Syntax errors carry what lark's would: the token, and the terminals that the parser could
really take there (``tests/compiler/test_parser.py`` checks both against lark's parser).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lark import Lark
from lark.common import ParserConf
from lark.parsers.lalr_analysis import LALR_Analyzer, Shift

from dysco.compiler.lexer import Lexer, Tok, UnexpectedCharacter

Action = Callable[[Any, list[Any]], Any]
"""``action(context, children)``: the value of a reduction from the values of its symbols
(tokens for terminals); ``None`` in place of an action passes a single child up."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One production, as lark compiled it (optional parts expanded into separate rules)."""

    origin: str
    label: str
    """The node name lark gives it: the alias if there is one, else the origin."""
    expansion: tuple[str, ...]
    keep: tuple[int, ...]
    """Positions lark keeps in its tree (anonymous tokens such as ``(`` are dropped)."""
    splice: frozenset[int]
    """Kept positions whose children lark splices into this node (rules named ``_...``)."""
    expand1: bool
    """``?rule`` without an alias: with one kept child, lark returns that child."""

    def is_terminal(self, i: int) -> bool:
        return self.expansion[i].isupper()


@dataclass(frozen=True, slots=True)
class Tables:
    rules: tuple[Rule, ...]
    actions: tuple[Mapping[str, int], ...]
    """Per state, per terminal: ``>= 0`` shift and go to that state, ``< 0`` reduce by rule ``~code``."""
    gotos: tuple[Mapping[int, int], ...]
    """Per rule: the state to go to after reducing it, by the state uncovered."""
    start: int
    end: int
    lexer: Lexer
    sizes: tuple[int, ...]
    """Per rule: how many symbols it reduces (never 0 in this grammar)."""


class UnexpectedToken(Exception):
    """``token`` cannot follow; ``accepts`` are the terminals that could (``$END``: end of text)."""

    def __init__(self, token: Tok, accepts: set[str]) -> None:
        super().__init__(f"unexpected {token[0]} {token[1]!r}")
        self.token = token
        self.accepts = accepts


def load(grammar: str, start: str) -> Tables:
    """The LALR(1) tables of ``grammar`` for the start symbol ``start``."""
    lark = Lark(grammar, parser="lalr", start=start, lexer="basic", maybe_placeholders=False)
    analysis: Any = LALR_Analyzer(ParserConf(lark.rules, {}, [start]))  # lark's own types are loose
    analysis.compute_lalr()
    table: Any = analysis.parse_table
    index: dict[Any, int] = {}
    rules: list[Rule] = []
    r: Any
    for r in lark.rules:
        index[r] = len(rules)
        keep = [
            i
            for i, s in enumerate(r.expansion)
            if r.options.keep_all_tokens or not (s.is_term and s.filter_out)
        ]
        rules.append(
            Rule(
                origin=r.origin.name,
                label=str(r.alias or r.origin.name),
                expansion=tuple(s.name for s in r.expansion),
                keep=tuple(keep),
                splice=frozenset(
                    i for i in keep if not r.expansion[i].is_term and r.expansion[i].name[0] == "_"
                ),
                expand1=bool(r.options.expand1 and not r.alias),
            )
        )
    assert all(r.expansion for r in rules), "no empty rules: the driver relies on it"
    n = len(table.states)
    assert sorted(table.states) == list(range(n)), "lark numbers the states (unless debugging)"
    actions: list[dict[str, int]] = [{} for _ in range(n)]
    gotos: list[dict[int, int]] = [{} for _ in rules]
    by_origin: dict[str, list[int]] = {}
    for i, rule in enumerate(rules):
        by_origin.setdefault(rule.origin, []).append(i)
    choices = [frozenset(table.states[state]) for state in range(n)]
    for state, row in table.states.items():
        for symbol, (kind, arg) in row.items():
            if not symbol.isupper():  # a nonterminal: the goto after reducing any of its rules
                for i in by_origin.get(symbol, ()):
                    gotos[i][state] = arg
            elif kind is Shift:
                actions[state][symbol] = arg
            else:
                actions[state][symbol] = ~index[arg]
    literals = {t.pattern.value: t.name for t in lark.terminals if t.pattern.type == "str"}
    return Tables(
        tuple(rules),
        tuple(actions),
        tuple(gotos),
        table.start_states[start],
        table.end_states[start],
        Lexer(choices, literals),
        tuple(len(r.expansion) for r in rules),
    )


def run(
    tables: Tables,
    text: str,
    actions: Sequence[Action | None],
    context: Any = None,
    on_shift: Mapping[str, Callable[[Any, Tok], Any]] | None = None,
) -> Any:
    """Parse ``text``; the value of the start symbol as the actions computed it.

    ``actions[rule]`` computes the value of each reduction; ``None`` may stand for the
    action of a rule of one symbol that passes its child up.  ``on_shift[terminal](context,
    token)``, where given, is the value pushed for that terminal instead of the token (it
    sees the context as it is before the token).  Raises :class:`UnexpectedToken`, and the
    lexer's ``UnexpectedCharacter`` and ``Unsupported``.
    """
    table = tables.actions
    gotos = tables.gotos
    sizes = tables.sizes
    hooks = on_shift or {}
    stack = [tables.start]
    values: list[Any] = []
    push_state = stack.append
    push_value = values.append
    token: Tok = ("$END", "", 0, 1, 1)
    try:
        for token in tables.lexer.tokens(text, stack):
            kind = token[0]
            code = table[stack[-1]].get(kind)
            while code is not None and code < 0:  # reduce, as often as the token asks
                r = ~code
                act = actions[r]
                if act is None:  # a unit rule: its child goes up as it is
                    stack[-1] = gotos[r][stack[-2]]
                else:
                    size = sizes[r]
                    children = values[-size:]
                    del values[-size:]
                    del stack[-size:]
                    push_value(act(context, children))
                    push_state(gotos[r][stack[-1]])
                code = table[stack[-1]].get(kind)
            if code is None:
                raise UnexpectedToken(token, accepts(tables, stack))
            push_state(code)
            push_value(token if kind not in hooks else hooks[kind](context, token))
    except UnexpectedCharacter as exc:
        exc.accepts = accepts(tables, stack)
        raise
    end: Tok = ("$END", "", token[2] + len(token[1]), token[3], token[4] + len(token[1]))
    while True:
        code = table[stack[-1]].get("$END")
        if code is None or code >= 0:
            raise UnexpectedToken(end, accepts(tables, stack))
        r = ~code
        act = actions[r]
        size = sizes[r]
        value = values[-1] if act is None else act(context, values[-size:])
        del values[-size:]
        del stack[-size:]
        push_state(gotos[r][stack[-1]])
        push_value(value)
        if stack[-1] == tables.end:
            return value


def accepts(tables: Tables, stack: list[int]) -> set[str]:
    """The terminals the parser in ``stack`` could take next: shift after the reductions they
    cause, or for ``$END``, finish the statement (as lark's ``accepts`` says)."""
    out: set[str] = set()
    for terminal in tables.actions[stack[-1]]:
        s = list(stack)
        while True:
            code = tables.actions[s[-1]].get(terminal)
            if code is None:
                break
            if code >= 0:
                out.add(terminal)
                break
            r = ~code
            size = len(tables.rules[r].expansion)
            if size:
                del s[-size:]
            s.append(tables.gotos[r][s[-1]])
            if s[-1] == tables.end:  # the end of the text would complete the statement
                out.add(terminal)
                break
    return out
