"""Answers the agent expects from its host: a packet-out in mode EXPECT_ANSWER marks the cell of
its SYN's answer; that SYN-ACK, should it miss session_out, is punted (reason 9).  Runs on both
back ends."""

from __future__ import annotations

from typing import Any

from dysco.p4names import (
    ANSWER_CELLS,
    ANSWER_EXPECTED,
    HOST_PORT,
    NET_PORT,
    SESSION_OUT,
    PacketOutMode,
    Reason,
    answer_cell,
    answer_tag,
)

from .dataplane import Dut, assert_frames, ip2int, packet_in, packet_out
from .test_sessions import Rewrite, expect, fresh, seg

# the last hop: the agent hands the client's SYN to its server (session as the host sees it)
SYN_TO_HOST = ("10.0.1.5", "10.0.9.9", 40000, 80)
ANSWER = ("10.0.9.9", "10.0.1.5", 80, 40000)
# the host's answer as the entries would translate it toward the previous hop
TO_PREV = Rewrite("10.0.9.9", "10.0.2.1", 7000, 50000)


def _register(dut: Dut) -> int:
    info: Any = dut.prog.p4info
    return int(next(r.preamble.id for r in info.registers if r.preamble.name == ANSWER_EXPECTED))


def _cell(five: tuple[str, str, int, int]) -> tuple[int, int]:
    src, dst, sport, dport = ip2int(five[0]), ip2int(five[1]), five[2], five[3]
    return answer_cell(src, dst, sport, dport), answer_tag(src, dst, sport, dport)


def _expect_answer(dut: Dut) -> bytes:
    syn = fresh(seg(SYN_TO_HOST, "S", b""))
    got = dut.sw.process(255, packet_out(HOST_PORT, PacketOutMode.EXPECT_ANSWER, syn))
    assert_frames(got, [(HOST_PORT, syn)])  # out as DIRECT sends it
    return syn


def test_the_register_is_declared_as_the_agent_expects(dut: Dut) -> None:
    info: Any = dut.prog.p4info
    (reg,) = [r for r in info.registers if r.preamble.name == ANSWER_EXPECTED]
    assert reg.size == ANSWER_CELLS and reg.type_spec.bitstring.bit.bitwidth == 64


def test_an_expected_answer_is_punted_while_it_misses_session_out(dut: Dut) -> None:
    reg = _register(dut)
    _expect_answer(dut)
    cell, tag = _cell(ANSWER)
    assert dut.sw.read_register(reg, cell) == tag  # the agent's hash is the program's
    synack = fresh(seg(ANSWER, "SA", b""))
    got = dut.send(HOST_PORT, synack)
    assert [p for p, _ in got] == [255]
    fields, inner = packet_in(got[0][1])
    assert (fields["reason"], fields["ingress_port"]) == (Reason.SETUP_MISS, HOST_PORT)
    assert bytes(inner) == synack
    # a retransmission that still finds no entry (the writes are slow) is punted as well
    assert [p for p, _ in dut.send(HOST_PORT, synack)] == [255]
    assert dut.sw.read_register(reg, cell) == tag
    # the entry in, it is translated
    dut.add_session(ANSWER, TO_PREV, table=SESSION_OUT)
    assert_frames(dut.send(HOST_PORT, synack), [(NET_PORT, expect(seg(ANSWER, "SA", b""), TO_PREV))])


def test_a_later_expectation_on_the_cell_replaces_the_earlier(dut: Dut) -> None:
    """The agent overwrites a cell only once the earlier expectation's entries are in: the earlier
    answer is then not punted any more (its entry translates it), the later one is."""
    _expect_answer(dut)
    later = ("10.0.1.5", "10.0.9.9", 80, 40000)  # the ports swapped: the same cell
    syn = fresh(seg(later, "S", b""))
    assert_frames(
        dut.sw.process(255, packet_out(HOST_PORT, PacketOutMode.EXPECT_ANSWER, syn)), [(HOST_PORT, syn)]
    )
    synack = fresh(seg(ANSWER, "SA", b""))
    assert_frames(dut.send(HOST_PORT, synack), [(NET_PORT, synack)])
    assert [
        p for p, _ in dut.send(HOST_PORT, fresh(seg(("10.0.9.9", "10.0.1.5", 40000, 80), "SA", b"")))
    ] == [255]


