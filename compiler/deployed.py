"""What the deployed system gives a SYN: the NIC's classifier entries, then the agent.

:class:`NicTable` looks a SYN up in classifier entries the way a ternary/range table with
priorities does: the matching entry of highest priority wins, a miss forwards untouched.  The
entries are turned into Python, 64 to a function in priority order, so a lookup in thousands
of entries stays fast.  :class:`Deployed` puts it in front of the agent's
:class:`~dysco.compiler.software.SoftwareClassifier` for the SYNs a ``software`` entry punts:
this is what ``dysco classify`` runs, the same code as the agent's, on the entries as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from dysco.compiler.boxes import PRange, Ternary
from dysco.compiler.entries import Entry
from dysco.compiler.evaluate import Syn
from dysco.compiler.passes import Compiled
from dysco.compiler.software import SoftwareClassifier

BLOCK = 64
"""Entries per generated function."""

_Block = Callable[[int, int, int, int], int]


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


class NicTable:
    """Classifier entries, looked up as the NIC looks them up."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        # highest priority first; among equal priorities (port prefixes of one entry) the order
        # does not matter, since they never overlap
        self.entries = tuple(sorted(entries, key=lambda e: -e.priority))
        self._blocks: list[_Block | None] = [None] * ((len(self.entries) + BLOCK - 1) // BLOCK)

    def lookup(self, p: Syn) -> Entry | None:
        """The matching entry of highest priority, or None (a miss)."""
        s, d, sp, dp = p.src, p.dst, p.sport, p.dport
        for b, fn in enumerate(self._blocks):
            r = (fn or self._compile(b))(s, d, sp, dp)
            if r >= 0:
                return self.entries[b * BLOCK + r]
        return None

    def _compile(self, b: int) -> _Block:
        first = b * BLOCK
        lines = ["def block(s, d, sp, dp):"]
        for i, e in enumerate(self.entries[first : first + BLOCK]):
            lines.append(f"    if {_condition(e)}:\n        return {i}")
        lines.append("    return -1")
        scope: dict[str, object] = {}
        exec(compile("\n".join(lines), f"<classifier entries {first + 1}->", "exec"), scope)
        fn: _Block = scope["block"]  # type: ignore[assignment]
        self._blocks[b] = fn
        return fn


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
