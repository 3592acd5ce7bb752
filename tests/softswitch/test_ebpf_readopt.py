"""Re-adoption on the ebpf target: a switch that leaves its data path running (or dies) and the
next one on the same ports, in one process: the second one takes over the pinned program and
rebuilds every table's entries (every match kind, priorities, defaults, const entries, idle
timeouts, metadata), the clone sessions and the meters from the maps; another program, an
unfinished pin directory or a second push clear them instead."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dysco.p4names import SESSION_OUT
from dysco.softswitch import load_program
from dysco.softswitch.api import ActionCall, CloneSession, FieldMatch, MeterConfig, Replica, TableEntry
from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig, _upgrade, cgen, unavailable
from dysco.softswitch.targets.ebpf._pins import META_PIN, read_meta

HERE = Path(__file__).resolve().parent
TABLES = HERE / "stf" / "tables.p4"
METERS = HERE / "stf" / "meters.p4"
ROUTER = HERE / "programs" / "router.p4"
DYSCO = HERE.parents[1] / "p4src" / "dysco.p4"
WHY = unavailable()
pytestmark = [pytest.mark.root, pytest.mark.skipif(WHY is not None, reason=WHY or "")]

# eth + data_t {a, b, c(16), d, r1..r5}: a=0x12 b=0x34 c=0x0100 d=7
FRAME = bytes.fromhex("0000000000010000000000028000" + "12340100070000000000") + bytes(32)


@pytest.fixture
def rig() -> Iterator[VethRig]:
    with VethRig([1, 2], tag=f"{time.monotonic_ns() % 100000}r") as r:
        yield r


@pytest.fixture
def switches(rig: VethRig) -> Iterator[list[EbpfSwitch]]:
    """Switches made by the test; each is closed (pins removed) at the end, whatever happened."""
    made: list[EbpfSwitch] = []
    try:
        yield made
    finally:
        for sw in reversed(made):
            sw.close()


def start(rig: VethRig, switches: list[EbpfSwitch], program: Any, cpu_port: int | None = None) -> EbpfSwitch:
    ports = {p: rig.switch_if(p) for p in rig.ports}
    sw = EbpfSwitch(program, ports=ports, netns=rig.name, rig=rig, cpu_port=cpu_port)
    switches.append(sw)
    return sw


def ids(program: Any) -> dict[str, int]:
    info = program.p4info
    return {o.preamble.name: o.preamble.id for group in (info.tables, info.actions) for o in group}


def entries(sw: EbpfSwitch) -> list[TableEntry]:
    return sorted(sw.read_entries(), key=repr)


def as_written(sw: EbpfSwitch) -> list[TableEntry]:
    """The entries without the time since their last hit (which moves on)."""
    return sorted((dataclasses.replace(e, time_since_last_hit_ns=None) for e in sw.read_entries()), key=repr)


def test_the_next_switch_readopts_every_kind_of_entry_the_defaults_and_clone_sessions(
    rig: VethRig, switches: list[EbpfSwitch]
) -> None:
    program: Any = load_program(TABLES)
    n = ids(program)
    first = start(rig, switches, program)
    written = [
        TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 0x12),), ActionCall(n["I.port"], (2,)),
                   controller_metadata=99, metadata=b"\x00cookie"),
        TableEntry(n["I.tern"], (FieldMatch(1, "ternary", 0x30, mask=0xF0),), ActionCall(n["I.set2"], (5,)),
                   priority=10),
        TableEntry(n["I.tern"], (FieldMatch(1, "ternary", 0x34, mask=0xFF),), ActionCall(n["I.set2"], (6,)),
                   priority=20),
        TableEntry(n["I.t_range"], (FieldMatch(1, "range", 0x80, high=0x180),), ActionCall(n["I.set3"], (7,)),
                   priority=1),
        TableEntry(n["I.t_opt"], (FieldMatch(1, "optional", 7), FieldMatch(2, "exact", 0x12)),
                   ActionCall(n["I.set4"], (8,)), priority=2),
        TableEntry(n["I.t_opt"], (FieldMatch(2, "exact", 0x13),), ActionCall(n["I.set4"], (9,)), priority=3),
    ]  # fmt: skip
    for e in written:
        first.write_entry("insert", e)
    first.set_default_entry(
        TableEntry(n["I.tern"], (), ActionCall(n["I.set2"], (0x42,)), is_default_action=True)
    )
    first.set_clone_session(CloneSession(5, (Replica(2, 1),)))
    before, out_before = entries(first), first.process(1, FRAME)
    assert len(before) == len(written) + 2  # and t_const's two const entries
    first.close(keep_datapath=True)
    assert (first.pin_dir / META_PIN).exists()

    second = start(rig, switches, program)
    assert second.kept_state
    assert entries(second) == before
    assert second.default_entry(n["I.tern"]).action == ActionCall(n["I.set2"], (0x42,))
    assert second.clone_sessions() == {5: CloneSession(5, (Replica(2, 1),))}
    assert second.process(1, FRAME) == out_before
    # the control plane's view is whole again: modify, delete and insert as before the restart
    second.write_entry("modify", TableEntry(n["I.tern"], written[2].match, ActionCall(n["I.set2"], (1,)),
                                            priority=20))  # fmt: skip
    second.write_entry("delete", written[1])
    second.write_entry("insert", written[1])  # a free slot, not one an adopted entry holds
    assert len(second.read_entries()) == len(before)
    with pytest.raises(Exception, match="exists already"):
        second.write_entry("insert", written[0])


def test_idle_timeouts_and_metadata_come_back_with_the_entries(
    rig: VethRig, switches: list[EbpfSwitch]
) -> None:
    """An entry idle for its timeout is reported by the next switch's sweep (it was due while no
    switch ran); one with a long timeout is not; both keep their metadata."""
    program: Any = load_program(DYSCO, defines=["DYSCO_SESSION_TABLE_SIZE=8"])
    n = ids(program)
    args = (0x0A000001, 0x0B000001, 2000, 8080, 1, 2, 0, 0, 0, 0, 1)

    def session(port: int, timeout: int) -> TableEntry:
        values = (0x0A000001, 0x0A630001, 6, port, 80)
        match = tuple(FieldMatch(i, "exact", v) for i, v in enumerate(values, start=1))
        call = ActionCall(n[SESSION_OUT.rewrite_action], args)
        meta = b"m%d" % port
        return TableEntry(n[SESSION_OUT.table], match, call, 0, timeout, port, meta)

    first = start(rig, switches, program)
    idle, busy = session(1000, 1), session(1001, 3600 * 10**9)
    first.write_entries([("insert", idle), ("insert", busy)])
    before = as_written(first)
    first.close(keep_datapath=True)

    second = start(rig, switches, program)
    assert as_written(second) == before
    expired = second.expired_entries()
    assert [(e.match, e.idle_timeout_ns, e.metadata) for e in expired] == [(idle.match, 1, b"m1000")]
    assert second.expired_entries() == []  # once per idle period, as before the restart


def test_meters_counters_and_registers_live_in_the_maps(rig: VethRig, switches: list[EbpfSwitch]) -> None:
    program: Any = load_program(METERS)
    first = start(rig, switches, program)
    mtr = next(m.preamble.id for m in program.p4info.meters if m.preamble.name.endswith("mtr"))
    first.set_meter(mtr, 1, MeterConfig(100, 10, 200, 20))
    first.close(keep_datapath=True)
    second = start(rig, switches, program)
    assert second.kept_state
    assert second.meter_configs() == {(mtr, 1): MeterConfig(100, 10, 200, 20)}


def test_another_program_on_the_same_ports_replaces_the_pinned_one(
    rig: VethRig, switches: list[EbpfSwitch]
) -> None:
    tables: Any = load_program(TABLES)
    first = start(rig, switches, tables)
    n = ids(tables)
    first.write_entry(
        "insert", TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 1),), ActionCall(n["I.port"], (2,)))
    )
    old = read_meta(first.pin_dir)
    first.close(keep_datapath=True)

    second = start(rig, switches, load_program(ROUTER))
    new = read_meta(second.pin_dir)
    assert not second.kept_state and second.read_entries() == []
    assert old is not None and new is not None and old.c_sha256 != new.c_sha256
    assert sorted(p.name for p in second.pin_dir.iterdir()) == sorted((*new.maps, META_PIN))


def test_an_unfinished_pin_directory_is_loaded_anew(rig: VethRig, switches: list[EbpfSwitch]) -> None:
    program: Any = load_program(TABLES)
    first = start(rig, switches, program)
    n = ids(program)
    first.write_entry(
        "insert", TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 1),), ActionCall(n["I.port"], (2,)))
    )
    first.close(keep_datapath=True)
    (first.pin_dir / META_PIN).unlink()  # as if the switch died before it wrote the record

    second = start(rig, switches, program)
    assert not second.kept_state and second.read_entries(n["I.t_exact"]) == []


def test_the_first_load_after_readoption_keeps_the_tables_a_later_one_clears_them(
    rig: VethRig, switches: list[EbpfSwitch]
) -> None:
    """What a controller's SetForwardingPipelineConfig does after a restart: the first push of
    the pinned program keeps its tables; any later push clears them, as P4Runtime says."""
    program: Any = load_program(TABLES)
    n = ids(program)
    first = start(rig, switches, program)
    first.write_entry(
        "insert", TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 1),), ActionCall(n["I.port"], (2,)))
    )
    first.close(keep_datapath=True)

    second = start(rig, switches, None)
    assert second.program is None and second.pinned_pipeline() is None  # no server gave a config
    second.load(program)
    assert second.kept_state and len(second.read_entries()) == 3
    second.load(program)
    assert second.kept_state and len(second.read_entries()) == 3
    second.load(program)
    assert not second.kept_state and len(second.read_entries()) == 2  # the const entries only


def test_a_clean_stop_leaves_nothing_pinned_and_no_qdisc(rig: VethRig, switches: list[EbpfSwitch]) -> None:
    sw = start(rig, switches, load_program(TABLES), cpu_port=64)
    pins = sw.pin_dir
    assert (pins / META_PIN).exists()
    sw.close()
    assert not pins.exists()

    qdiscs = subprocess.run(["tc", "-n", rig.name, "qdisc", "show"], capture_output=True, text=True).stdout
    assert "clsact" not in qdiscs


def test_a_fresh_load_removes_the_pins_nobody_will_readopt(rig: VethRig, switches: list[EbpfSwitch]) -> None:
    """Pins of a namespace that is gone, and of a dead switch whose interfaces are all gone, are
    removed when a switch loads anew; a live switch's pins are not, even with its interfaces gone."""
    from dysco.softswitch.targets.ebpf._pins import Meta, PinDir, netns_inode
    from dysco.softswitch.targets.ebpf.cpuport import pid_alive

    dead_pid = next(p for p in range(4_000_000, 3_000_000, -1) if not pid_alive(p))
    ns = netns_inode(rig.name)
    made = {
        "gone namespace": (PinDir(12345, {1: "x0"}), dead_pid),
        "dead switch": (PinDir(ns, {1: "nosuch0"}), dead_pid),
        "live switch": (PinDir(ns, {1: "nosuch1"}), 1),
    }
    try:
        for pins, pid in made.values():
            pins.make()
            pins.write(Meta("0" * 64, {1: pins.path.name.split("@")[1]}, None, 511, (), pid=pid))
        start(rig, switches, load_program(TABLES))
        left = {what for what, (pins, _) in made.items() if pins.path.exists()}
        assert left == {"live switch"}
    finally:
        for pins, _ in made.values():
            pins.remove()