def test_without_an_expectation_a_host_syn_ack_leaves_as_before(dut: Dut) -> None:
    """Non-Dysco traffic, a program driven without the mode: nothing is punted."""
    synack = fresh(seg(ANSWER, "SA", b""))
    assert_frames(dut.send(HOST_PORT, synack), [(NET_PORT, synack)])
    # DIRECT and PIPELINE packet-outs expect nothing
    syn = fresh(seg(SYN_TO_HOST, "S", b""))
    assert_frames(dut.sw.process(255, packet_out(HOST_PORT, PacketOutMode.DIRECT, syn)), [(HOST_PORT, syn)])
    assert dut.sw.read_register(_register(dut), _cell(ANSWER)[0]) == 0
    assert_frames(dut.send(HOST_PORT, synack), [(NET_PORT, synack)])


def test_another_connection_on_the_same_cell_leaves_the_expectation(dut: Dut) -> None:
    """A SYN-ACK whose five-tuple hashes to the cell but is another connection's is forwarded, and
    the expectation stays for the right one (a flag it cleared would let that one out
    untranslated)."""
    reg = _register(dut)
    _expect_answer(dut)
    other = ("10.0.9.9", "10.0.1.5", 40000, 80)  # the ports swapped: the same sum, another tag
    assert _cell(other)[0] == _cell(ANSWER)[0] and _cell(other)[1] != _cell(ANSWER)[1]
    stranger = fresh(seg(other, "SA", b""))
    assert_frames(dut.send(HOST_PORT, stranger), [(NET_PORT, stranger)])
    assert dut.sw.read_register(reg, _cell(ANSWER)[0]) == _cell(ANSWER)[1]
    got = dut.send(HOST_PORT, fresh(seg(ANSWER, "SA", b"")))
    assert [p for p, _ in got] == [255]


def test_only_a_syn_ack_without_its_entry_is_punted(dut: Dut) -> None:
    """Other segments of the expected five-tuple leave as before, and so does its SYN-ACK once the
    entry is in (translated): the expectation is only looked at on a miss."""
    reg = _register(dut)
    _expect_answer(dut)
    for flags in ("A", "S", "R", "PA"):
        pkt = fresh(seg(ANSWER, flags, b""))
        got = dut.send(HOST_PORT, pkt)
        assert [p for p, _ in got] == [NET_PORT], flags
    dut.add_session(ANSWER, TO_PREV, table=SESSION_OUT)
    synack = seg(ANSWER, "SA", b"")
    assert_frames(dut.send(HOST_PORT, fresh(synack)), [(NET_PORT, expect(synack, TO_PREV))])
    assert dut.sw.read_register(reg, _cell(ANSWER)[0]) == _cell(ANSWER)[1]


def test_an_expectation_from_net_side_traffic_does_not_count(dut: Dut) -> None:
    """The same SYN-ACK from NET is not the host's answer: it goes through setup_ports as before."""
    _expect_answer(dut)
    synack = fresh(seg(ANSWER, "SA", b""))
    assert_frames(dut.send(NET_PORT, synack), [(HOST_PORT, synack)])


def test_a_program_built_without_the_register_is_the_old_one(dysco_program: Any) -> None:
    """-DDYSCO_ANSWER_CELLS=0: no register in the P4Info (so the agent sends nothing early to its
    host), mode 2 runs the pipeline as any mode but 0 did, a host SYN-ACK leaves as it is."""
    from dysco.softswitch import load_program

    from .dataplane import DYSCO_P4

    old = Dut(load_program(DYSCO_P4, defines=["DYSCO_ANSWER_CELLS=0"]))
    info: Any = old.prog.p4info
    assert not [r for r in info.registers if r.preamble.name == ANSWER_EXPECTED]
    syn = fresh(seg(SYN_TO_HOST, "S", b""))
    got = old.sw.process(255, packet_out(NET_PORT, 2, syn))  # as if from NET: on to the host
    assert_frames(got, [(HOST_PORT, syn)])
    got = old.sw.process(255, packet_out(HOST_PORT, 2, syn))  # as if from HOST: on to the network
    assert_frames(got, [(NET_PORT, syn)])
    synack = fresh(seg(ANSWER, "SA", b""))
    assert_frames(old.send(HOST_PORT, synack), [(NET_PORT, synack)])
