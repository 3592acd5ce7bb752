"""Pass 5: the policies' decision lists -> a classifier of bounded capacity, first match wins.

The policies are laid out in file order, each policy's boxes in its decision list's order,
so the first matching entry gives the first policy whose predicate holds.  Three things
would make that blow up, and each has a bound here instead of a refusal:

* A "no" box of policy *j* (SYNs there are not *j*'s, whatever *j*'s later boxes say) needs
  the later policies laid out again inside it before a ``bypass`` closes it.  That nested
  layout takes at most :attr:`Limits.nest_entries` entries, looks at most
  :attr:`Limits.nest_scan` policies and nests "no" boxes :data:`MAX_DEPTH` deep; where it
  stops, one ``software`` entry over the box sends the SYNs in it to the agent, which
  evaluates the policies from the one the layout stopped at.
* A policy whose decision list passed its budget (:class:`~dysco.compiler.entries.BudgetExceeded`)
  gets one ``software`` entry over its hull.
* The table is full: the policies laid out so far keep their entries, leaving room for
  ``software`` entries that cover the policies left out (:mod:`dysco.compiler.cover`); they
  start the agent at the first of those.

So every SYN is decided by the first matching entry, in the NIC, or in software by the
same policies in the same order.  Entries covered by an earlier one are not emitted (checked
against the last few entries and the widest ones), and a region stops once one entry
covers it; a classifier small enough is then pruned exactly
(:func:`~dysco.compiler.entries.keep_deciding`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from dysco.compiler.boxes import TOP, Box, box_fields, join, meet, range_to_prefixes
from dysco.compiler.cover import cover
from dysco.compiler.entries import PRIORITY_STEP, Entry, Rule, keep_deciding

Draft = tuple[Box, str, int]
"""A box, the policy's name and the decision: its chain id, 0 for bypass, or minus the
chain id of the policy software evaluation starts at."""

EXACT_PRUNE_LIMIT = 512
"""Drafts up to this many are pruned exactly (the pruning is quadratic)."""
TAIL_SHARE = 8
TAIL_MAX = 256
"""When the policies do not all fit, up to 1/8 of the table (at most 256 entries) is left for
the software entries that cover the policies left out."""
MAX_DEPTH = 3
"""How deep "no" boxes of later policies nest inside one before the rest goes to software."""
_RECENT = 4
"""Earlier entries every new box is checked against, besides the wide ones."""
_WIDE_BITS = 80
_WIDE_MAX = 32
"""Entries with at least this many free bits (of 96) are kept for the covered check, up to this many."""


class Policies(Protocol):
    """The policies in file order (chain id = index + 1).  The placement asks for a policy's
    decision list only when it reaches the policy, so an implementation can build them on
    demand: after the classifier is decided, a policy costs no more than its hull."""

    def __len__(self) -> int: ...

    def name(self, j: int) -> str: ...

    def hull(self, j: int) -> Box | None:
        """A box holding every SYN policy ``j`` matches (None: it matches none)."""

    def rules(self, j: int) -> tuple[Rule, ...] | None:
        """Policy ``j``'s decision list; None when it passed its budget (software then)."""

    def boxes(self, j: int) -> list[Box]:
        """Boxes whose union holds every SYN policy ``j`` matches (a few; for the tail's cover)."""


@dataclass(frozen=True, slots=True)
class Limits:
    capacity: int
    """Entries the classifier table holds."""
    nest_entries: int = 16
    """Most entries the later policies may take inside one "no" box."""
    nest_scan: int = 32
    """Most later policies looked at inside one "no" box."""
    port_match: Literal["range", "ternary"] = "range"


@dataclass(slots=True)
class Placement:
    """The placed entries and what went where."""

    entries: list[Entry]
    nic_policies: int
    """Policies laid out in the table before the "table full" software entry (all when it fits)."""


def place(policies: Policies, limits: Limits) -> Placement:
    return _Placer(policies, limits).run()


def _free_bits(b: Box) -> int:
    _, m, sl, sh, dl, dh = b
    return 64 - m.bit_count() + (sh - sl + 1).bit_length() - 1 + (dh - dl + 1).bit_length() - 1


def _ternary_cost(b: Box) -> int:
    _, _, sl, sh, dl, dh = b
    return len(range_to_prefixes(sl, sh)) * len(range_to_prefixes(dl, dh))


class _Nest:
    """The limits of one "no" box's nested layout: it may add ``limit`` entries after
    ``start`` (rolled-back ones do not count) and look at ``scans`` more policies."""

    __slots__ = ("limit", "scans", "start")

    def __init__(self, start: int, limit: int, scans: int) -> None:
        self.start = start
        self.limit = limit
        self.scans = scans


