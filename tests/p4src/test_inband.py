"""In-band control segments (docs/dataplane.md, "In-band control"): a TCP segment from the network
whose option area starts with the in-band option goes to the agent, whatever its flags and
whether or not a session entry matches it; nothing else is taken for one."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from dysco.p4names import HOST_PORT, INBAND_OPTION, NET_PORT, SUBSESSION_IN, Reason

from .dataplane import Dut, Rewrite, assert_frames, packet_in

OPTION = INBAND_OPTION.to_bytes(4, "big") + b"\x01\x00\x00\x00"
SUB = ("10.0.2.1", "10.0.1.5", 7000, 50000)  # a subsession as it arrives from the network


def segment(options: bytes, flags: str = "A", five: tuple[str, str, int, int] = SUB) -> Packet:
    """A segment with ``options`` as its raw option area (a multiple of 4 bytes)."""
    src, dst, sport, dport = five
    tcp = TCP(sport=sport, dport=dport, flags=flags, seq=1, ack=2, dataofs=5 + len(options) // 4)
    return Ether() / IP(src=src, dst=dst, proto=6) / (bytes(tcp) + options + b"DYSR....")


def punted(dut: Dut, pkt: Packet) -> None:
    out = dut.send(NET_PORT, pkt)
    assert [p for p, _ in out] == [255], out
    fields, inner = packet_in(out[0][1])
    assert (fields["reason"], fields["ingress_port"]) == (Reason.INBAND, NET_PORT)
    assert bytes(inner) == bytes(pkt)


@pytest.mark.parametrize("flags", ["A", "PA", "FA", "R", "S", "SA", ""])
def test_punted_whatever_the_flags(dut: Dut, flags: str) -> None:
    punted(dut, segment(OPTION, flags))


def test_punted_on_a_subsession_with_an_entry(dut: Dut) -> None:
    """The entry would translate it to the host: the option goes first."""
    dut.add_session(SUB, Rewrite("10.0.9.9", "10.0.1.5", 80, 40000), SUBSESSION_IN)
    punted(dut, segment(OPTION))
    plain = segment(b"\x01\x01\x01\x01")
    assert [p for p, _ in dut.send(NET_PORT, plain)] == [HOST_PORT]


def test_punted_with_more_options_after_it(dut: Dut) -> None:
    punted(dut, segment(OPTION + b"\x01\x01\x08\x0a" + bytes(8)))


def test_a_cut_off_option_is_punted_for_the_agent_to_refuse(dut: Dut) -> None:
    punted(dut, segment(OPTION[:4]))


@pytest.mark.parametrize(
    "options",
    [
        b"\x01\x01\x01\x01" + OPTION,  # not the first option
        b"\xfe\x08\xf9\x89" + bytes(4),  # kind 254, another ExID (TCP Fast Open's)
        b"\xfe\x06\x44\x59\x00\x00\x01\x01",  # our ExID, another length
        b"\xfd\x08\x44\x59" + bytes(4),  # kind 253
    ],
    ids=["second", "other-exid", "other-length", "kind-253"],
)
def test_other_options_are_not_in_band(dut: Dut, options: bytes) -> None:
    pkt = segment(options)
    assert_frames(dut.send(NET_PORT, pkt), [(HOST_PORT, pkt)])


def test_from_the_host_it_is_not_punted(dut: Dut) -> None:
    """Only the network brings in-band segments (the agent sends its own straight out)."""
    pkt = segment(OPTION, five=("10.0.1.5", "10.0.2.1", 50000, 7000))
    assert_frames(dut.send(HOST_PORT, pkt), [(NET_PORT, pkt)])
