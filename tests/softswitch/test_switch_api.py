"""The in-process Device API beyond tables: controller headers, idle timeouts, priorities,
direct counters, counters, registers, digests, the packet replication engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.softswitch import P4Program, Switch, load_program
from dysco.softswitch.api import (
    ActionCall,
    CloneSession,
    CounterValue,
    EntryError,
    FieldMatch,
    MeterConfig,
    Replica,
    TableEntry,
)
from dysco.softswitch.p4info import jenkins_one_at_a_time

PROGRAM = Path(__file__).parent / "programs" / "features.p4"
ETH = bytes.fromhex("000000000001aabbccddeeff") + b"\x08\x00" + bytes(20)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def prog() -> P4Program:
    return load_program(PROGRAM)


def ids(prog: P4Program) -> dict[str, int]:
    p = prog.p4info
    out = {t.preamble.alias: t.preamble.id for t in p.tables}
    out |= {a.preamble.alias: a.preamble.id for a in p.actions}
    out |= {c.preamble.alias: c.preamble.id for c in [*p.counters, *p.direct_counters, *p.registers]}
    return out


def acl(
    prog: P4Program,
    ether: int,
    mask: int,
    port: int,
    action: str,
    params: tuple[int, ...] = (),
    prio: int = 10,
    timeout: int = 0,
) -> TableEntry:
    i = ids(prog)
    match = (FieldMatch(1, "ternary", ether & mask, mask=mask), FieldMatch(2, "exact", port))
    return TableEntry(i["acl"], match, ActionCall(i[action], params), priority=prio, idle_timeout_ns=timeout)


def test_controller_headers_in_p4info(prog: P4Program) -> None:
    cpm = {c.preamble.name: c for c in prog.p4info.controller_packet_metadata}
    assert set(cpm) == {"packet_in", "packet_out"}
    assert cpm["packet_out"].preamble.id == 75327753  # hash of the header *type* name packet_out_t
    suffix = jenkins_one_at_a_time(b"packet_in_t") & 0xFFFFFF
    assert cpm["packet_in"].preamble.id == (0x04 << 24) | suffix
    assert [(m.id, m.name, m.bitwidth) for m in cpm["packet_in"].metadata] == [
        (1, "ingress_port", 9),
        (2, "pad", 7),
    ]


def test_table_p4info(prog: P4Program) -> None:
    t = prog.p4info.tables[0]
    assert t.preamble.name == "MyIngress.acl"
    assert [f.name for f in t.match_fields] == ["h.eth.etherType", "sm.ingress_port"]
    assert t.idle_timeout_behavior == t.NOTIFY_CONTROL
    assert t.size == 64
    assert list(t.direct_resource_ids) == [ids(prog)["acl_counter"]]


def test_packet_out_and_packet_in(prog: P4Program) -> None:
    sw = Switch(prog, cpu_port=255)
    # packet-out: the 2-byte header names egress port 3 (9 bits, then 7 bits of padding)
    out = sw.process(255, (3 << 7).to_bytes(2, "big") + ETH)
    assert out == [(3, ETH)]
    sw.write_entry("insert", acl(prog, 0x0800, 0xFFFF, 1, "to_cpu"))
    out = sw.process(1, ETH)
    assert out == [(255, (1 << 7).to_bytes(2, "big") + ETH)]


def test_priorities_modify_delete(prog: P4Program) -> None:
    sw = Switch(prog)
    low = acl(prog, 0x0800, 0xFF00, 1, "fwd", (5,), prio=1)
    high = acl(prog, 0x0800, 0xFFFF, 1, "fwd", (6,), prio=2)
    sw.write_entry("insert", low)
    sw.write_entry("insert", high)
    assert sw.process(1, ETH)[0][0] == 6
    sw.write_entry("modify", acl(prog, 0x0800, 0xFFFF, 1, "fwd", (7,), prio=2))
    assert sw.process(1, ETH)[0][0] == 7
    sw.write_entry("delete", high)
    assert sw.process(1, ETH)[0][0] == 5
    with pytest.raises(EntryError, match="needs a priority"):
        sw.write_entry("insert", acl(prog, 0x0800, 0xFFFF, 2, "fwd", (5,), prio=0))
    with pytest.raises(EntryError, match="outside the mask"):
        match = (FieldMatch(1, "ternary", 0x0801, mask=0xFF00), FieldMatch(2, "exact", 1))
        sw.write_entry("insert", TableEntry(low.table_id, match, low.action, 3))
    with pytest.raises(EntryError, match=r"exact match field sm\.ingress_port is missing"):
        sw.write_entry(
            "insert", TableEntry(low.table_id, (FieldMatch(1, "ternary", 0, mask=0),), low.action, 3)
        )


def test_idle_timeout_with_a_fake_clock(prog: P4Program) -> None:
    clock = FakeClock()
    sw = Switch(prog, clock=clock)
    e = acl(prog, 0x0800, 0xFFFF, 1, "fwd", (2,), timeout=1000)
    sw.write_entry("insert", e)
    clock.now += 999
    assert sw.expired_entries() == []
    clock.now += 1
    expired = sw.expired_entries()
    assert [x.match for x in expired] == [e.match] and expired[0].time_since_last_hit_ns == 1000
    assert sw.expired_entries() == []  # reported once per idle period
    sw.process(1, ETH)  # a hit starts a new period
    assert sw.read_entries()[0].time_since_last_hit_ns == 0
    clock.now += 1500
    assert len(sw.expired_entries()) == 1


def test_idle_timeout_needs_table_support(router_program: P4Program) -> None:
    info = router_program.p4info
    t = info.tables[0].preamble.id
    a = next(x.preamble.id for x in info.actions if x.preamble.name.endswith("ipv4_forward"))
    entry = TableEntry(t, (FieldMatch(1, "lpm", 0, prefix_len=0),), ActionCall(a, (1, 2)), idle_timeout_ns=5)
    with pytest.raises(EntryError, match="does not support idle timeouts"):
        Switch(router_program).write_entry("insert", entry)


def test_direct_counter_counter_register(prog: P4Program) -> None:
    sw = Switch(prog)
    i = ids(prog)
    e = acl(prog, 0x0800, 0xFFFF, 1, "fwd", (2,))
    sw.write_entry("insert", e)
    sw.process(1, ETH)
    sw.process(1, ETH)
    sw.process(2, ETH)  # misses: the default action is not counted
    assert sw.read_direct_counter(e) == CounterValue(2, 2 * len(ETH))
    sw.write_direct_counter(e, CounterValue(0, 0))
    assert sw.read_direct_counter(e) == CounterValue(0, 0)
    assert sw.read_counter(i["port_counter"], 1).packets == 2
    assert sw.counter_size(i["port_counter"]) == 16
    assert sw.read_register(i["last_len"], 2) == len(ETH)
    sw.write_register(i["last_len"], 2, 7)
    assert sw.read_register(i["last_len"], 2) == 7
    with pytest.raises(EntryError) as err:
        sw.read_register(i["last_len"], 16)
    assert err.value.code == "OUT_OF_RANGE"
    with pytest.raises(EntryError, match="does not fit 32 bits"):
        sw.write_register(i["last_len"], 0, 1 << 32)
    with pytest.raises(EntryError) as err:
        sw.read_counter(12345, 0)
    assert err.value.code == "NOT_FOUND"


def test_digest(prog: P4Program) -> None:
    sw = Switch(prog)
    sw.write_entry("insert", acl(prog, 0x0800, 0xFFFF, 4, "learn"))
    assert sw.process(4, ETH)[0][0] == 1
    assert sw.digests() == [("learn_t", (0xAABBCCDDEEFF, 4))]
    assert sw.digests() == []
    assert [d.preamble.name for d in prog.p4info.digests] == ["learn_t"]


def test_pre_api(prog: P4Program) -> None:
    sw = Switch(prog)
    sw.set_multicast_group(1, [Replica(2, 0), Replica(3, 1)])
    assert sw.multicast_groups() == {1: (Replica(2, 0), Replica(3, 1))}
    sw.delete_multicast_group(1)
    with pytest.raises(EntryError) as err:
        sw.delete_multicast_group(1)
    assert err.value.code == "NOT_FOUND"
    with pytest.raises(EntryError, match="duplicate replica"):
        sw.set_multicast_group(2, [Replica(2, 0), Replica(2, 0)])
    sw.set_clone_session(CloneSession(5, (Replica(4),), packet_length_bytes=10))
    assert sw.clone_sessions()[5].packet_length_bytes == 10
    sw.delete_clone_session(5)
    assert sw.clone_sessions() == {}


def test_load_resets_state(prog: P4Program) -> None:
    sw = Switch(prog)
    sw.write_entry("insert", acl(prog, 0x0800, 0xFFFF, 1, "fwd", (2,)))
    sw.set_multicast_group(1, [Replica(2)])
    sw.load(prog)
    assert sw.read_entries() == [] and sw.multicast_groups() == {}


def test_meter_config_errors(prog: P4Program) -> None:
    sw = Switch(prog)
    with pytest.raises(EntryError):
        sw.set_meter(ids(prog)["port_counter"], 0, MeterConfig(1, 1, 1, 1))


def test_keyless_tables_take_no_entries() -> None:
    prog = load_program(Path(__file__).parent / "stf" / "control.p4")
    t = next(x for x in prog.p4info.tables if x.preamble.name.endswith("keyless"))
    sw = Switch(prog)
    with pytest.raises(EntryError, match="only its default entry"):
        sw.write_entry("insert", TableEntry(t.preamble.id, (), ActionCall(t.action_refs[0].id, ())))
