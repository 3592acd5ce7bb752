"""Punt rate limits: a meter per reason drops the excess in the NIC and a counter counts it."""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dysco.compiler.p4rt import table_entries
from dysco.compiler.passes import compile_text
from dysco.p4names import (
    CONTROL_UDP_PORT,
    HOST_PORT,
    NET_PORT,
    PEER_CELLS,
    PEER_METER,
    PUNT_DROPPED,
    PUNT_METER,
    PUNT_REASONS,
    TEARDOWN_CLONE_SESSION,
    Reason,
)
from dysco.runtime._nic import Nic
from dysco.softswitch import P4Program
from dysco.softswitch.api import MeterConfig
from dysco.softswitch.server._convert import table_entry_from_proto
from dysco.softswitch.server._schema import Schema

from .dataplane import ROOT, Dut, Rewrite, ip2int
from .test_sessions import HOST_SIDE, TO_NET, fresh, seg

SECOND = 1_000_000_000


def _id(info: Any, group: str, name: str) -> int:
    return next(o.preamble.id for o in getattr(info, group) if o.preamble.name == name)


def _classified(dut: Dut) -> Dut:
    prog = dut.prog
    compiled = compile_text((ROOT / "examples" / "policies.dysco").read_text(), "policies.dysco")
    schema = Schema.from_p4info(prog.p4info)
    for msg in table_entries(compiled.entries, prog.p4info):
        dut.sw.write_entry("insert", table_entry_from_proto(schema, msg, need_action=True))
    return dut


def _syn(sport: int) -> bytes:
    pkt = Ether() / IP(src="10.0.1.5", dst="10.0.7.7") / TCP(sport=sport, dport=80, flags="S")
    return bytes(pkt)


def _limit(dut: Dut, reason: Reason, per_second: int, burst: int) -> None:
    meter = _id(dut.prog.p4info, "meters", PUNT_METER)
    dut.sw.set_meter(meter, int(reason), MeterConfig(per_second, burst, per_second, burst))


def _dropped(dut: Dut, reason: Reason) -> int:
    return dut.sw.read_counter(_id(dut.prog.p4info, "counters", PUNT_DROPPED), int(reason)).packets


def test_arrays_cover_every_reason(dysco_program: P4Program) -> None:
    info: Any = dysco_program.p4info
    meter = next(m for m in info.meters if m.preamble.name == PUNT_METER)
    counter = next(c for c in info.counters if c.preamble.name == PUNT_DROPPED)
    assert meter.size == counter.size == PUNT_REASONS > max(Reason)
    assert meter.spec.unit == meter.spec.PACKETS and counter.spec.unit == counter.spec.PACKETS


def test_unconfigured_meters_limit_nothing(dut: Dut) -> None:
    _classified(dut)
    outs = [dut.send(HOST_PORT, _syn(30000 + i)) for i in range(50)]
    assert all([p for p, _ in out] == [255] for out in outs)
    assert _dropped(dut, Reason.POLICY_SYN) == 0


@pytest.mark.fake_clock
def test_a_syn_flood_is_cut_to_the_configured_rate_and_counted(dut: Dut) -> None:
    _classified(dut)
    _limit(dut, Reason.POLICY_SYN, per_second=5, burst=5)
    punted = sum([p for p, _ in dut.send(HOST_PORT, _syn(30000 + i))] == [255] for i in range(40))
    assert punted == 5
    assert _dropped(dut, Reason.POLICY_SYN) == 35
    # other reasons are not limited by it: a control message still reaches the agent
    ctl = Ether() / IP(src="10.0.2.1", dst="10.0.1.5") / b"\x00" * 8
    ctl = Ether(
        bytes(Ether() / IP(src="10.0.2.1", dst="10.0.1.5", proto=17) / bytes.fromhex("0009264500080000"))
    )
    assert [p for p, _ in dut.send(NET_PORT, bytes(ctl))] == [255]
    # one second later the bucket has refilled by the rate
    dut.clock.now += SECOND
    punted = sum([p for p, _ in dut.send(HOST_PORT, _syn(31000 + i))] == [255] for i in range(40))
    assert punted == 5
    assert _dropped(dut, Reason.POLICY_SYN) == 70


def test_teardown_copies_are_limited_but_the_segment_goes_on(dut: Dut) -> None:
    dut.teardown_copies_to_cpu(TEARDOWN_CLONE_SESSION)
    dut.add_session(HOST_SIDE, Rewrite(**{**TO_NET.__dict__, "session_id": 3}))
    _limit(dut, Reason.TEARDOWN, per_second=0, burst=2)  # no refill, whatever the clock
    copies = forwarded = 0
    for _ in range(10):
        out = dut.send(HOST_PORT, fresh(seg(HOST_SIDE, flags="RA", payload=b"")))
        forwarded += [p for p, _ in out].count(NET_PORT)
        copies += [p for p, _ in out].count(255)
    assert (forwarded, copies) == (10, 2)
    assert _dropped(dut, Reason.TEARDOWN) == 8


def _dysco_syn(src: str, sport: int) -> bytes:
    pkt = Ether() / IP(src=src, dst="10.0.1.5") / TCP(sport=sport, dport=80, flags="S") / b"DYSC\x01"
    return bytes(pkt)


def test_a_known_agent_has_a_cell_of_its_own(dut: Dut) -> None:
    """A flood from other sources empties the Dysco-SYN cell; the Dysco SYNs and control
    messages of an agent in known_peer are metered in its own cell of the peer meter.  Rates
    0: no refill, whatever the clock (the kernel's cannot be stopped)."""
    info: Any = dut.prog.p4info
    nic = Nic(info)
    known, other = "10.0.2.1", "10.0.2.2"
    dut.sw.write_entry("insert", nic.peer_entry(ip2int(known), 7))
    _limit(dut, Reason.DYSCO_SYN, per_second=0, burst=3)
    peer_meter = _id(info, "meters", PEER_METER)
    dut.sw.set_meter(peer_meter, 7, MeterConfig(0, 4, 0, 4))

    def punted(src: str, n: int, base: int) -> int:
        return sum([p for p, _ in dut.send(NET_PORT, _dysco_syn(src, base + i))] == [255] for i in range(n))

    assert punted(other, 20, 30000) == 3  # the flood spends the reason's cell
    assert punted(known, 6, 31000) == 4  # the known agent's own cell is untouched by it
    assert _dropped(dut, Reason.DYSCO_SYN) == 17 + 2  # both cells' drops are the reason's
    # its control messages share its cell: spent now
    ctl = Ether() / IP(src=known, dst="10.0.1.5") / UDP(sport=CONTROL_UDP_PORT, dport=CONTROL_UDP_PORT) / b"m"
    assert [p for p, _ in dut.send(NET_PORT, bytes(ctl))] == []
    assert peer_meter != _id(info, "meters", PUNT_METER) and PEER_CELLS > 7
