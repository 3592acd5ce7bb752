"""The vertical slice: the IPv4 router program end to end through Switch.process."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from dysco.errors import UserError
from dysco.softswitch import P4Program, Switch, program_from_device_config
from dysco.softswitch.api import ActionCall, EntryError, FieldMatch, TableEntry

from .util import ipv4_frame


def ids(prog: P4Program) -> tuple[int, int, int]:
    info = prog.p4info
    table = next(t.preamble.id for t in info.tables if t.preamble.name == "MyIngress.ipv4_lpm")
    fwd = next(a.preamble.id for a in info.actions if a.preamble.name == "MyIngress.ipv4_forward")
    drop = next(a.preamble.id for a in info.actions if a.preamble.name == "MyIngress.drop")
    return table, fwd, drop


def route(sw: Switch, prog: P4Program, prefix: int, plen: int, port: int, mac: int = 0x0A0B0C0D0E0F) -> None:
    table, fwd, _ = ids(prog)
    sw.write_entry(
        "insert",
        TableEntry(table, (FieldMatch(1, "lpm", prefix, prefix_len=plen),), ActionCall(fwd, (mac, port))),
    )


def test_forwards_decrements_ttl_and_fixes_checksum(router: Switch, router_program: P4Program) -> None:
    route(router, router_program, 0x0A010000, 16, 3)
    out = router.process(1, ipv4_frame("10.1.2.3", ttl=64))
    assert [p for p, _ in out] == [3]
    pkt = Ether(out[0][1])
    assert pkt.dst == "0a:0b:0c:0d:0e:0f" and pkt.src == "00:00:00:00:00:01"
    assert pkt[IP].ttl == 63
    sent = pkt[IP].chksum
    del pkt[IP].chksum
    assert Ether(bytes(pkt))[IP].chksum == sent


def test_longest_prefix_wins(router: Switch, router_program: P4Program) -> None:
    route(router, router_program, 0x0A000000, 8, 2)
    route(router, router_program, 0x0A010200, 24, 4)
    assert router.process(1, ipv4_frame("10.1.2.3"))[0][0] == 4
    assert router.process(1, ipv4_frame("10.9.9.9"))[0][0] == 2


def test_default_drop_and_ttl_expiry(router: Switch, router_program: P4Program) -> None:
    assert router.process(1, ipv4_frame("10.1.2.3")) == []  # default_action = drop()
    route(router, router_program, 0x0A000000, 8, 2)
    assert router.process(1, ipv4_frame("10.1.2.3", ttl=1)) == []


def test_non_ipv4_goes_to_port_0_unless_dropped(router: Switch) -> None:
    # the ingress drops non-IPv4 (else branch); a runt frame: parser error, still no crash
    assert router.process(1, bytes.fromhex("000000000001aabbccddeeff86dd") + bytes(40)) == []
    assert router.process(1, b"\x00\x01") == []


def test_default_entry_can_be_changed_and_reset(router: Switch, router_program: P4Program) -> None:
    table, fwd, drop = ids(router_program)
    assert router.default_entry(table).action == ActionCall(drop, ())
    router.set_default_entry(TableEntry(table, (), ActionCall(fwd, (1, 7)), is_default_action=True))
    assert router.process(1, ipv4_frame())[0][0] == 7
    router.reset_default_entry(table)
    assert router.process(1, ipv4_frame()) == []


def test_write_errors(router: Switch, router_program: P4Program) -> None:
    table, fwd, _ = ids(router_program)
    route(router, router_program, 0x0A000000, 8, 2)
    with pytest.raises(EntryError) as e:
        route(router, router_program, 0x0A000000, 8, 3)
    assert e.value.code == "ALREADY_EXISTS"
    bad = TableEntry(table, (FieldMatch(1, "lpm", 0x0A000001, prefix_len=8),), ActionCall(fwd, (1, 2)))
    with pytest.raises(EntryError, match="bits set beyond the prefix"):
        router.write_entry("insert", bad)
    with pytest.raises(EntryError, match="does not fit 9 bits"):
        router.write_entry(
            "insert", TableEntry(table, (FieldMatch(1, "lpm", 0, prefix_len=0),), ActionCall(fwd, (1, 512)))
        )
    with pytest.raises(EntryError) as e:
        router.write_entry(
            "delete",
            TableEntry(table, (FieldMatch(1, "lpm", 0x0B000000, prefix_len=8),), ActionCall(fwd, (1, 2))),
        )
    assert e.value.code == "NOT_FOUND"
    assert len(router.read_entries(table)) == 1
    with pytest.raises(EntryError) as e:
        router.write_entry("insert", TableEntry(12345, (), ActionCall(fwd, (1, 2))))
    assert e.value.code == "NOT_FOUND"


def test_device_config_round_trip(router_program: P4Program) -> None:
    again = program_from_device_config(router_program.device_config())
    assert again.p4info == router_program.p4info
    sw = Switch(again)
    route(sw, again, 0x0A000000, 8, 5)
    assert sw.process(1, ipv4_frame())[0][0] == 5


def test_bad_device_config_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not a softswitch program"):
        program_from_device_config(b'{"name": "x"}')
    with pytest.raises(UserError, match="not a softswitch program"):
        program_from_device_config(b"\xff\x00 not json")
    with pytest.raises(UserError, match="bmv2 JSON"):
        program_from_device_config(b'{"pipelines": []}')
    with pytest.raises(UserError, match="version 7"):
        program_from_device_config(b'{"format": "dysco-softswitch-program", "version": 7}')
    with pytest.raises(UserError, match="corrupt"):
        program_from_device_config(b'{"format": "dysco-softswitch-program", "version": 1, "name": "x"}')


def test_no_pipeline() -> None:
    with pytest.raises(EntryError, match="No forwarding pipeline config set for this device"):
        Switch().process(1, b"")


def test_readme_snippet_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "softswitch" / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    router = Path(__file__).parent / "programs" / "router.p4"
    code = code.replace('"router.p4"', repr(str(router))).replace('defines=["DEBUG=1"]', "defines=[]")
    code = code.replace("sw.process(1, frame)", "result = sw.process(1, frame)")
    env: dict[str, object] = {"frame": ipv4_frame("10.1.2.3")}
    exec(compile(code, "README.md", "exec"), env)
    assert env["result"] == [(2, env["result"][0][1])]  # type: ignore[index]


def test_stats(router: Switch, router_program: P4Program) -> None:
    route(router, router_program, 0x0A000000, 8, 2)
    router.process(1, ipv4_frame())
    router.process(1, b"\x00\x01")  # too short for Ethernet: a parser error, counted as malformed
    router.process(3, ipv4_frame("11.0.0.1"))
    st = router.stats
    assert (st.packets_in, st.packets_out, st.packets_dropped, st.malformed) == (3, 1, 2, 1)
    assert st.per_port_in == {1: 2, 3: 1}