def test_metadata_records_of_deleted_entries_go_at_readoption(
    rig: VethRig, switches: list[EbpfSwitch]
) -> None:
    """Each distinct (timeout, metadata) is one record in dysco_extras, shared by the entries that
    carry it; records no entry uses any more are deleted when the next switch re-adopts."""
    program: Any = load_program(TABLES)
    n = ids(program)
    first = start(rig, switches, program)

    def entry(a: int, meta: bytes) -> TableEntry:
        return TableEntry(
            n["I.t_exact"], (FieldMatch(1, "exact", a),), ActionCall(n["I.port"], (2,)), metadata=meta
        )

    for a in range(6):
        first.write_entry("insert", entry(a, b"shared" if a % 2 else b"own%d" % a))
    for a in (0, 2):
        first.write_entry("delete", entry(a, b""))
    assert first._extras is not None and len(dict(first._extras.map.items())) == 4  # own0 own2 own4 shared
    first.close(keep_datapath=True)

    second = start(rig, switches, program)
    assert second._extras is not None
    records = sorted(x[2] for x in second._extras.by_id.values() if x[2])
    assert records == [b"own4", b"shared"] and len(dict(second._extras.map.items())) == 2
    assert sorted(e.metadata for e in second.read_entries(n["I.t_exact"])) == [
        b"own4",
        b"shared",
        b"shared",
        b"shared",
    ]


