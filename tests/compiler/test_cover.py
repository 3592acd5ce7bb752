"""The cover of the policies a full classifier leaves out: few boxes, and every SYN any of
those policies can match is inside one of them."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from dysco.compiler.boxes import TOP, Field, PRange, Ternary, box_of, within
from dysco.compiler.cover import boxes_of, cover
from dysco.compiler.evaluate import holds
from dysco.compiler.generate import PredicateGenerator
from dysco.compiler.passes import front


def _random_box(r: random.Random) -> tuple[int, int, int, int, int, int]:
    b = TOP
    for field in r.sample(list(Field), r.randint(1, 3)):
        if field.is_addr:
            length = r.choice((8, 16, 24, 32))
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
            c: Ternary | PRange = Ternary(r.getrandbits(32) & mask, mask)
        else:
            low = r.randrange(65536)
            c = PRange(low, min(0xFFFF, low + r.choice((0, 1, 100, 5000))))
        v, m, sl, sh, dl, dh = box_of(field, c)
        b = (b[0] | v, b[1] | m, max(b[2], sl), min(b[3], sh), max(b[4], dl), min(b[5], dh))
    return b


def _points(r: random.Random, b: tuple[int, int, int, int, int, int]) -> list[tuple[int, ...]]:
    v, m, sl, sh, dl, dh = b
    out = []
    for _ in range(8):
        addr = v | (r.getrandbits(64) & ~m)
        sp, dp = r.choice((sl, sh, r.randint(sl, sh))), r.choice((dl, dh, r.randint(dl, dh)))
        out.append((addr, (1 << 64) - 1, sp, sp, dp, dp))
    return out


@given(st.integers(0, 2**32), st.integers(1, 300), st.integers(1, 40), st.booleans())
def test_every_box_is_inside_one_of_at_most_room_boxes(seed: int, n: int, room: int, prefixes: bool) -> None:
    r = random.Random(seed)
    boxes = [_random_box(r) for _ in range(n)]
    out = cover(boxes, room, port_prefixes=prefixes)
    assert 1 <= len(out) <= room
    for b in boxes:
        if not prefixes:
            assert any(within(b, c) for c in out), b
        for point in _points(r, b):  # a range may be split into prefixes: check the union
            assert any(within(point, c) for c in out), (b, point)
    if prefixes:  # each box is one entry when ports are matched by value/mask
        for _, _, sl, sh, dl, dh in out:
            for lo, hi in ((sl, sh), (dl, dh)):
                size = hi - lo + 1
                assert size & (size - 1) == 0 and lo % size == 0, (lo, hi)


def test_disjoint_destination_ports_keep_their_own_entries_when_there_is_room() -> None:
    boxes = [box_of(Field.DST_PORT, PRange(p, p)) for p in (80, 443, 8080)]
    assert cover(boxes, 3) == boxes
    assert cover(boxes, 2) == [box_of(Field.DST_PORT, PRange(80, 443)), boxes[2]]  # the nearest joined
    assert cover(boxes, 1) == [box_of(Field.DST_PORT, PRange(80, 8080))]
    assert cover([], 5) == []
    assert cover([TOP, boxes[0]], 5) == [TOP]


@given(st.integers(0, 2**32))
def test_the_boxes_of_a_predicate_hold_every_syn_it_matches(seed: int) -> None:
    gen = PredicateGenerator(random.Random(seed), primitives=(1, 8))
    _, pf = front(f"middlebox m {{ instances 10.0.2.1; }}\npolicy p: {gen.expression()} -> m\n", "b.dysco")
    pred = pf.policies[0].predicate
    boxes = boxes_of(pred)
    assert len(boxes) <= 8
    for _ in range(50):
        syn = gen.syn()
        if holds(pred, syn):
            point = (syn.src << 32 | syn.dst, (1 << 64) - 1, syn.sport, syn.sport, syn.dport, syn.dport)
            assert any(within(point, b) for b in boxes), syn
