"""Decision lists, one per policy; the hull pass; and the classifier entry.

Each policy's formula becomes a *decision list*: boxes with a verdict, the first
box that holds deciding, "no match" when none does.  Lists combine exactly
(``and``/``or``) without a DNF of negations: a negated address becomes a
"no" box ahead of the rest.  Each step counts against a budget; a policy whose
list would pass it raises :class:`BudgetExceeded`, and the placement pass
(:mod:`dysco.compiler.placement`) leaves that policy to the agent's software
evaluator instead.  :func:`pred_hull` (the hull pass) gives a box around every SYN a
predicate can match, straight from the AST: what such a policy costs in the classifier,
and what the placement knows of a policy it has not reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from dysco.compiler.ast import AddrMatch, Always, BoolOp, Dir, Not, PortMatch, Pred
from dysco.compiler.boxes import (
    TOP,
    Box,
    Field,
    PRange,
    Ternary,
    box_of,
    join,
    meet,
    range_to_prefixes,
    within,
)
from dysco.compiler.normalise import Atom, Const, Formula, Junction

# Not frozen: these are built in bulk, and constructing a frozen dataclass costs about five
# times as much. They are never mutated after construction.

PRIORITY_STEP = 10
"""Gap between consecutive priorities, left for entries added later."""


class BudgetExceeded(Exception):
    def __init__(self, count: int, budget: int) -> None:
        super().__init__(f"{count} entries > budget {budget}")
        self.count = count
        self.budget = budget


_T = TypeVar("_T", bound=tuple[Any, ...])

Rule = tuple[Box, bool]
"""A box and the verdict for the SYNs in it (a plain tuple: decision lists are rebuilt often)."""


SOFTWARE_FLAG = 1 << 15
"""Set in the policy id of a "classify in software" punt; the low 15 bits are the chain id of the
first policy the agent's evaluator tries (:mod:`dysco.compiler.software`).  Chain ids of policies
therefore stay below it."""

Action = Literal["chain", "bypass", "software"]


@dataclass(slots=True)
class Entry:
    """One classifier entry, before or after port-range expansion.

    ``chain``: punt the SYN with the policy's chain id.  ``bypass`` (chain id 0): forward it
    untouched.  ``software``: punt it for the agent to classify, from the policy with chain id
    ``chain_id`` on (the policies before it are known not to match a SYN that gets here)."""

    priority: int
    policy: str
    action: Action
    chain_id: int
    src: Ternary
    dst: Ternary
    sport: PRange | Ternary
    dport: PRange | Ternary

    @property
    def policy_id(self) -> int:
        """The ``policy_id`` the NIC's punt carries (0 for bypass, which does not punt)."""
        return self.chain_id | SOFTWARE_FLAG if self.action == "software" else self.chain_id

    def holds(self, src: int, dst: int, sport: int, dport: int) -> bool:
        return (
            self.src.holds(src)
            and self.dst.holds(dst)
            and self.sport.holds(sport)
            and self.dport.holds(dport)
        )


# ---- decision lists per formula -------------------------------------------


def decision_list(f: Formula, budget: int) -> list[Rule]:
    kind = type(f)
    if kind is Atom:
        assert isinstance(f, Atom)
        c = f.constraint
        if not f.negated:
            return [(box_of(f.field, c), True)]
        if isinstance(c, PRange):
            return [(box_of(f.field, part), True) for part in c.complement()]
        return [(box_of(f.field, c), False), (TOP, True)]
    if kind is Junction:
        assert isinstance(f, Junction)
        terms = f.terms
        if all(type(t) is Atom and not t.negated for t in terms):
            return _plain(f.op, terms)  # type: ignore[arg-type]
        lists = [decision_list(t, budget) for t in terms]
        # lists without "no" boxes first: they do not multiply what follows them
        lists.sort(key=_cost)
        combine = _and if f.op == "and" else _or
        out = lists[0]
        for dl in lists[1:]:
            out = _prune(combine(out, dl, budget))
        return out
    assert isinstance(f, Const)
    return [(TOP, True)] if f.value else []


def _cost(rules: list[Rule]) -> tuple[int, int]:
    return sum(not verdict for _, verdict in rules), len(rules)


def _plain(op: str, atoms: tuple[Atom, ...]) -> list[Rule]:
    """``and``/``or`` of positive atoms: one box, or one box per atom; no "no" boxes."""
    boxes = [box_of(a.field, a.constraint) for a in atoms]
    if op == "and":
        acc: Box | None = boxes[0]
        for b in boxes[1:]:
            acc = meet(acc, b) if acc is not None else None
        return [(acc, True)] if acc is not None else []
    out: list[Rule] = []
    for b in boxes:
        if not any(within(b, r) for r, _ in out):
            out.append((b, True))
    return out


def _positive(rules: list[Rule]) -> bool:
    return all(verdict for _, verdict in rules)


def _and(left: list[Rule], right: list[Rule], budget: int) -> list[Rule]:
    out: list[Rule] = []
    if _positive(left) and _positive(right):
        # unions of boxes: the conjunction is the union of the pairwise intersections
        for r, _ in left:
            for s, _ in right:
                b = meet(r, s)
                if b is not None:
                    out.append((b, True))
            if len(out) > budget:
                raise BudgetExceeded(len(out), budget)
        return out
    for r, verdict in left:
        if verdict:
            for s, v in right:
                b = meet(r, s)
                if b is not None:
                    out.append((b, v))
        out.append((r, False))
        if len(out) > budget:
            raise BudgetExceeded(len(out), budget)
    return out


