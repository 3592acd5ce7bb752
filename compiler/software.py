"""The agent's side of the classifier: first match over the policies, compiled to Python.

The NIC punts a SYN it cannot decide with ``policy_id = SOFTWARE_FLAG | N`` (a ``software``
entry, :mod:`dysco.compiler.placement`): the policies before chain id ``N`` are known not to
match it, so the evaluator tries the policies from ``N`` on, in file order, and the first
whose predicate holds gives the chain; None means no chain (forward the SYN untouched).

Only the policies an index says can match the SYN are tried
(:mod:`dysco.compiler.candidates`).  The predicates, as the parser resolved them
(:mod:`dysco.compiler.ast`, whose meaning :func:`dysco.compiler.evaluate.holds` states), are
turned into Python functions, compiled 32 at a time the first time a SYN needs one of them.
A predicate nested too deep for Python's parser is interpreted by ``holds`` instead.

    sw = SoftwareClassifier.from_compiled(compiled)
    chain_id = sw.classify(Syn(src, dst, sport, dport), start=N)   # or None
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dysco.compiler.ast import AddrMatch, Always, BoolOp, Dir, Not, Policy, PolicyFile, PortMatch, Pred
from dysco.compiler.candidates import CandidateIndex, first_match, policy_index
from dysco.compiler.entries import SOFTWARE_FLAG
from dysco.compiler.evaluate import Syn, holds
from dysco.compiler.passes import Compiled

__all__ = ["SOFTWARE_FLAG", "SoftwareClassifier", "is_software", "software_start"]

BLOCK = 32
"""Policies per generated function."""
_MAX_NESTING = 60
"""Deeper predicates are interpreted (CPython's parser allows 200 nested parentheses)."""

_Test = Callable[[int, int, int, int], bool]


def is_software(policy_id: int) -> bool:
    """Whether a punt's policy id asks the agent to classify the SYN itself."""
    return bool(policy_id & SOFTWARE_FLAG)


def software_start(policy_id: int) -> int:
    """The chain id of the first policy to try for a software punt's ``policy_id``."""
    return policy_id & (SOFTWARE_FLAG - 1)


class _TooDeep(Exception):
    pass


def _directed(d: Dir, on_src: str, on_dst: str) -> str:
    if d is Dir.SRC:
        return on_src
    if d is Dir.DST:
        return on_dst
    return f"({on_src} {'or' if d is Dir.SRC_OR_DST else 'and'} {on_dst})"


def _port(var: str, lo: int, hi: int) -> str:
    return f"{var} == {lo}" if lo == hi else f"{lo} <= {var} <= {hi}"


def _source(pred: Pred, depth: int = 0) -> str:
    """Python source for ``pred`` over ``s``, ``d``, ``sp``, ``dp`` (as :func:`holds` reads it)."""
    if depth > _MAX_NESTING:
        raise _TooDeep
    kind = type(pred)
    if kind is AddrMatch:
        assert isinstance(pred, AddrMatch)
        m, v = pred.mask, pred.value & pred.mask
        return _directed(pred.dir, f"s & {m} == {v}", f"d & {m} == {v}")
    if kind is PortMatch:
        assert isinstance(pred, PortMatch)
        lo, hi = pred.low, pred.high
        return _directed(pred.dir, _port("sp", lo, hi), _port("dp", lo, hi))
    if kind is Always:
        return "True"
    if kind is Not:
        assert isinstance(pred, Not)
        inner = pred.operand
        negate = True
        while type(inner) is Not:  # not not x is x
            inner, negate = inner.operand, not negate
        text = _source(inner, depth + 1)
        return f"(not {text})" if negate else text
    assert isinstance(pred, BoolOp)
    # a chain of one operator (a or b or c ...) is one level, not one per operator
    op = pred.op
    operands: list[Pred] = []
    stack: list[Pred] = [pred]
    while stack:
        p = stack.pop()
        if type(p) is BoolOp and p.op == op:
            stack.append(p.right)
            stack.append(p.left)
        else:
            operands.append(p)
    return "(" + f" {op} ".join(_source(o, depth + 1) for o in operands) + ")"


class SoftwareClassifier:
    """First match over the policies of a file, in file order; chain ids from 1."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.names = tuple(pol.name for pol in policies)
        self._preds = tuple(pol.predicate for pol in policies)
        self._blocks: list[tuple[_Test, ...] | None] = [None] * ((len(policies) + BLOCK - 1) // BLOCK)
        self._index: CandidateIndex | None = None

    @classmethod
    def from_policies(cls, pf: PolicyFile) -> SoftwareClassifier:
        return cls(pf.policies)

    @classmethod
    def from_compiled(cls, compiled: Compiled) -> SoftwareClassifier:
        return cls(compiled.source.policies)

    def name(self, chain_id: int) -> str:
        return self.names[chain_id - 1]

    def classify(self, p: Syn, start: int = 1) -> int | None:
        """The chain id of the first policy from chain id ``start`` on that holds, or None."""
        index = self._index
        if index is None:
            index = self._index = policy_index(self._preds)
        s, d, sp, dp = p.src, p.dst, p.sport, p.dport
        blocks = self._blocks

        def test(j: int) -> bool:
            b, i = divmod(j, BLOCK)
            tests = blocks[b] or self._compile(b)
            return tests[i](s, d, sp, dp)

        found = first_match(index.lists(s, d, sp, dp), max(start, 1) - 1, test)
        return None if found is None else found + 1

    def classify_punt(self, p: Syn, policy_id: int) -> int | None:
        """:meth:`classify` for a software punt's ``policy_id``."""
        return self.classify(p, software_start(policy_id))

    def _compile(self, b: int) -> tuple[_Test, ...]:
        first = b * BLOCK
        preds = self._preds[first : first + BLOCK]
        conds = []
        slow: dict[str, Pred] = {}
        for i, pred in enumerate(preds):
            try:
                conds.append(_source(pred))
            except _TooDeep:
                slow[f"f{i}"] = pred
                conds.append(f"holds(f{i}, Syn(s, d, sp, dp))")
        source = "tests = (\n" + "".join(f"    lambda s, d, sp, dp: {c},\n" for c in conds) + ")"
        scope: dict[str, object] = {"holds": holds, "Syn": Syn, **slow}
        exec(compile(source, f"<policies {first + 1}-{first + len(preds)}>", "exec"), scope)
        tests: tuple[_Test, ...] = scope["tests"]  # type: ignore[assignment]
        self._blocks[b] = tests
        return tests
