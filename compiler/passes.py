"""The compiler: an ordered list of pure passes.

    text --parse+build--> PolicyFile --normalise--> formulas --entries--> Compiled

Parsing and building the AST are one pass over each statement: the LALR parser
calls the builder's actions as it reduces, so no parse tree is made
(:mod:`dysco.compiler.build`).  :data:`STAGES` is the order, written down once;
``dysco compile --stage`` dumps the output of any of them, the parse stage as the
tree lark would build from the same grammar (:func:`dysco.compiler.parse.parse_tree`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dysco.compiler import ast
from dysco.compiler.build import build
from dysco.compiler.entries import (
    BudgetExceeded,
    Entry,
    PolicyRules,
    decision_list,
    expand_port_ranges,
    layout,
)
from dysco.compiler.normalise import Formula, format_formula, normalise
from dysco.compiler.parse import parse_tree, split_statements
from dysco.errors import SourceError, SourceErrors, SourcePos

Stage = Literal["parse", "ast", "normal", "entries"]
STAGES: tuple[Stage, ...] = ("parse", "ast", "normal", "entries")
PortMatch = Literal["range", "ternary"]

DEFAULT_BUDGET = 4096


@dataclass(frozen=True, slots=True)
class Options:
    budget: int = DEFAULT_BUDGET
    """Most entries one file may expand to (also bounds every intermediate list)."""
    port_match: PortMatch = "range"
    """``ternary`` expands port ranges into value/mask prefixes for targets without range match."""


@dataclass(frozen=True, slots=True)
class TypeStep:
    type: str
    instances: tuple[str, ...]
    select: str


@dataclass(frozen=True, slots=True)
class AddressStep:
    address: str


ChainStep = TypeStep | AddressStep


@dataclass(frozen=True, slots=True)
class Chain:
    policy: str
    id: int
    hops: tuple[ChainStep, ...]


@dataclass(frozen=True, slots=True)
class Compiled:
    """What the compiler produces: classifier entries and the chains they point at."""

    source: ast.PolicyFile
    entries: tuple[Entry, ...]
    chains: dict[str, Chain] = field(default_factory=dict)
    port_match: PortMatch = "range"

    def chain_by_id(self, chain_id: int) -> Chain | None:
        for chain in self.chains.values():
            if chain.id == chain_id:
                return chain
        return None


# ---- the passes -------------------------------------------------------------


def normal(pf: ast.PolicyFile) -> list[tuple[ast.Policy, Formula]]:
    return [(pol, normalise(pol.predicate)) for pol in pf.policies]


def entries(
    pf: ast.PolicyFile, formulas: list[tuple[ast.Policy, Formula]], options: Options, text: str | None = None
) -> Compiled:
    rules: list[PolicyRules] = []
    for chain_id, (pol, formula) in enumerate(formulas, start=1):
        try:
            dl = decision_list(formula, options.budget)
        except BudgetExceeded as exc:
            raise _budget_error(pf, pol, exc, text) from None
        rules.append(PolicyRules(pol.name, chain_id, tuple(dl)))
    try:
        laid_out = layout(rules, options.budget)
    except BudgetExceeded as exc:
        raise SourceError(
            f"the policies expand to more than {exc.budget} classifier entries together; "
            "simplify the predicates or raise --budget",
            SourcePos(pf.filename, 1, 1),
            text,
        ) from None
    if options.port_match == "ternary":
        laid_out = expand_port_ranges(laid_out)
    return Compiled(pf, tuple(laid_out), _chains(pf), options.port_match)


def _budget_error(pf: ast.PolicyFile, pol: ast.Policy, exc: BudgetExceeded, text: str | None) -> SourceError:
    return SourceError(
        f"policy '{pol.name}' expands to more than {exc.budget} classifier entries; "
        "simplify the predicate or raise --budget",
        SourcePos(pf.filename, pol.loc.line, pol.loc.column),
        text,
    )


def _chains(pf: ast.PolicyFile) -> dict[str, Chain]:
    types = {mb.name: mb for mb in pf.middleboxes}
    chains: dict[str, Chain] = {}
    for chain_id, pol in enumerate(pf.policies, start=1):
        steps: list[ChainStep] = []
        for hop in pol.hops:
            if isinstance(hop, ast.TypeHop):
                mb = types[hop.name]
                steps.append(TypeStep(mb.name, mb.instances, mb.select.value))
            else:
                steps.append(AddressStep(hop.address))
        chains[pol.name] = Chain(pol.name, chain_id, tuple(steps))
    return chains


# ---- driving them -----------------------------------------------------------


def front(text: str, filename: str) -> tuple[list[tuple[int, str]], ast.PolicyFile]:
    """The statements (first line, text) and the AST, raising every error found together."""
    statements = split_statements(text)
    pf, errors = build(statements, filename, text)
    if errors:
        raise SourceErrors(errors)
    return statements, pf


def compile_text(text: str, filename: str = "<policy>", options: Options | None = None) -> Compiled:
    """Compile a policy file's text; raises :class:`SourceErrors` for bad input."""
    _, pf = front(text, filename)
    return entries(pf, normal(pf), options or Options(), text)


def dump_stage(text: str, filename: str, stage: Stage, options: Options | None = None) -> str | Compiled:
    """The output of ``stage`` as text (parse, ast, normal) or the Compiled result (entries)."""
    statements, pf = front(text, filename)
    if stage == "parse":
        return "".join(parse_tree(chunk, first_line).pretty() for first_line, chunk in statements)
    if stage == "ast":
        return ast.format_file(pf)
    formulas = normal(pf)
    if stage == "normal":
        return "".join(f"policy {pol.name}: {format_formula(f)}\n" for pol, f in formulas)
    return entries(pf, formulas, options or Options(), text)
