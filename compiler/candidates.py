"""Which policies can match a SYN at all: an index for the agent's software evaluator.

Each policy is described by a few boxes (:func:`dysco.compiler.cover.boxes_of`, which hold
every SYN it matches).  Each box is filed under its most selective field: an address
value under its mask (one dictionary per mask), or a port range under the 64-port
buckets it spans.  A policy with a box that is selective in no field, or spans too many
buckets, is a candidate for every SYN.  For a SYN, :meth:`CandidateIndex.lists` gives
sorted lists of policy indices whose union holds every policy that can match it; the
evaluator walks them merged, in file order, and stops at the first whose predicate holds.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from dysco.compiler.ast import Pred
from dysco.compiler.boxes import Box
from dysco.compiler.cover import boxes_of

_MaskTable = tuple[int, dict[int, tuple[int, ...]]]
"""A mask, and the items by the value under that mask."""

_PORT_SHIFT = 6
_MAX_BUCKETS = 64
"""A port range over more buckets than this makes its policy a candidate everywhere."""
_MAX_MASKS = 16
"""Past this many masks on an address field, masks are cut to their leading prefix."""


def _prefix(mask: int) -> int:
    """The leading run of ones of a 32-bit mask."""
    inv = ~mask & 0xFFFFFFFF
    return 0xFFFFFFFF ^ ((1 << inv.bit_length()) - 1)


def _key(b: Box) -> int:
    """0/1: the source/destination address; 2/3: the source/destination port; -1: none."""
    _, m, sl, sh, dl, dh = b
    src_bits, dst_bits = (m >> 32).bit_count(), (m & 0xFFFFFFFF).bit_count()
    sport_buckets = (sh >> _PORT_SHIFT) - (sl >> _PORT_SHIFT) + 1
    dport_buckets = (dh >> _PORT_SHIFT) - (dl >> _PORT_SHIFT) + 1
    # selectivity as bits fixed: an address's cared-for bits; a port range's 16 minus its width's
    scores = (
        src_bits,
        dst_bits,
        16 - (sh - sl + 1).bit_length() + 1 if sport_buckets <= _MAX_BUCKETS else 0,
        16 - (dh - dl + 1).bit_length() + 1 if dport_buckets <= _MAX_BUCKETS else 0,
    )
    best = max(range(4), key=lambda i: (scores[i], -i))
    return best if scores[best] > 0 else -1


class CandidateIndex:
    """Built once from each item's boxes, items in order (policies in file order, or
    classifier entries by priority)."""

    def __init__(self, box_lists: Iterable[Sequence[Box]]) -> None:
        always: list[int] = []
        addr: list[dict[int, list[tuple[int, int]]]] = [{}, {}]  # mask -> (value, item)
        ports: list[dict[int, list[int]]] = [{}, {}]  # bucket -> items
        for j, boxes in enumerate(box_lists):
            keys = [_key(b) for b in boxes]
            if -1 in keys:
                always.append(j)
                continue
            for b, k in zip(boxes, keys, strict=True):
                v, m, sl, sh, dl, dh = b
                if k < 2:
                    shift = 32 if k == 0 else 0
                    mask = (m >> shift) & 0xFFFFFFFF
                    addr[k].setdefault(mask, []).append(((v >> shift) & 0xFFFFFFFF, j))
                else:
                    lo, hi = (sl, sh) if k == 2 else (dl, dh)
                    for bucket in range(lo >> _PORT_SHIFT, (hi >> _PORT_SHIFT) + 1):
                        ports[k - 2].setdefault(bucket, []).append(j)
        self.always = tuple(always)
        self.addr = [self._by_value(table) for table in addr]
        self.ports = [{bucket: _sorted(js) for bucket, js in table.items()} for table in ports]

    @staticmethod
    def _by_value(table: dict[int, list[tuple[int, int]]]) -> tuple[_MaskTable, ...]:
        if len(table) > _MAX_MASKS:  # too many lookups per SYN: cut the masks to prefixes
            cut: dict[int, list[tuple[int, int]]] = {}
            for mask, entries in table.items():
                p = _prefix(mask)
                cut.setdefault(p, []).extend((v & p, j) for v, j in entries)
            table = cut
        out = []
        for mask, entries in table.items():
            by_value: dict[int, list[int]] = {}
            for v, j in entries:
                by_value.setdefault(v, []).append(j)
            out.append((mask, {v: _sorted(js) for v, js in by_value.items()}))
        return tuple(out)

    def lists(self, s: int, d: int, sp: int, dp: int) -> list[tuple[int, ...]]:
        """Sorted lists of the policies that can match the SYN (their union; they overlap)."""
        out = [self.always]
        for value, table in ((s, self.addr[0]), (d, self.addr[1])):
            for mask, by_value in table:
                hit = by_value.get(value & mask)
                if hit is not None:
                    out.append(hit)
        for port, buckets in ((sp, self.ports[0]), (dp, self.ports[1])):
            hit = buckets.get(port >> _PORT_SHIFT)
            if hit is not None:
                out.append(hit)
        return out


def first_match(lists: list[tuple[int, ...]], start: int, test: Callable[[int], bool]) -> int | None:
    """The smallest policy index at or after ``start`` in any of ``lists`` that passes ``test``."""
    heads: list[tuple[int, int, int]] = []
    for n, js in enumerate(lists):
        i = bisect_left(js, start)
        if i < len(js):
            heads.append((js[i], n, i))
    if len(heads) == 1:  # one list: no merging
        _, n, i = heads[0]
        js = lists[n]
        for k in range(i, len(js)):
            if test(js[k]):
                return js[k]
        return None
    heapq.heapify(heads)
    last = -1
    while heads:
        j, n, i = heads[0]
        if j != last:
            if test(j):
                return j
            last = j
        js = lists[n]
        if i + 1 < len(js):
            heapq.heapreplace(heads, (js[i + 1], n, i + 1))
        else:
            heapq.heappop(heads)
    return None


def policy_index(preds: Sequence[Pred]) -> CandidateIndex:
    """The index of the policies' predicates (:func:`~dysco.compiler.cover.boxes_of`)."""
    return CandidateIndex(boxes_of(pred) for pred in preds)


def _sorted(js: list[int]) -> tuple[int, ...]:
    return tuple(sorted(set(js)))