class _Placer:
    def __init__(self, policies: Policies, limits: Limits) -> None:
        self.policies = policies
        self.limits = limits
        self.cost: Callable[[Box], int] | None = _ternary_cost if limits.port_match == "ternary" else None
        self.out: list[Draft] = []
        self.used = 0
        """Table entries the drafts take (more than len(out) when ports expand to prefixes)."""
        self.wide: list[tuple[int, Box]] = []
        # suffix[i]: a box around everything policies i.. can match (None: nothing)
        suffix: list[Box | None] = [None] * (len(policies) + 1)
        acc: Box | None = None
        for i in range(len(policies) - 1, -1, -1):
            h = policies.hull(i)
            if h is not None:
                acc = h if acc is None else join(acc, h)
            suffix[i] = acc
        self.suffix = suffix

    # ---- the drafts --------------------------------------------------------------------------

    def _add(self, box: Box, name: str, decision: int) -> None:
        self.used += 1 if self.cost is None else self.cost(box)
        if len(self.wide) < _WIDE_MAX and _free_bits(box) >= _WIDE_BITS:
            self.wide.append((len(self.out), box))
        self.out.append((box, name, decision))

    def _rollback(self, mark: int) -> None:
        gone = self.out[mark:]
        del self.out[mark:]
        for box, _, _ in gone:
            self.used -= 1 if self.cost is None else self.cost(box)
        while self.wide and self.wide[-1][0] >= mark:
            self.wide.pop()

    def _covered(self, box: Box) -> bool:
        """Whether an earlier entry holds all of ``box`` (so it would never match first)."""
        av, am, asl, ash, adl, adh = box
        out = self.out
        for bv, bm, bsl, bsh, bdl, bdh in [d[0] for d in out[-_RECENT:]] + [w[1] for w in self.wide]:
            if bsl <= asl and ash <= bsh and bdl <= adl and adh <= bdh and not bm & ~am and av & bm == bv:
                return True
        return False

    # ---- the layout --------------------------------------------------------------------------

    def run(self) -> Placement:
        policies = self.policies
        n = len(policies)
        capacity = self.limits.capacity
        nic = n
        marks = [len(self.out)]  # where each policy's entries begin
        for j in range(n):
            if self.suffix[j] is None:
                break  # no later policy matches anything
            covered = self._policy(j, TOP, None)
            marks.append(len(self.out))
            rest = None if covered else self.suffix[j + 1]
            if self.used + (rest is not None) > capacity:
                nic = self._tail(marks)
                break
            if covered:
                break
        drafts = self.out
        if len(drafts) <= EXACT_PRUNE_LIMIT:
            while True:
                pruned = keep_deciding(drafts, 2)
                if len(pruned) == len(drafts):
                    break
                drafts = pruned
        return Placement(_entries(drafts), nic)

    def _tail(self, marks: list[int]) -> int:
        """The table is full: keep the policies whose entries leave room for a cover of the
        rest (:func:`~dysco.compiler.cover.cover`) and put that cover in as software entries
        from the first policy left out.  Returns how many policies are kept."""
        capacity = self.limits.capacity
        reserve = min(max(1, capacity // TAIL_SHARE), TAIL_MAX)
        k = len(marks) - 1
        while k > 0 and (k == len(marks) - 1 or self.used > capacity - reserve):
            k -= 1
            self._rollback(marks[k])
        room = capacity - self.used
        ports = self.limits.port_match == "ternary"
        boxes = [b for i in range(k, len(self.policies)) for b in self.policies.boxes(i)]
        name = self.policies.name(k)
        for b in cover(boxes, room, port_prefixes=ports):
            if not self._covered(b):
                self._add(b, name, -(k + 1))
        assert self.used <= capacity
        return k

    def _policy(self, j: int, region: Box, nest: _Nest | None, depth: int = 0) -> bool:
        """Lay out policy ``j`` inside ``region``; True when that decides all of the region.

        Nested (``nest`` given), a policy without a decision list, a "no" box deeper than
        :data:`MAX_DEPTH` or the nest's entries running out raise :class:`_Stop`: the
        caller leaves the region to software."""
        policies = self.policies
        name, chain_id = policies.name(j), j + 1
        rules = policies.rules(j)
        if rules is None:
            if nest is not None:
                raise _Stop
            h = policies.hull(j)
            b = meet(h, region) if h is not None else None
            if b is None:
                return False
            if not self._covered(b):
                self._add(b, name, -chain_id)
            return b == region
        top = region == TOP
        for r, verdict in rules:
            b = r if top else meet(r, region)
            if b is None or self._covered(b):
                continue
            if verdict:
                self._add(b, name, chain_id)
            else:
                if nest is not None and depth >= MAX_DEPTH:
                    raise _Stop
                if not self._nested(j + 1, b, nest, depth + 1):
                    self._add(b, name, 0)
            if nest is not None and len(self.out) - nest.start > nest.limit:
                raise _Stop
            if b == region:
                return True
        return False

    def _nested(self, start: int, region: Box, nest: _Nest | None, depth: int) -> bool:
        """The policies from ``start`` on inside ``region`` (a "no" box), within the nest's
        limits; True when they decide all of it (a ``bypass`` must close it otherwise).
        Where the limits stop the layout, the region's SYNs go to software."""
        if nest is None:
            nest = _Nest(len(self.out), self.limits.nest_entries, self.limits.nest_scan)
        policies = self.policies
        for i in range(start, len(policies)):
            rest = self.suffix[i]
            if rest is None or meet(rest, region) is None:
                return False  # nothing from here on matches inside the region
            mark = len(self.out)
            try:
                if nest.scans <= 0:
                    raise _Stop
                nest.scans -= 1
                if self._policy(i, region, nest, depth):
                    return True
            except _Stop:
                self._rollback(mark)
                self._add(region, policies.name(i), -(i + 1))
                return True
        return False


class _Stop(Exception):
    """A nested layout reached what it does not do; the region goes to software."""


def _entries(drafts: list[Draft]) -> list[Entry]:
    n = len(drafts)
    out: list[Entry] = []
    for i, (box, policy, decision) in enumerate(drafts):
        src, dst, sport, dport = box_fields(box)
        prio = PRIORITY_STEP * (n - i)
        if decision > 0:
            out.append(Entry(prio, policy, "chain", decision, src, dst, sport, dport))
        elif decision == 0:
            out.append(Entry(prio, policy, "bypass", 0, src, dst, sport, dport))
        else:
            out.append(Entry(prio, policy, "software", -decision, src, dst, sport, dport))
    return out
