"""Deciding which policy an outbound TCP SYN belongs to, two ways.

:func:`policy_for` evaluates the predicates directly (the specification);
:func:`entry_for` looks the packet up in the compiled classifier the way the
data plane does (highest priority first).  Tests check that they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dysco.compiler.ast import AddrMatch, Always, BoolOp, Dir, Not, PolicyFile, PortMatch, Pred
from dysco.compiler.entries import Entry


@dataclass(frozen=True, slots=True)
class Syn:
    """The fields of an outbound TCP SYN the classifier looks at (addresses as integers)."""

    src: int
    dst: int
    sport: int
    dport: int


def holds(pred: Pred, p: Syn) -> bool:
    match pred:
        case Always():
            return True
        case Not(operand=inner):
            return not holds(inner, p)
        case BoolOp(op="and", left=left, right=right):
            return holds(left, p) and holds(right, p)
        case BoolOp(left=left, right=right):
            return holds(left, p) or holds(right, p)
        case AddrMatch(dir=d, value=v, mask=m):
            return _directed(d, p.src & m == v, p.dst & m == v)
        case PortMatch(dir=d, low=lo, high=hi):
            return _directed(d, lo <= p.sport <= hi, lo <= p.dport <= hi)
    raise AssertionError(pred)


def _directed(d: Dir, on_src: bool, on_dst: bool) -> bool:
    if d is Dir.SRC:
        return on_src
    if d is Dir.DST:
        return on_dst
    if d is Dir.SRC_OR_DST:
        return on_src or on_dst
    return on_src and on_dst


def policy_for(pf: PolicyFile, p: Syn) -> str | None:
    """The first policy whose predicate holds, or None."""
    for pol in pf.policies:
        if holds(pol.predicate, p):
            return pol.name
    return None


def entry_for(entries: Sequence[Entry], p: Syn) -> Entry | None:
    """The matching entry of highest priority, as a ternary/range table finds it."""
    best: Entry | None = None
    for e in entries:
        if e.holds(p.src, p.dst, p.sport, p.dport) and (best is None or e.priority > best.priority):
            best = e
    return best


def chain_policy_for(entries: Sequence[Entry], p: Syn) -> str | None:
    """The policy whose chain the classifier picks, or None for bypass/miss."""
    e = entry_for(entries, p)
    return e.policy if e is not None and e.action == "chain" else None
