"""The policy file after parsing: middleboxes, policies and predicate trees.

Every predicate primitive is already resolved: its qualifiers are explicit (the
pcap-filter rule that a bare value repeats the previous qualifiers has been
applied) and its value is a number or a value/mask pair.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from dysco.compiler.boxes import format_ip


@dataclass(slots=True)
class Loc:
    line: int
    column: int


class Dir(enum.Enum):
    SRC = "src"
    DST = "dst"
    SRC_OR_DST = "src or dst"
    SRC_AND_DST = "src and dst"


class Select(enum.Enum):
    ROUND_ROBIN = "round-robin"
    HASH = "hash"
    LEAST_LOADED = "least-loaded"


# ---- predicates -------------------------------------------------------------
# Predicate nodes are not frozen: the compiler builds many, and a frozen dataclass costs
# about five times as much to construct. Nothing mutates them.


@dataclass(slots=True)
class AddrMatch:
    """``host A`` / ``net A/len`` / ``net A mask M``: the address field(s) equal ``value`` under ``mask``."""

    dir: Dir
    value: int
    mask: int
    kind: Literal["host", "net"]
    loc: Loc


@dataclass(slots=True)
class PortMatch:
    """``port N`` / ``portrange A-B``: the port field(s) lie in ``[low, high]``."""

    dir: Dir
    low: int
    high: int
    kind: Literal["port", "portrange"]
    loc: Loc


@dataclass(slots=True)
class Always:
    """A primitive every outbound TCP SYN satisfies (``tcp``, ``ip``, ``ip proto tcp``)."""

    text: str
    loc: Loc


@dataclass(slots=True)
class Not:
    operand: Pred
    loc: Loc


@dataclass(slots=True)
class BoolOp:
    op: Literal["and", "or"]
    left: Pred
    right: Pred


Pred = AddrMatch | PortMatch | Always | Not | BoolOp


# ---- the file ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Middlebox:
    name: str
    instances: tuple[str, ...]
    select: Select
    loc: Loc


@dataclass(frozen=True, slots=True)
class TypeHop:
    """A hop naming a middlebox type: an instance is chosen per session."""

    name: str
    loc: Loc


@dataclass(frozen=True, slots=True)
class AddressHop:
    """A hop pinned to one IPv4 address."""

    address: str
    loc: Loc


Hop = TypeHop | AddressHop


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    predicate: Pred
    hops: tuple[Hop, ...]
    loc: Loc
    source: str
    """The predicate as written (for messages and for libpcap comparisons)."""


@dataclass(frozen=True, slots=True)
class PolicyFile:
    filename: str
    middleboxes: tuple[Middlebox, ...]
    policies: tuple[Policy, ...]


# ---- dumping ----------------------------------------------------------------


def format_pred(pred: Pred) -> str:
    """A fully parenthesised, qualifier-explicit rendering (pcap-filter syntax)."""
    match pred:
        case AddrMatch(dir=d, value=v, mask=m, kind="host"):
            return f"{d.value} host {format_ip(v)}"
        case AddrMatch(dir=d, value=v, mask=m):
            return f"{d.value} net {format_ip(v)} mask {format_ip(m)}"
        case PortMatch(dir=d, low=lo, high=hi, kind="port"):
            return f"tcp {d.value} port {lo}"
        case PortMatch(dir=d, low=lo, high=hi):
            return f"tcp {d.value} portrange {lo}-{hi}"
        case Always(text=t):
            return t
        case Not(operand=p):
            return f"not {format_pred(p)}"
        case BoolOp(op=op, left=left, right=right):
            return f"({format_pred(left)} {op} {format_pred(right)})"
    raise AssertionError(pred)


def format_file(pf: PolicyFile) -> str:
    lines: list[str] = []
    for mb in pf.middleboxes:
        instances = ", ".join(mb.instances)
        lines.append(f"middlebox {mb.name} @{mb.loc.line}: instances {instances}; select {mb.select.value}")
    for pol in pf.policies:
        hops = ", ".join(h.name if isinstance(h, TypeHop) else h.address for h in pol.hops)
        lines.append(f"policy {pol.name} @{pol.loc.line}: {format_pred(pol.predicate)} -> {hops}")
    return "\n".join(lines) + "\n"
