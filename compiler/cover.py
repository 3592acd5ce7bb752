"""A few boxes around many: the "classify in software" entries after a full classifier.

When the table is full, the SYNs the NIC cannot decide are those that some policy not laid
out may match.  Their boxes (:func:`boxes_of`, a bounded over-approximation of each
predicate) are too many for the entries left, so :func:`cover` puts them in at most ``room``
boxes whose union holds them all: each box is kept on its most selective field only (a
destination port range, a source prefix, ...), the constraints of each field are merged
exactly (overlapping ranges, prefixes inside prefixes), and while there are still too many,
the nearest ranges are joined and the prefixes shortened a bit at a time.  A SYN outside
the cover matches none of the policies left, so the table's miss (forward untouched) is
right for it; one inside goes to the agent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dysco.compiler.ast import AddrMatch, Always, BoolOp, Dir, PortMatch, Pred
from dysco.compiler.boxes import (
    PORT_MAX,
    TOP,
    Box,
    Field,
    PRange,
    Ternary,
    box_of,
    join,
    meet,
    range_to_prefixes,
)
from dysco.compiler.entries import pred_hull

BOX_LIMIT = 8
"""Most boxes one predicate is described by; past it, their hull."""

_FIELDS = (Field.SRC_ADDR, Field.DST_ADDR, Field.SRC_PORT, Field.DST_PORT)


def boxes_of(pred: Pred, limit: int = BOX_LIMIT) -> list[Box]:
    """Boxes whose union holds every SYN ``pred`` matches (at most ``limit``; [] for none)."""
    kind = type(pred)
    if kind is BoolOp:
        assert isinstance(pred, BoolOp)
        left, right = boxes_of(pred.left, limit), boxes_of(pred.right, limit)
        if pred.op == "or":
            out = left + right
        else:
            out = [b for lb in left for rb in right if (b := meet(lb, rb)) is not None]
        return out if len(out) <= limit else [_hull(out)]
    if kind is AddrMatch or kind is PortMatch:
        assert isinstance(pred, AddrMatch | PortMatch)
        if pred.dir is Dir.SRC_OR_DST:  # two boxes, where the hull would be everything
            if isinstance(pred, AddrMatch):
                c: Ternary | PRange = Ternary(pred.value & pred.mask, pred.mask)
                return [box_of(Field.SRC_ADDR, c), box_of(Field.DST_ADDR, c)]
            c = PRange(pred.low, pred.high)
            return [box_of(Field.SRC_PORT, c), box_of(Field.DST_PORT, c)]
    if kind is Always:
        return [TOP]
    h = pred_hull(pred)
    return [] if h is None else [h]


def _hull(boxes: Sequence[Box]) -> Box:
    acc = boxes[0]
    for b in boxes[1:]:
        acc = join(acc, b)
    return acc


def _key(b: Box) -> int:
    """The index in _FIELDS of the field that constrains ``b`` most (-1: none does)."""
    _, m, sl, sh, dl, dh = b
    free = (
        32 - (m >> 32).bit_count(),
        32 - (m & 0xFFFFFFFF).bit_count(),
        (sh - sl + 1).bit_length() - 1,
        (dh - dl + 1).bit_length() - 1,
    )
    best = min(range(4), key=lambda i: (free[i], i))
    return best if free[best] < (32 if best < 2 else 16) else -1


def _ranges(rs: list[tuple[int, int]], room: int) -> list[tuple[int, int]]:
    """The union of ranges as sorted disjoint ranges, then the nearest joined until ``room``."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(rs):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    if len(merged) <= room:
        return merged
    gaps = sorted(range(1, len(merged)), key=lambda i: merged[i][0] - merged[i - 1][1])
    cut = sorted(gaps[len(gaps) - (room - 1) :]) if room > 1 else []  # the widest gaps stay
    out: list[tuple[int, int]] = []
    start = 0
    for i in [*cut, len(merged)]:
        out.append((merged[start][0], merged[i - 1][1]))
        start = i
    return out


def _ternaries(ts: Iterable[tuple[int, int]], room: int) -> list[tuple[int, int]]:
    """Value/mask pairs without duplicates, each shortened by its last cared-for bit a round
    at a time until at most ``room`` remain."""
    current = {(v & m, m) for v, m in ts}
    while len(current) > room:
        current = {(v & (m & (m - 1)), m & (m - 1)) for v, m in current}
    return sorted(current)


def cover(boxes: Sequence[Box], room: int, port_prefixes: bool = False) -> list[Box]:
    """At most ``room`` boxes holding all of ``boxes``; ``port_prefixes`` when the table
    matches ports by value/mask (each box must then be one entry as it stands)."""
    if not boxes:
        return []
    groups: list[list[Box]] = [[], [], [], []]
    for b in boxes:
        k = _key(b)
        if k < 0:
            return [TOP]
        groups[k].append(b)
    used = [g for g in range(4) if groups[g]]
    if room < len(used):
        v, m, *ports = _hull(boxes)
        if port_prefixes and any(_prefix_cost(lo, hi) > 1 for lo, hi in (ports[:2], ports[2:])):
            return [(v, m, 0, PORT_MAX, 0, PORT_MAX)]
        return [(v, m, *ports)]  # type: ignore[list-item]
    total = sum(len(groups[g]) for g in used)
    out: list[Box] = []
    spare = room
    for n, g in enumerate(used):
        share = max(1, room * len(groups[g]) // total) if n < len(used) - 1 else spare
        share = min(share, spare - (len(used) - n - 1))
        field = _FIELDS[g]
        if g < 2:
            shift = 32 if g == 0 else 0
            pairs = [((v >> shift) & 0xFFFFFFFF, (m >> shift) & 0xFFFFFFFF) for v, m, *_ in groups[g]]
            made = [box_of(field, Ternary(v, m)) for v, m in _ternaries(pairs, share)]
        else:
            lo, hi = (2, 3) if g == 2 else (4, 5)
            spans = [(b[lo], b[hi]) for b in groups[g]]
            if port_prefixes:
                prefixes = [(t.value, t.mask) for a, z in spans for t in range_to_prefixes(a, z)]
                made = [_port_prefix_box(field, v, m) for v, m in _ternaries(prefixes, share)]
            else:
                made = [box_of(field, PRange(a, z)) for a, z in _ranges(spans, share)]
        out.extend(made)
        spare -= len(made)
    return out


def _prefix_cost(low: int, high: int) -> int:
    return len(range_to_prefixes(low, high))


def _port_prefix_box(field: Field, value: int, mask: int) -> Box:
    """A box of the port values under a 16-bit value/mask prefix (a range, as boxes hold ports)."""
    low = value & mask
    return box_of(field, PRange(low, low | (~mask & 0xFFFF)))
