"""The compiler: an ordered list of pure passes.

    text --parse+build--> PolicyFile --hull--> a box around each predicate
         --place--> Compiled (classifier entries within the table's capacity, and chains)

The placement (:mod:`dysco.compiler.placement`) runs the two per-policy passes,
``normalise`` (:mod:`dysco.compiler.normalise`) and ``entries`` (decision lists,
:mod:`dysco.compiler.entries`), on each policy it reaches, in file order: once the
classifier decides every SYN, or is full, later policies are left to the hulls.

Parsing and building the AST are one pass over each statement: the LALR parser
calls the builder's actions as it reduces, so no parse tree is made
(:mod:`dysco.compiler.build`).  :data:`STAGES` is the order, written down once;
``dysco compile --stage`` dumps the output of any of them, the parse stage as the
tree lark would build from the same grammar (:func:`dysco.compiler.parse.parse_tree`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

from dysco.compiler import ast
from dysco.compiler.boxes import Box
from dysco.compiler.build import build
from dysco.compiler.cover import boxes_of
from dysco.compiler.entries import (
    SOFTWARE_FLAG,
    BudgetExceeded,
    Entry,
    Rule,
    decision_list,
    expand_port_ranges,
    pred_hull,
)
from dysco.compiler.normalise import Formula, format_formula, normalise
from dysco.compiler.parse import parse_tree, split_statements
from dysco.compiler.placement import Limits, place
from dysco.errors import SourceError, SourceErrors, SourcePos

Stage = Literal["parse", "ast", "normal", "entries"]
STAGES: tuple[Stage, ...] = ("parse", "ast", "normal", "entries")
PortMatch = Literal["range", "ternary"]

DEFAULT_BUDGET = 64
DEFAULT_CAPACITY = 4096
"""The classifier table's size in p4src/dysco.p4 (``dysco compile --p4info`` reads a target's)."""
MAX_POLICIES = SOFTWARE_FLAG - 1
"""Chain ids share the punt's 16-bit policy id with the software flag."""


@dataclass(frozen=True, slots=True)
class Options:
    budget: int = DEFAULT_BUDGET
    """Most boxes one policy's decision list may have; a policy past it is classified in software."""
    capacity: int = DEFAULT_CAPACITY
    """Entries the classifier table holds; the policies that do not fit are classified in software."""
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
class Stats:
    """How the compilation went: seconds per pass, and what the classifier could not take."""

    seconds: dict[str, float] = field(default_factory=dict)
    nic_policies: int = 0
    """Policies laid out in the classifier before it was full (all of them when it was not)."""
    over_budget: tuple[str, ...] = ()
    """Policies whose decision list passed the budget: software entries stand for them."""
    capacity: int = DEFAULT_CAPACITY


@dataclass(frozen=True, slots=True)
class Compiled:
    """What the compiler produces: classifier entries and the chains they point at."""

    source: ast.PolicyFile
    entries: tuple[Entry, ...]
    chains: dict[str, Chain] = field(default_factory=dict)
    port_match: PortMatch = "range"
    stats: Stats = field(default_factory=Stats)

    def chain_by_id(self, chain_id: int) -> Chain | None:
        for chain in self.chains.values():
            if chain.id == chain_id:
                return chain
        return None


# ---- the passes -------------------------------------------------------------


def normal(pf: ast.PolicyFile) -> list[tuple[ast.Policy, Formula]]:
    return [(pol, normalise(pol.predicate)) for pol in pf.policies]


class _Policies:
    """The placement's view of the file: hulls up front, normal forms and decision lists
    on demand (timed, for ``--stats``)."""

    def __init__(self, pf: ast.PolicyFile, budget: int) -> None:
        t0 = time.perf_counter()
        self._policies = pf.policies
        self._hulls = [pred_hull(pol.predicate) for pol in pf.policies]
        self._rules: dict[int, tuple[Rule, ...] | None] = {}
        self._budget = budget
        self.over_budget: list[str] = []
        self.seconds = {"hull": time.perf_counter() - t0, "normal": 0.0, "entries": 0.0}

    def __len__(self) -> int:
        return len(self._policies)

    def name(self, j: int) -> str:
        return self._policies[j].name

    def hull(self, j: int) -> Box | None:
        return self._hulls[j]

    def boxes(self, j: int) -> list[Box]:
        return boxes_of(self._policies[j].predicate)

    def rules(self, j: int) -> tuple[Rule, ...] | None:
        if j in self._rules:
            return self._rules[j]
        t0 = time.perf_counter()
        formula = normalise(self._policies[j].predicate)
        t1 = time.perf_counter()
        try:
            dl: tuple[Rule, ...] | None = tuple(decision_list(formula, self._budget))
        except BudgetExceeded:
            dl = None
            self.over_budget.append(self._policies[j].name)
        self.seconds["normal"] += t1 - t0
        self.seconds["entries"] += time.perf_counter() - t1
        self._rules[j] = dl
        return dl


def entries(pf: ast.PolicyFile, options: Options, text: str | None = None) -> Compiled:
    """Hulls, then the placement, which normalises and builds decision lists as it goes."""
    if len(pf.policies) > MAX_POLICIES:
        pol = pf.policies[MAX_POLICIES]
        raise SourceError(
            f"more than {MAX_POLICIES} policies: the classifier's policy id has room for no more",
            SourcePos(pf.filename, pol.loc.line, pol.loc.column),
            text,
        )
    policies = _Policies(pf, options.budget)
    t0 = time.perf_counter()
    placed = place(policies, Limits(options.capacity, port_match=options.port_match))
    laid_out = placed.entries
    if options.port_match == "ternary":
        laid_out = expand_port_ranges(laid_out)
    seconds = dict(policies.seconds)
    seconds["place"] = time.perf_counter() - t0 - seconds["normal"] - seconds["entries"]
    stats = Stats(seconds, placed.nic_policies, tuple(policies.over_budget), options.capacity)
    return Compiled(pf, tuple(laid_out), _chains(pf), options.port_match, stats)


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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The passes allocate hundreds of thousands of small objects that make no reference
    cycles; CPython's cycle collector, triggered by the allocation count alone, walked them
    over and over for a fifth of the time of a 10,000-policy file.  It runs again after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compile_text(text: str, filename: str = "<policy>", options: Options | None = None) -> Compiled:
    """Compile a policy file's text; raises :class:`SourceErrors` for bad input."""
    with _collector_paused():
        return _compile(text, filename, options)


def _compile(text: str, filename: str, options: Options | None) -> Compiled:
    t0 = time.perf_counter()
    _, pf = front(text, filename)
    t1 = time.perf_counter()
    compiled = entries(pf, options or Options(), text)
    seconds = {"parse+ast": t1 - t0, **compiled.stats.seconds}
    return replace(compiled, stats=replace(compiled.stats, seconds=seconds))


def dump_stage(text: str, filename: str, stage: Stage, options: Options | None = None) -> str | Compiled:
    """The output of ``stage`` as text (parse, ast, normal) or the Compiled result (entries)."""
    if stage == "entries":
        return compile_text(text, filename, options)
    statements, pf = front(text, filename)
    if stage == "parse":
        return "".join(parse_tree(chunk, first_line).pretty() for first_line, chunk in statements)
    if stage == "ast":
        return ast.format_file(pf)
    formulas = normal(pf)
    if stage == "normal":
        return "".join(f"policy {pol.name}: {format_formula(f)}\n" for pol, f in formulas)