def _or(left: list[Rule], right: list[Rule], budget: int) -> list[Rule]:
    if _positive(left):  # nothing in left says "no": right simply follows
        if len(left) + len(right) > budget:
            raise BudgetExceeded(len(left) + len(right), budget)
        return left + right
    out: list[Rule] = []
    for rule in left:
        r, verdict = rule
        if not verdict:
            for s, v in right:
                b = meet(r, s)
                if b is not None:
                    out.append((b, v))
        out.append(rule)
        if len(out) > budget:
            raise BudgetExceeded(len(out), budget)
    out.extend(right)
    if len(out) > budget:
        raise BudgetExceeded(len(out), budget)
    return out


def keep_deciding(items: list[_T], d: int) -> list[_T]:
    """The entries that still decide something, in order.  Each entry is a tuple of its box
    (at 0) and its decision (at ``d``: a verdict, or a chain id with 0 for bypass).

    First, an entry contained in an earlier kept entry never decides: drop it.  Then,
    from the right, an entry contained in a later kept entry with the same decision,
    with no kept entry in between that decides differently and overlaps it, decides
    nothing that entry would not: drop it too.  Every removal is justified by an entry
    that stays, so removals never justify each other.  Last, drop entries whose decision
    is "no" (falsy) that no later "yes" entry overlaps, since falling through to the end
    gives "no" as well.

    (The box tests are written out: this is the compiler's innermost loop.)
    """
    if len(items) < 2:
        return items if not items or items[0][d] else []
    kept: list[_T] = []
    kept_boxes: list[Box] = []
    for item in items:
        box = item[0]
        av, am, asl, ash, adl, adh = box
        for bv, bm, bsl, bsh, bdl, bdh in kept_boxes:
            if bsl <= asl and ash <= bsh and bdl <= adl and adh <= bdh and not bm & ~am and av & bm == bv:
                break  # within an earlier kept entry
        else:
            kept.append(item)
            kept_boxes.append(box)
    final: list[_T] = []  # right to left
    any_no = False
    for item in reversed(kept):
        av, am, asl, ash, adl, adh = item[0]
        decision = item[d]
        for later in reversed(final):  # nearest first
            bv, bm, bsl, bsh, bdl, bdh = later[0]
            if later[d] == decision:
                if bsl <= asl and ash <= bsh and bdl <= adl and adh <= bdh and not bm & ~am and av & bm == bv:
                    break  # redundant
            elif not (av ^ bv) & am & bm and asl <= bsh and bsl <= ash and adl <= bdh and bdl <= adh:
                final.append(item)  # overlaps a later entry that decides differently
                any_no = any_no or not decision
                break
        else:
            final.append(item)
            any_no = any_no or not decision
    if not any_no:
        final.reverse()
        return final
    out: list[_T] = []
    later_yes: list[Box] = []
    for item in final:  # right to left
        if item[d]:
            later_yes.append(item[0])
            out.append(item)
            continue
        av, am, asl, ash, adl, adh = item[0]
        for bv, bm, bsl, bsh, bdl, bdh in later_yes:
            if not (av ^ bv) & am & bm and asl <= bsh and bsl <= ash and adl <= bdh and bdl <= adh:
                out.append(item)
                break
    out.reverse()
    return out


def _prune(rules: list[Rule]) -> list[Rule]:
    return keep_deciding(rules, 1)


def pred_hull(pred: Pred) -> Box | None:
    """A box that holds every SYN ``pred`` matches (None: it matches none), in one walk of
    the predicate: the placement needs it for every policy, before any is normalised."""
    kind = type(pred)
    if kind is BoolOp:
        assert isinstance(pred, BoolOp)
        left, right = pred_hull(pred.left), pred_hull(pred.right)
        if pred.op == "and":
            return meet(left, right) if left is not None and right is not None else None
        if left is None or right is None:
            return left or right
        return join(left, right)
    if kind is AddrMatch or kind is PortMatch:
        return _primitive_hull(pred, negated=False)  # type: ignore[arg-type]
    if kind is Always:
        return TOP
    assert isinstance(pred, Not)
    inner = pred.operand
    if type(inner) is Not:
        return pred_hull(inner.operand)
    if type(inner) is Always:
        return None
    if type(inner) is PortMatch:
        return _primitive_hull(inner, negated=True)
    return TOP


def _primitive_hull(pred: AddrMatch | PortMatch, negated: bool) -> Box | None:
    if isinstance(pred, AddrMatch):
        if negated:
            return TOP
        c: Ternary | PRange = Ternary(pred.value & pred.mask, pred.mask)
        fields = (Field.SRC_ADDR, Field.DST_ADDR)
    else:
        c = PRange(pred.low, pred.high)
        fields = (Field.SRC_PORT, Field.DST_PORT)
        if negated:
            parts = c.complement()
            if not parts:
                return None
            c = PRange(parts[0].low, parts[-1].high)
            if pred.dir is Dir.SRC_AND_DST:  # not (both in range): either may be anything
                return TOP
            if pred.dir is Dir.SRC_OR_DST:  # neither in range
                return meet(box_of(fields[0], c), box_of(fields[1], c))
    src, dst = box_of(fields[0], c), box_of(fields[1], c)
    d = pred.dir
    if d is Dir.SRC:
        return src
    if d is Dir.DST:
        return dst
    if d is Dir.SRC_OR_DST:
        return join(src, dst)
    return meet(src, dst)


def expand_port_ranges(entries: list[Entry]) -> list[Entry]:
    """For targets without range match: each port range becomes value/mask prefixes."""
    out: list[Entry] = []
    for e in entries:
        assert isinstance(e.sport, PRange) and isinstance(e.dport, PRange)
        for sp in range_to_prefixes(e.sport.low, e.sport.high):
            for dp in range_to_prefixes(e.dport.low, e.dport.high):
                out.append(Entry(e.priority, e.policy, e.action, e.chain_id, e.src, e.dst, sp, dp))
    return out
