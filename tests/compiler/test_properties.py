"""Properties: every text parses or fails with our error at a real position; for random
policy files and SYNs, the compiled classifier picks the same policy as the predicates."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dysco.compiler.boxes import range_to_prefixes
from dysco.compiler.deployed import Deployed
from dysco.compiler.evaluate import chain_policy_for, entry_for, policy_for
from dysco.compiler.generate import PredicateGenerator
from dysco.compiler.passes import Options, compile_text
from dysco.errors import SourceError, SourceErrors

WORDS = [
    "policy", "middlebox", "instances", "select", "p:", "m", "{", "}", ";", ",", "->", "(", ")", "!",
    "and", "or", "not", "&&", "||", "src", "dst", "host", "net", "port", "portrange", "tcp", "ip",
    "proto", "mask", "udp", "less", "10.0.0.1", "10.0", "10.0.0.0/8", "80", "0x50", "1-2", "99999",
    "\\tcp", "#", "\n", "round-robin", "hash", "010.1.1.1", "[", "=",
]  # fmt: skip


def _check_total(text: str) -> None:
    try:
        compile_text(text, "fuzz.dysco")
    except SourceErrors as exc:
        lines = text.split("\n")
        for err in exc.errors:
            assert err.pos.file == "fuzz.dysco"
            assert 1 <= err.pos.line <= max(len(lines), 1), (err, text)
            assert 1 <= err.pos.column <= len(lines[err.pos.line - 1]) + 1, (err, text)
    except SourceError as exc:  # budget errors are single
        assert exc.pos.line >= 1


@given(st.text(max_size=200))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    _check_total(text)


@given(st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join))
def test_any_token_soup_parses_or_fails_cleanly(text: str) -> None:
    _check_total("middlebox m { instances 10.0.2.1; }\n" + text)


@given(st.integers(0, 2**32), st.integers(1, 5), st.sampled_from(["range", "ternary"]))
@settings(max_examples=2 * settings.default.max_examples)  # scales with the profile
def test_compiled_entries_pick_the_first_matching_policy(seed: int, n: int, ports: str) -> None:
    gen = PredicateGenerator(random.Random(seed), primitives=(1, 5))
    text = gen.policy_file(n)
    compiled = compile_text(text, "gen.dysco", Options(port_match=ports))  # type: ignore[arg-type]
    assert len({e.priority for e in compiled.entries}) <= len(compiled.entries)
    deployed = Deployed(compiled)
    for _ in range(60):
        syn = gen.syn()
        want = policy_for(compiled.source, syn)
        assert deployed.classify(syn).policy == want, (text, syn)
        entry = entry_for(compiled.entries, syn)  # the table alone, where it decides
        if entry is None or entry.action != "software":
            assert chain_policy_for(compiled.entries, syn) == want, (text, syn)


@given(
    st.integers(0, 2**32),
    st.integers(1, 40),
    st.integers(1, 60),
    st.sampled_from([2, 8, 64]),
    st.sampled_from(["range", "ternary"]),
)
@settings(max_examples=settings.default.max_examples)
def test_any_capacity_and_budget_still_give_the_first_matching_policy(
    seed: int, n: int, capacity: int, budget: int, ports: str
) -> None:
    gen = PredicateGenerator(random.Random(seed), primitives=(1, 6))
    text = gen.policy_file(n)
    options = Options(budget=budget, capacity=capacity, port_match=ports)  # type: ignore[arg-type]
    compiled = compile_text(text, "gen.dysco", options)
    assert len(compiled.entries) <= capacity
    deployed = Deployed(compiled)
    for _ in range(60):
        syn = gen.syn()
        assert deployed.classify(syn).policy == policy_for(compiled.source, syn), (text, options, syn)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_range_to_prefixes_is_exact_and_bounded(a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    prefixes = range_to_prefixes(lo, hi)
    assert len(prefixes) <= 2 * 16 - 2
    for p in (lo, hi, lo - 1, hi + 1, (lo + hi) // 2):
        if 0 <= p <= 0xFFFF:
            assert sum(t.holds(p) for t in prefixes) == (1 if lo <= p <= hi else 0)
