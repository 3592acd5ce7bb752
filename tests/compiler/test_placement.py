"""Placement: a classifier of bounded size, and software entries for what it cannot take.

Each case checks the entries it expects and that the deployed system (the entries as a NIC
looks them up, then the agent's evaluator for software punts) gives every SYN the first
policy whose predicate holds."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from dysco.compiler.deployed import Deployed
from dysco.compiler.entries import SOFTWARE_FLAG
from dysco.compiler.evaluate import Syn, policy_for
from dysco.compiler.generate import PredicateGenerator, disjoint_predicates
from dysco.compiler.passes import Compiled, Options, compile_text, front

# (bit i of src or bit i of dst) for 8 bits: 2^8 boxes that no rule can merge
BLOWUP = (
    "middlebox fw { instances 10.0.2.1; }\npolicy big: "
    + " and ".join(
        f"(src net 0.0.0.{1 << i} mask 0.0.0.{1 << i} or dst net 0.0.0.{1 << i} mask 0.0.0.{1 << i})"
        for i in range(8)
    )
    + " -> fw\n"
)


def _agrees(compiled: Compiled, seed: int, count: int = 500) -> None:
    gen = PredicateGenerator(random.Random(seed))
    deployed = Deployed(compiled)
    for _ in range(count):
        syn = gen.syn()
        assert deployed.classify(syn).policy == policy_for(compiled.source, syn), syn


def test_a_policy_past_its_budget_is_classified_in_software() -> None:
    text = BLOWUP.replace("policy big: ", "policy big: dst port 443 and ").replace(
        "-> fw\n", "-> fw\npolicy rest: dst port 80 or dst host 10.0.1.1 -> fw\n"
    )
    compiled = compile_text(text, "big.dysco", Options(budget=50))
    assert compiled.stats.over_budget == ("big",)
    actions = [(e.action, e.policy) for e in compiled.entries]
    assert actions == [("software", "big"), ("chain", "rest"), ("chain", "rest")]
    big = compiled.entries[0]
    assert big.policy_id == SOFTWARE_FLAG | 1
    # the hull of the predicate: destination port 443, addresses open
    assert (big.dport.low, big.dport.high, big.src.mask, big.dst.mask) == (443, 443, 0, 0)
    _agrees(compiled, 1)


def test_a_full_classifier_leaves_the_rest_to_software() -> None:
    text = "middlebox fw { instances 10.0.2.1; }\n" + "".join(
        f"policy p{i}: not src host 10.0.0.{i} and dst portrange {i}00-{i}99 -> fw\n" for i in range(1, 12)
    )
    roomy = compile_text(text, "many.dysco", Options(capacity=100))
    assert roomy.stats.nic_policies == 11 and all(e.action != "software" for e in roomy.entries)
    tight = compile_text(text, "many.dysco", Options(capacity=7))
    assert len(tight.entries) <= 7
    assert 0 < tight.stats.nic_policies < 11
    tail = tight.entries[-1]
    assert tail.action == "software" and tail.chain_id == tight.stats.nic_policies + 1
    # the hull of the policies left: destination ports from the first of them to the last
    assert (tail.dport.low, tail.dport.high) == (tail.chain_id * 100, 1199)
    _agrees(roomy, 2)
    _agrees(tight, 3)
    one = compile_text(text, "many.dysco", Options(capacity=1))
    assert [e.action for e in one.entries] == ["software"]
    _agrees(one, 4)


def test_same_blowup_fits_a_larger_budget() -> None:
    compiled = compile_text(BLOWUP, "big.dysco", Options(budget=100_000))
    assert any(e.action == "chain" for e in compiled.entries)
    assert compiled.stats.over_budget == ()


def _negations(n: int, seed: int) -> str:
    """Policies of three negations and a port range each: every "no" box overlaps later policies."""
    r = random.Random(seed)

    def ip() -> str:
        return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}"

    lines = ["middlebox fw { instances 10.0.2.1; }"]
    for i in range(n):
        low = r.randrange(60000)
        lines.append(
            f"policy p{i}: not src host {ip()} and not dst host {ip()}"
            f" and not src net 10.{r.randrange(256)}.0.0/16"
            f" and dst portrange {low}-{low + r.randrange(1, 3000)} -> fw"
        )
    return "\n".join(lines) + "\n"


def test_entries_grow_linearly_with_the_policies_however_they_overlap() -> None:
    unlimited = Options(capacity=1 << 30)
    for make in (_negations, lambda n, seed: _file(disjoint_predicates(random.Random(seed), n))):
        counts = [len(compile_text(make(n, 5), "grow.dysco", unlimited).entries) for n in (250, 500, 1000)]
        assert counts[2] <= 20 * 1000, counts  # a bounded number per policy
        assert counts[2] <= 2.4 * counts[1] and counts[1] <= 2.4 * counts[0], counts  # not faster than linear


def _file(preds: list[str]) -> str:
    return "middlebox fw { instances 10.0.2.1; }\n" + "".join(
        f"policy p{i}: {p} -> fw\n" for i, p in enumerate(preds)
    )


def test_a_file_of_negations_is_right_at_any_capacity() -> None:
    text = _negations(300, 9)
    for capacity in (1, 50, 400, 1 << 30):
        compiled = compile_text(text, "neg.dysco", Options(capacity=capacity))
        assert len(compiled.entries) <= capacity
        # SYNs inside the policies' port ranges, from the addresses the negations name and others
        _, pf = front(text, "neg.dysco")
        deployed = Deployed(compiled)
        r = random.Random(capacity)
        for _ in range(300):
            pol = r.choice(pf.policies)
            parts = pol.source.split()
            src = int(IPv4Address(parts[3])) if r.random() < 0.3 else r.getrandbits(32)
            low, high = (int(x) for x in parts[-1].split("-"))
            syn = Syn(src, r.getrandbits(32), r.randrange(65536), r.randint(low, high))
            assert deployed.classify(syn).policy == policy_for(compiled.source, syn), (capacity, syn)
