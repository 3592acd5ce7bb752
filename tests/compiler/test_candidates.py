"""The index that narrows the policies (and classifier entries) tried for a SYN: it must never
leave out one that matches, and the merged walk must find the first in order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dysco.compiler.candidates import first_match, policy_index
from dysco.compiler.deployed import BLOCK, NicTable
from dysco.compiler.evaluate import Syn, entry_for, holds
from dysco.compiler.generate import PredicateGenerator, disjoint_predicates
from dysco.compiler.passes import Options, compile_text, front


@given(st.integers(0, 2**32), st.integers(1, 60))
def test_every_policy_that_matches_is_a_candidate(seed: int, n: int) -> None:
    gen = PredicateGenerator(random.Random(seed), primitives=(1, 6))
    _, pf = front(gen.policy_file(n), "idx.dysco")
    preds = [pol.predicate for pol in pf.policies]
    index = policy_index(preds)
    for _ in range(40):
        syn = gen.syn()
        candidates = {j for js in index.lists(syn.src, syn.dst, syn.sport, syn.dport) for j in js}
        for j, pred in enumerate(preds):
            if holds(pred, syn):
                assert j in candidates, (pf.policies[j].source, syn)


def test_first_match_walks_the_lists_merged_in_order() -> None:
    lists = [(1, 5, 9), (2, 5, 7), (), (8,)]
    tried: list[int] = []

    def test(j: int) -> bool:
        tried.append(j)
        return j >= 7

    assert first_match(lists, 3, test) == 7
    assert tried == [5, 7]  # 5 once, though two lists have it; nothing before the start
    assert first_match(lists, 10, test) is None
    assert first_match([(4, 6)], 0, lambda j: j == 6) == 6
    assert first_match([()], 0, lambda j: True) is None


@given(st.integers(0, 2**32), st.integers(1, 30), st.sampled_from(["range", "ternary"]))
@settings(max_examples=settings.default.max_examples // 2)
def test_the_nic_table_finds_the_entry_a_linear_scan_finds(seed: int, n: int, ports: str) -> None:
    gen = PredicateGenerator(random.Random(seed), primitives=(1, 6))
    compiled = compile_text(gen.policy_file(n), "t.dysco", Options(port_match=ports))  # type: ignore[arg-type]
    table = NicTable(compiled.entries)
    for _ in range(60):
        syn = gen.syn()
        assert table.lookup(syn) == entry_for(compiled.entries, syn), syn


def test_a_large_nic_table_finds_the_entry_a_linear_scan_finds() -> None:
    """Hundreds of entries: the index picks the entries tried (a small table tries them all)."""
    preds = disjoint_predicates(random.Random(3), 300)
    text = "middlebox m { instances 10.0.2.1; }\n" + "".join(
        f"policy p{i}: {p} -> m\n" for i, p in enumerate(preds)
    )
    compiled = compile_text(text, "big.dysco", Options(capacity=1 << 30))
    assert len(compiled.entries) > 8 * BLOCK
    table = NicTable(compiled.entries)
    r = random.Random(4)
    hits = 0
    for _ in range(2000):
        e = r.choice(compiled.entries)  # a SYN inside a random entry, or anywhere
        inside = r.random() < 0.8
        syn = Syn(
            e.src.value | (r.getrandbits(32) & ~e.src.mask) if inside else r.getrandbits(32),
            e.dst.value | (r.getrandbits(32) & ~e.dst.mask) if inside else r.getrandbits(32),
            r.randint(e.sport.low, e.sport.high) if inside else r.randrange(65536),  # type: ignore[union-attr]
            r.randint(e.dport.low, e.dport.high) if inside else r.randrange(65536),  # type: ignore[union-attr]
        )
        want = entry_for(compiled.entries, syn)
        assert table.lookup(syn) == want, syn
        hits += want is not None
    assert hits > 1000