def filters(rig: VethRig, port: int) -> list[str]:
    out = subprocess.run(["tc", "-n", rig.name, "filter", "show", "dev", rig.switch_if(port), "ingress"],
                         capture_output=True, text=True).stdout  # fmt: skip
    return re.findall(r"dysco_tc:\d+", out)


def newer_dysco(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the C generator emits other C for every program (as a new version may)."""
    real = cgen.generate

    def generate(*args: Any) -> cgen.CProgram:
        out = real(*args)
        return dataclasses.replace(out, source=out.source + "\n/* a newer dysco */\n")

    monkeypatch.setattr(cgen, "generate", generate)


def test_an_upgrade_that_generates_other_c_swaps_the_program_under_the_pinned_tables(
    rig: VethRig, switches: list[EbpfSwitch], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same P4 program, other C, the state maps laid out as before: the new build is loaded
    on the pinned maps and each port's filter swapped to it in place (one filter, a new id)."""
    program: Any = load_program(TABLES)
    n = ids(program)
    first = start(rig, switches, program)
    first.write_entry(
        "insert", TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 0x12),), ActionCall(n["I.port"], (2,)))
    )
    first.set_clone_session(CloneSession(3, (Replica(1, 0),)))
    before, out_before, old_filters = entries(first), first.process(1, FRAME), filters(rig, 1)
    old = read_meta(first.pin_dir)
    first.close(keep_datapath=True)

    newer_dysco(monkeypatch)
    second = start(rig, switches, program)
    new = read_meta(second.pin_dir)
    assert old is not None and new is not None
    assert new.c_sha256 != old.c_sha256 and new.layout_sha256 == old.layout_sha256
    assert second.kept_state and entries(second) == before
    assert second.clone_sessions() == {3: CloneSession(3, (Replica(1, 0),))}
    assert len(filters(rig, 1)) == 1 and filters(rig, 1) != old_filters  # replaced in place
    assert second.process(1, FRAME) == out_before
    assert sorted(p.name for p in second.pin_dir.iterdir()) == sorted((*new.maps, META_PIN))


