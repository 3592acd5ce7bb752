"""Conformance with the real thing: libpcap's compiled filter is the oracle.

For random predicates of the supported subset and random SYN frames, the
predicate's meaning in dysco, the compiled classifier and libpcap's
``pcap_compile`` + ``pcap_offline_filter`` all agree.

The oracle is libpcap's *unoptimised* filter: libpcap 1.10.3's BPF optimiser
mis-evaluates some expressions (see the last entry of CASES: optimised, it
rejects a SYN to 10.0.1.0 that its final ``or 10.0.1.0`` accepts).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dysco.compiler.deployed import Deployed
from dysco.compiler.evaluate import Syn, chain_policy_for, holds
from dysco.compiler.generate import PredicateGenerator, syn_frame
from dysco.compiler.passes import Options, compile_text
from dysco.compiler.pcap import PcapFilter, PcapFilterError

HEADER = "middlebox fw { instances 10.0.2.1; }\n"


def _agree(expr: str, packets: list[Syn], ports: str = "range") -> None:
    compiled = compile_text(f"{HEADER}policy p: {expr} -> fw\n", "c.dysco", Options(port_match=ports))  # type: ignore[arg-type]
    pred = compiled.source.policies[0].predicate
    deployed = Deployed(compiled)  # a policy past its budget is the agent's to classify
    with PcapFilter(expr, optimize=False) as pcap:
        for p in packets:
            want = pcap.matches(syn_frame(p))
            assert holds(pred, p) == want, (expr, p, want)
            assert (deployed.classify(p).policy == "p") == want, (expr, p, want)
            if compiled.stats.over_budget == ():
                assert (chain_policy_for(compiled.entries, p) == "p") == want, (expr, p, want)


@given(st.integers(0, 2**32), st.sampled_from(["range", "ternary"]))
@settings(max_examples=3 * settings.default.max_examples)  # scales with the profile
def test_random_predicates_agree_with_libpcap(seed: int, ports: str) -> None:
    gen = PredicateGenerator(random.Random(seed))
    _agree(gen.expression(), [gen.syn() for _ in range(40)], ports)


CASES = [
    "tcp dst port 80 or 443",
    "port 80 and (host 10.0.1.1) or 443",
    "port 80 or (443 or 8080)",
    "host 10.0.1.1 and not 10.0.1.5",
    "src or dst port 22 and not src and dst net 10.0.0.0/8",
    "dst net 10.0.1 or 10.0.2",
    "src 10.0.1",
    "net 10.0.0.0 mask 255.0.255.0",
    "tcp src portrange 1000-1005 or dst portrange 0-22",
    "! port 80 && port 81 || ip proto \\tcp",
    "not not tcp port 0x50",
    "ip and tcp and ip proto 6",
    "dst port 80 && not 80",
    "!!host 10.0.1.0 && not 192.168.0.5 && ip host 10.1.0.100 or 10.0.9.9 or 10.0.1.0",
]


@pytest.mark.parametrize("expr", CASES)
def test_known_subtleties_agree_with_libpcap(expr: str) -> None:
    gen = PredicateGenerator(random.Random(expr))
    _agree(expr, [gen.syn() for _ in range(300)])


def test_contradictions_compile_to_no_chain_entry() -> None:
    # libpcap's optimiser refuses these ("expression rejects all packets"); we emit nothing for them
    for expr in (
        "dst port 80 && not 80",
        "src and dst port 443 && src or dst port 80",
        "dst host 10.0.2.0 && 10.0.2.5",
    ):
        with pytest.raises(PcapFilterError, match="rejects all packets"):
            PcapFilter(expr)
        compiled = compile_text(f"{HEADER}policy p: {expr} -> fw\n", "c.dysco")
        assert [e for e in compiled.entries if e.action == "chain"] == []


def test_ip_proto_tcp_is_accepted_although_libpcap_needs_an_escape() -> None:
    compiled = compile_text(f"{HEADER}policy p: ip proto tcp -> fw\n", "c.dysco")
    assert [e.action for e in compiled.entries] == ["chain"]
    with pytest.raises(PcapFilterError):
        PcapFilter("ip proto tcp")
