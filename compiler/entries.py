"""Pass 4: normal forms -> prioritised classifier entries.

Each policy's formula becomes a *decision list*: boxes with a verdict, the first
box that holds deciding, "no match" when none does.  Lists combine exactly
(``and``/``or``) without a DNF of negations: a negated address becomes a
"no" box ahead of the rest.  The policies are then laid out in file order;
wherever a policy says "no" for a box, the later policies are laid out again
inside that box before a ``bypass`` entry closes it, so the first matching entry
of the final list always gives the chain of the first policy whose predicate
holds.  Entries that can never decide anything are removed.  Each step counts
against a budget, so a predicate that would blow up stops with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dysco.compiler.boxes import TOP, Box, PRange, Ternary, range_to_prefixes
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


@dataclass(slots=True)
class Rule:
    box: Box
    verdict: bool


@dataclass(slots=True)
class Entry:
    """One classifier entry, before or after port-range expansion."""

    priority: int
    policy: str
    action: Literal["chain", "bypass"]
    chain_id: int
    src: Ternary
    dst: Ternary
    sport: PRange | Ternary
    dport: PRange | Ternary

    def holds(self, src: int, dst: int, sport: int, dport: int) -> bool:
        return (
            self.src.holds(src)
            and self.dst.holds(dst)
            and self.sport.holds(sport)
            and self.dport.holds(dport)
        )


# ---- decision lists per formula -------------------------------------------


def decision_list(f: Formula, budget: int) -> list[Rule]:
    match f:
        case Const(value=v):
            return [Rule(TOP, True)] if v else []
        case Atom(field=fld, constraint=c, negated=False):
            return [Rule(Box.of(fld, c), True)]
        case Atom(field=fld, constraint=PRange() as r, negated=True):
            return [Rule(Box.of(fld, part), True) for part in r.complement()]
        case Atom(field=fld, constraint=c, negated=True):
            return [Rule(Box.of(fld, c), False), Rule(TOP, True)]
        case Junction(op=op, terms=terms) if all(isinstance(t, Atom) and not t.negated for t in terms):
            return _plain(op, terms)  # type: ignore[arg-type]
        case Junction(op=op, terms=terms):
            lists = [decision_list(t, budget) for t in terms]
            # lists without "no" boxes first: they do not multiply what follows them
            lists.sort(key=lambda dl: (sum(not r.verdict for r in dl), len(dl)))
            combine = _and if op == "and" else _or
            out = lists[0]
            for dl in lists[1:]:
                out = _prune(combine(out, dl, budget))
            return out
    raise AssertionError(f)


def _plain(op: str, atoms: tuple[Atom, ...]) -> list[Rule]:
    """``and``/``or`` of positive atoms: one box, or one box per atom; no "no" boxes."""
    boxes = [Box.of(a.field, a.constraint) for a in atoms]
    if op == "and":
        acc: Box | None = boxes[0]
        for b in boxes[1:]:
            acc = acc.meet(b) if acc is not None else None
        return [Rule(acc, True)] if acc is not None else []
    out: list[Rule] = []
    for b in boxes:
        if not any(b.within(r.box) for r in out):
            out.append(Rule(b, True))
    return out


def _positive(rules: list[Rule]) -> bool:
    return all(r.verdict for r in rules)


def _and(left: list[Rule], right: list[Rule], budget: int) -> list[Rule]:
    out: list[Rule] = []
    if _positive(left) and _positive(right):
        # unions of boxes: the conjunction is the union of the pairwise intersections
        for r in left:
            for s in right:
                b = r.box.meet(s.box)
                if b is not None:
                    out.append(Rule(b, True))
            if len(out) > budget:
                raise BudgetExceeded(len(out), budget)
        return out
    for r in left:
        if r.verdict:
            for s in right:
                b = r.box.meet(s.box)
                if b is not None:
                    out.append(Rule(b, s.verdict))
        out.append(Rule(r.box, False))
        if len(out) > budget:
            raise BudgetExceeded(len(out), budget)
    return out


def _or(left: list[Rule], right: list[Rule], budget: int) -> list[Rule]:
    if _positive(left):  # nothing in left says "no": right simply follows
        if len(left) + len(right) > budget:
            raise BudgetExceeded(len(left) + len(right), budget)
        return left + right
    out: list[Rule] = []
    for r in left:
        if not r.verdict:
            for s in right:
                b = r.box.meet(s.box)
                if b is not None:
                    out.append(Rule(b, s.verdict))
        out.append(r)
        if len(out) > budget:
            raise BudgetExceeded(len(out), budget)
    out.extend(right)
    if len(out) > budget:
        raise BudgetExceeded(len(out), budget)
    return out


def _drop_redundant(boxes: list[Box], decisions: list[object]) -> list[int]:
    """Indices of the entries to keep.

    First, an entry contained in an earlier kept entry never decides: drop it.  Then,
    from the right, an entry contained in a later kept entry with the same decision,
    with no kept entry in between that decides differently and overlaps it, decides
    nothing that entry would not: drop it too.  Every removal is justified by an entry
    that stays, so removals never justify each other.
    """
    if len(boxes) < 2:
        return list(range(len(boxes)))
    kept: list[int] = []
    for i, b in enumerate(boxes):
        for k in kept:
            if b.within(boxes[k]):
                break
        else:
            kept.append(i)
    final: list[int] = []  # kept indices, right to left
    for i in reversed(kept):
        b, decision = boxes[i], decisions[i]
        for j in reversed(final):  # nearest first
            if decisions[j] == decision:
                if b.within(boxes[j]):
                    break  # redundant
            elif b.intersects(boxes[j]):
                final.append(i)
                break
        else:
            final.append(i)
    final.reverse()
    return final


def _keep(boxes: list[Box], decisions: list[object]) -> list[int]:
    """Indices of the entries that still decide something, in order.

    Drops redundant entries (see :func:`_drop_redundant`), then entries whose decision is
    "no" (falsy: a "no" verdict, a bypass) that no later "yes" entry overlaps, since
    falling through to the end gives "no" as well.
    """
    kept = _drop_redundant(boxes, decisions)
    if all(decisions[i] for i in kept):
        return kept
    out: list[int] = []
    later_yes: list[Box] = []
    for i in reversed(kept):
        if decisions[i]:
            later_yes.append(boxes[i])
            out.append(i)
        elif any(boxes[i].intersects(b) for b in later_yes):
            out.append(i)
    out.reverse()
    return out


def _prune(rules: list[Rule]) -> list[Rule]:
    return [rules[i] for i in _keep([r.box for r in rules], [r.verdict for r in rules])]


# ---- laying out the policies ----------------------------------------------


@dataclass(slots=True)
class PolicyRules:
    name: str
    chain_id: int
    rules: tuple[Rule, ...]


@dataclass(slots=True)
class _Draft:
    box: Box
    policy: str
    chain_id: int  # 0 for bypass


def layout(policies: list[PolicyRules], budget: int) -> list[Entry]:
    """The classifier for the policies in file order, highest priority first."""
    drafts = _pruned_drafts(_emit(policies, 0, None, budget, []))
    n = len(drafts)
    return [
        Entry(
            priority=PRIORITY_STEP * (n - i),
            policy=d.policy,
            action="chain" if d.chain_id else "bypass",
            chain_id=d.chain_id,
            src=d.box.src,
            dst=d.box.dst,
            sport=d.box.sport,
            dport=d.box.dport,
        )
        for i, d in enumerate(drafts)
    ]


def _emit(
    policies: list[PolicyRules], start: int, region: Box | None, budget: int, out: list[_Draft]
) -> list[_Draft]:
    for j in range(start, len(policies)):
        pol = policies[j]
        for r in pol.rules:
            b = r.box if region is None else r.box.meet(region)
            if b is None:
                continue
            if r.verdict:
                out.append(_Draft(b, pol.name, pol.chain_id))
            else:
                _emit(policies, j + 1, b, budget, out)
                out.append(_Draft(b, pol.name, 0))
            if len(out) > budget:
                raise BudgetExceeded(len(out), budget)
    return out


def _pruned_drafts(drafts: list[_Draft]) -> list[_Draft]:
    """Remove entries that never decide anything, until nothing changes."""
    while True:
        out = [drafts[i] for i in _keep([d.box for d in drafts], [d.chain_id for d in drafts])]
        if len(out) == len(drafts):
            return out
        drafts = out


def expand_port_ranges(entries: list[Entry]) -> list[Entry]:
    """For targets without range match: each port range becomes value/mask prefixes."""
    out: list[Entry] = []
    for e in entries:
        assert isinstance(e.sport, PRange) and isinstance(e.dport, PRange)
        for sp in range_to_prefixes(e.sport.low, e.sport.high):
            for dp in range_to_prefixes(e.dport.low, e.dport.high):
                out.append(Entry(e.priority, e.policy, e.action, e.chain_id, e.src, e.dst, sp, dp))
    return out