def test_an_upgrade_that_changes_the_layout_of_a_table_replaces_the_pipeline(
    rig: VethRig, switches: list[EbpfSwitch], monkeypatch: pytest.MonkeyPatch
) -> None:
    program: Any = load_program(TABLES)
    n = ids(program)
    first = start(rig, switches, program)
    first.write_entry(
        "insert", TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 0x12),), ActionCall(n["I.port"], (2,)))
    )
    first.close(keep_datapath=True)

    newer_dysco(monkeypatch)
    monkeypatch.setattr(_upgrade, "layout_hash", lambda cprog: "another layout")
    second = start(rig, switches, program)
    assert not second.kept_state and second.read_entries(n["I.t_exact"]) == []


def test_metadata_longer_than_a_record_holds_is_refused(rig: VethRig, switches: list[EbpfSwitch]) -> None:
    from dysco.softswitch.targets.ebpf._extras import META_MAX

    program: Any = load_program(TABLES)
    n = ids(program)
    sw = start(rig, switches, program)
    call = ActionCall(n["I.port"], (2,))
    fits = TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 1),), call, metadata=bytes(META_MAX))
    too_long = TableEntry(n["I.t_exact"], (FieldMatch(1, "exact", 2),), call, metadata=bytes(META_MAX + 1))
    errors = sw.write_entries([("insert", fits), ("insert", too_long)])
    assert errors[0] is None and errors[1] is not None
    assert (errors[1].code, errors[1].message) == (
        "INVALID_ARGUMENT",
        f"metadata of {META_MAX + 1} bytes: the ebpf back end keeps {META_MAX}",
    )
    assert [e.metadata for e in sw.read_entries(n["I.t_exact"])] == [bytes(META_MAX)]


def test_when_the_records_run_out_unused_ones_are_collected_else_the_write_is_refused(
    rig: VethRig, switches: list[EbpfSwitch], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dysco.softswitch.targets.ebpf import _extras

    monkeypatch.setattr(_extras, "CAPACITY", 2)
    program: Any = load_program(TABLES)
    n = ids(program)
    sw = start(rig, switches, program)

    def entry(a: int) -> TableEntry:
        match = (FieldMatch(1, "exact", a),)
        return TableEntry(n["I.t_exact"], match, ActionCall(n["I.port"], (2,)), metadata=b"m%d" % a)

    assert sw.write_entries([("insert", entry(1)), ("insert", entry(2))]) == [None, None]
    (refused,) = sw.write_entries([("insert", entry(3))])
    assert refused is not None and refused.code == "RESOURCE_EXHAUSTED"
    assert refused.message == "more than 2 distinct idle timeouts and metadata"
    sw.write_entry("delete", entry(1))
    assert sw.write_entries([("insert", entry(3))]) == [None]  # entry 1's record was collected
    assert sorted(e.metadata for e in sw.read_entries(n["I.t_exact"])) == [b"m2", b"m3"]
