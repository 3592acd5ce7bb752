"""Passthrough, packet-out modes and the punts that need no entries."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from dysco.p4names import (
    CONTROL_UDP_PORT,
    DYSCO_MAGIC,
    HOST_PORT,
    NET_PORT,
    TAG_OPTION,
    PacketOutMode,
    Reason,
)
from dysco.softswitch import P4Program, Switch

from .dataplane import Dut, assert_frames, packet_in, packet_out

MAGIC = DYSCO_MAGIC.to_bytes(4, "big")

OTHER_TRAFFIC = [
    Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2"),
    Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53) / b"query",
    Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"ping",
    Ether() / IPv6() / TCP(),
    Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="PA") / b"data",
    Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="S") / b"fastopen",
    Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="F"),
    Ether() / IP(proto=47) / Raw(b"\x00" * 30),
]


@pytest.mark.parametrize("pkt", OTHER_TRAFFIC, ids=lambda p: p.summary())
@pytest.mark.parametrize(("inp", "outp"), [(HOST_PORT, NET_PORT), (NET_PORT, HOST_PORT)])
def test_non_dysco_traffic_passes_untouched(dut: Dut, pkt: Packet, inp: int, outp: int) -> None:
    assert_frames(dut.send(inp, pkt), [(outp, pkt)])


@pytest.mark.parametrize("pkt", OTHER_TRAFFIC, ids=lambda p: p.summary())
def test_baseline_forwards_the_same(baseline_program: P4Program, dut: Dut, pkt: Packet) -> None:
    base = Switch(baseline_program, cpu_port=255)
    for inp in (HOST_PORT, NET_PORT):
        assert base.process(inp, bytes(pkt)) == dut.send(inp, pkt)


def test_unknown_port_drops(dut: Dut) -> None:
    assert dut.send(7, OTHER_TRAFFIC[1]) == []


@pytest.mark.parametrize("inp", [HOST_PORT, NET_PORT])
def test_control_message_punted(dut: Dut, inp: int) -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=4000, dport=CONTROL_UDP_PORT) / b"lock"
    out = dut.send(inp, pkt)
    assert [p for p, _ in out] == [255]
    fields, inner = packet_in(out[0][1])
    assert (fields["reason"], fields["ingress_port"]) == (Reason.CONTROL, inp)
    assert bytes(inner) == bytes(pkt)


def test_dysco_syn_punted_from_net(dut: Dut) -> None:
    tcp = TCP(flags="S", options=[("MSS", 1460)])
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / tcp / MAGIC / b"x"
    out = dut.send(NET_PORT, pkt)
    assert [p for p, _ in out] == [255]
    fields, inner = packet_in(out[0][1])
    assert (fields["reason"], fields["ingress_port"]) == (Reason.DYSCO_SYN, NET_PORT)
    assert bytes(inner) == bytes(pkt)


@pytest.mark.parametrize(
    "pkt",
    [
        Ether() / IP() / TCP(flags="SA") / MAGIC,  # SYN-ACK
        Ether() / IP() / TCP(flags="S") / b"DYSX",  # other magic
        Ether() / IP() / TCP(flags="S") / MAGIC[:3],  # too short
        Ether() / IP(len=43) / TCP(flags="S") / MAGIC,  # magic beyond the IPv4 packet
    ],
    ids=["synack", "other", "short", "beyond-ip"],
)
def test_not_a_dysco_syn(dut: Dut, pkt: Packet) -> None:
    assert_frames(dut.send(NET_PORT, pkt), [(HOST_PORT, pkt)])


def test_tagged_syn_from_host_punted(dut: Dut) -> None:
    opts = [("MSS", 1460), (TAG_OPTION, b"\x01\x02"), ("NOP", None), ("NOP", None)]
    pkt = Ether() / IP() / TCP(flags="S", options=opts)
    out = dut.send(HOST_PORT, pkt)
    assert [p for p, _ in out] == [255]
    fields, inner = packet_in(out[0][1])
    assert fields["reason"] == Reason.TAGGED_SYN
    assert bytes(inner) == bytes(pkt)


@pytest.mark.parametrize("ip", [IP(options=[b"\x01\x01\x01\x00"]), IP(flags="MF"), IP(frag=10)])
def test_tcp_without_a_lookup_is_punted(dut: Dut, ip: IP) -> None:
    pkt = Ether() / ip / TCP(flags="A")
    out = dut.send(HOST_PORT, pkt)
    assert [p for p, _ in out] == [255]
    assert packet_in(out[0][1])[0]["reason"] == Reason.IP_UNSUPPORTED


@pytest.mark.parametrize("port", [HOST_PORT, NET_PORT, 9])
def test_packet_out_direct(dut: Dut, port: int) -> None:
    pkt = Ether() / IP() / UDP(dport=CONTROL_UDP_PORT) / b"ack"
    assert_frames(dut.sw.process(255, packet_out(port, PacketOutMode.DIRECT, pkt)), [(port, pkt)])


def test_packet_out_pipeline_runs_as_if_from_port(dut: Dut) -> None:
    pkt = Ether() / IP() / TCP(flags="A") / b"data"
    assert_frames(dut.sw.process(255, packet_out(HOST_PORT, PacketOutMode.PIPELINE, pkt)), [(NET_PORT, pkt)])
    assert_frames(dut.sw.process(255, packet_out(NET_PORT, PacketOutMode.PIPELINE, pkt)), [(HOST_PORT, pkt)])
    ctl = Ether() / IP() / UDP(dport=CONTROL_UDP_PORT)
    out = dut.sw.process(255, packet_out(NET_PORT, PacketOutMode.PIPELINE, ctl))
    assert packet_in(out[0][1])[0]["ingress_port"] == NET_PORT


def test_baseline_packet_out(baseline_program: P4Program) -> None:
    base = Switch(baseline_program, cpu_port=255)
    pkt = Ether() / IP() / TCP()
    assert base.process(255, packet_out(NET_PORT, PacketOutMode.DIRECT, pkt)) == [(NET_PORT, bytes(pkt))]
    assert base.process(255, packet_out(NET_PORT, PacketOutMode.PIPELINE, pkt)) == [(HOST_PORT, bytes(pkt))]
