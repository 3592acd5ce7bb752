"""What the deployed system gives a SYN: the NIC's classifier entries, then the agent.

:class:`NicTable` looks a SYN up in classifier entries the way a ternary/range table with
priorities does: the matching entry of highest priority wins, a miss forwards untouched.  The
entries' matches are turned into Python and an index picks the ones worth trying, so a
lookup in thousands of entries stays fast.  :class:`Deployed` puts it in front of the agent's
:class:`~dysco.compiler.software.SoftwareClassifier` for the SYNs a ``software`` entry punts:
this is what ``dysco classify`` runs, the same code as the agent's, on the entries as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from dysco.compiler.boxes import Box, PRange, Ternary
from dysco.compiler.candidates import CandidateIndex, first_match
from dysco.compiler.entries import Entry
from dysco.compiler.evaluate import Syn
from dysco.compiler.passes import Compiled
from dysco.compiler.software import SoftwareClassifier

BLOCK = 64
"""Entries per compiled batch."""

_Test = Callable[[int, int, int, int], bool]


def _field(var: str, c: Ternary | PRange, full: int) -> str | None:
    if isinstance(c, Ternary):
        mask = c.mask & full
        if mask == 0:
            return None
        return f"{var} & {mask} == {c.value & mask}"
    if c.low == 0 and c.high == full:
        return None
    if c.low == c.high:
        return f"{var} == {c.low}"
    return f"{c.low} <= {var} <= {c.high}"


def _condition(e: Entry) -> str:
    parts = [
        _field("s", e.src, 0xFFFFFFFF),
        _field("d", e.dst, 0xFFFFFFFF),
        _field("sp", e.sport, 0xFFFF),
        _field("dp", e.dport, 0xFFFF),
    ]
    return " and ".join(p for p in parts if p is not None) or "True"


def _port_span(c: Ternary | PRange) -> tuple[int, int]:
    """A range holding the ports ``c`` matches (exact for ranges and prefixes)."""
    if isinstance(c, PRange):
        return c.low, c.high
    low = c.value & c.mask
    return low, low | (~c.mask & 0xFFFF)


def _box(e: Entry) -> Box:
    sl, sh = _port_span(e.sport)
    dl, dh = _port_span(e.dport)
    value = (e.src.value & e.src.mask) << 32 | (e.dst.value & e.dst.mask)
    return (value, e.src.mask << 32 | e.dst.mask, sl, sh, dl, dh)


class NicTable:
    """Classifier entries, looked up as the NIC looks them up: the matching entry of highest
    priority.  An index (:mod:`dysco.compiler.candidates`) narrows the entries tried to
    those whose fields can match, as a tuple-space search does; they are tried in priority
    order."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        # highest priority first; among equal priorities (port prefixes of one entry) the order
        # does not matter, since they never overlap
        self.entries = tuple(sorted(entries, key=lambda e: -e.priority))
        self._index = CandidateIndex([_box(e)] for e in self.entries)
        self._batches: list[tuple[_Test, ...] | None] = [None] * ((len(self.entries) + BLOCK - 1) // BLOCK)

    def lookup(self, p: Syn) -> Entry | None:
        """The matching entry of highest priority, or None (a miss)."""
        s, d, sp, dp = p.src, p.dst, p.sport, p.dport
        batches = self._batches
        if len(batches) == 1:  # a small table: trying every entry in order is quicker
            for i, t in enumerate(batches[0] or self._compile(0)):
                if t(s, d, sp, dp):
                    return self.entries[i]
            return None

        def test(i: int) -> bool:
            b, k = divmod(i, BLOCK)
            tests = batches[b] or self._compile(b)
            return tests[k](s, d, sp, dp)

        found = first_match(self._index.lists(s, d, sp, dp), 0, test)
        return None if found is None else self.entries[found]

    def _compile(self, b: int) -> tuple[_Test, ...]:
        first = b * BLOCK
        conds = [_condition(e) for e in self.entries[first : first + BLOCK]]
        source = "tests = (\n" + "".join(f"    lambda s, d, sp, dp: {c},\n" for c in conds) + ")"
        scope: dict[str, object] = {}
        exec(compile(source, f"<classifier entries {first + 1}->", "exec"), scope)
        tests: tuple[_Test, ...] = scope["tests"]  # type: ignore[assignment]
        self._batches[b] = tests
        return tests


Where = Literal["nic", "software"]


@dataclass(frozen=True, slots=True)
class Verdict:
    policy: str | None
    """The policy whose chain the SYN takes; None: no chain, forwarded untouched."""
    where: Where
    """Decided by the NIC's entries alone, or by the agent after a software punt."""
    chain_id: int = 0


class Deployed:
    """The NIC's classifier entries and the agent's evaluator, as deployed from one compilation."""

    def __init__(self, compiled: Compiled) -> None:
        self.nic = NicTable(compiled.entries)
        self.software = SoftwareClassifier.from_compiled(compiled)

    def classify(self, p: Syn) -> Verdict:
        e = self.nic.lookup(p)
        if e is None or e.action == "bypass":
            return Verdict(None, "nic")
        if e.action == "chain":
            return Verdict(e.policy, "nic", e.chain_id)
        chain_id = self.software.classify_punt(p, e.policy_id)
        if chain_id is None:
            return Verdict(None, "software")
        return Verdict(self.software.name(chain_id), "software", chain_id)
