"""Outbound SYNs through the classifier, with the entries `dysco compile` produces."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dysco.compiler.p4rt import table_entries
from dysco.compiler.passes import compile_text
from dysco.p4names import HOST_PORT, NET_PORT, Reason
from dysco.softswitch import P4Program
from dysco.softswitch.server._convert import table_entry_from_proto
from dysco.softswitch.server._schema import Schema

from .dataplane import ROOT, Dut, assert_frames, packet_in


@pytest.fixture
def classified(dysco_program: P4Program) -> Dut:
    dut = Dut(dysco_program)
    compiled = compile_text((ROOT / "examples" / "policies.dysco").read_text())
    schema = Schema.from_p4info(dysco_program.p4info)
    for msg in table_entries(compiled.entries, dysco_program.p4info):
        dut.sw.write_entry("insert", table_entry_from_proto(schema, msg, need_action=True))
    return dut


def syn(src: str, dst: str, dport: int, flags: str = "S") -> Ether:
    return Ether() / IP(src=src, dst=dst) / TCP(sport=40000, dport=dport, flags=flags, seq=1000)


@pytest.mark.parametrize(
    ("src", "dst", "dport", "policy_id"),
    [
        ("10.0.1.5", "10.0.9.9", 80, 1),  # web (prio 60) beats pinned (prio 10)
        ("10.0.1.5", "192.0.2.1", 443, 1),
        ("10.0.1.9", "10.0.9.9", 22, 3),  # pinned (prio 40) beats the ssh bypass (prio 30)
        ("10.0.5.5", "192.0.2.1", 22, 2),
        ("10.0.5.5", "10.0.9.9", 5000, 3),
    ],
)
def test_hit_punts_with_policy_id(classified: Dut, src: str, dst: str, dport: int, policy_id: int) -> None:
    pkt = syn(src, dst, dport)
    out = classified.send(HOST_PORT, pkt)
    assert [p for p, _ in out] == [255], out
    fields, inner = packet_in(out[0][1])
    assert fields == {
        "ingress_port": HOST_PORT,
        "pad0": 0,
        "reason": Reason.POLICY_SYN,
        "detail": 0,
        "policy_id": policy_id,
        "session_id": 0,
    }
    assert bytes(inner) == bytes(pkt)


@pytest.mark.parametrize(
    "pkt",
    [
        syn("10.0.1.9", "192.0.2.1", 22),  # the ssh policy's bypass entry
        syn("10.0.5.5", "192.0.2.1", 80),  # no entry: miss
        syn("10.0.5.5", "192.0.2.1", 22, flags="SA"),  # SYN-ACK: not classified
        syn("10.0.5.5", "192.0.2.1", 22, flags="A"),
    ],
)
def test_bypass_and_miss_forward_untouched(classified: Dut, pkt: Ether) -> None:
    assert_frames(classified.send(HOST_PORT, pkt), [(NET_PORT, pkt)])


def test_inbound_syn_is_not_classified(classified: Dut) -> None:
    pkt = syn("10.0.5.5", "192.0.2.1", 22)
    assert_frames(classified.send(NET_PORT, pkt), [(HOST_PORT, pkt)])


def test_a_syn_on_a_dropped_sessions_five_tuple_is_classified(classified: Dut) -> None:
    """A drop entry (a spliced proxy's socket) drops the kernel's leftovers on that five-tuple, but
    a SYN there is a new connection reusing the port: it is classified as if the entry were not."""
    from dysco.p4names import SESSION_OUT

    from .test_sessions import fresh

    key = ("10.0.1.5", "10.0.9.9", 40000, 80)
    classified.add_session(key, SESSION_OUT.drop_action)
    data = syn(*key[:2], key[3], flags="A")
    assert classified.send(HOST_PORT, fresh(data)) == []  # a leftover: dropped
    out = classified.send(HOST_PORT, syn(*key[:2], key[3]))
    assert [p for p, _ in out] == [255], out
    fields, _inner = packet_in(out[0][1])
    assert (fields["reason"], fields["policy_id"]) == (Reason.POLICY_SYN, 1)
    classified.add_session(("10.0.5.5", "192.0.2.1", 40000, 80), SESSION_OUT.drop_action)
    out = classified.send(HOST_PORT, syn("10.0.5.5", "192.0.2.1", 80))  # no policy: forwarded as it is
    assert [p for p, _ in out] == [NET_PORT]


def test_a_full_classifier_punts_what_it_cannot_hold_for_the_agent_to_classify(
    dysco_program: P4Program,
) -> None:
    """A table of three entries holds web's two; one software entry covers ssh and pinned. The
    pipeline punts their SYNs with the software flag and ssh's chain id as the start, and the
    agent's evaluator finishes the job."""
    from dysco.compiler.evaluate import Syn
    from dysco.compiler.passes import Options
    from dysco.compiler.software import SOFTWARE_FLAG, SoftwareClassifier
    from dysco.runtime.core._types import ip_int

    dut = Dut(dysco_program)
    compiled = compile_text(
        (ROOT / "examples" / "policies.dysco").read_text(), "p.dysco", Options(capacity=3)
    )
    assert [e.action for e in compiled.entries] == ["chain", "chain", "software"]
    schema = Schema.from_p4info(dysco_program.p4info)
    for msg in table_entries(compiled.entries, dysco_program.p4info):
        dut.sw.write_entry("insert", table_entry_from_proto(schema, msg, need_action=True))
    software = SoftwareClassifier.from_compiled(compiled)
    for src, dst, dport, want in (
        ("10.0.5.5", "192.0.2.1", 22, "ssh"),
        ("10.0.1.9", "10.0.9.9", 22, "pinned"),
        ("10.0.1.9", "192.0.2.1", 22, None),  # ssh says no, pinned does not hold: on untouched
    ):
        out = dut.send(HOST_PORT, syn(src, dst, dport))
        assert [p for p, _ in out] == [255], out
        fields, _ = packet_in(out[0][1])
        assert fields["reason"] == Reason.POLICY_SYN and fields["policy_id"] == SOFTWARE_FLAG | 2
        found = software.classify_punt(Syn(ip_int(src), ip_int(dst), 40000, dport), fields["policy_id"])
        assert (software.name(found) if found else None) == want
    web = syn("10.0.1.5", "192.0.2.1", 443)
    assert packet_in(dut.send(HOST_PORT, web)[0][1])[0]["policy_id"] == 1  # in the table
