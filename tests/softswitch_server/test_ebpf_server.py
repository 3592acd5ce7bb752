"""The P4Runtime server in front of the ebpf back end: pipeline and table writes over gRPC land in
the kernel's maps, packets through the veth rig are forwarded by the TC program, and packet-in
and packet-out cross the CPU veth."""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch import load_program
from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry
from dysco.softswitch.server import RawSocketPorts, SoftSwitchServer
from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig, unavailable
from dysco.softswitch.targets.ebpf.netns import in_netns

from .client import Session, election

ROUTER = Path(__file__).resolve().parents[1] / "softswitch" / "programs" / "router.p4"
PUNT = Path(__file__).resolve().parent / "programs" / "punt.p4"
FWD = Path(__file__).resolve().parent / "programs" / "fwd.p4"
WHY = unavailable()
pytestmark = [pytest.mark.root, pytest.mark.skipif(WHY is not None, reason=WHY or "")]

# 10.1.2.3 from 10.0.0.1, ttl 64, checksum right
FRAME = bytes.fromhex("000000000001aabbccddeeff08004500001e00000000401164cb0a0000010a010203" + "00" * 11)


@pytest.fixture
def ebpf() -> Iterator[tuple[SoftSwitchServer, EbpfSwitch]]:
    with VethRig([1, 2, 3]) as rig:
        dev = EbpfSwitch(None, ports={p: rig.switch_if(p) for p in rig.ports}, netns=rig.name, rig=rig)
        srv = SoftSwitchServer(dev, address="127.0.0.1:0", ports=None, idle_poll_interval=0.05)
        srv.start()
        try:
            yield srv, dev
        finally:
            srv.stop(grace=0)
            dev.close()


def test_entries_written_over_p4runtime_forward_in_the_kernel(
    ebpf: tuple[SoftSwitchServer, EbpfSwitch],
) -> None:
    srv, dev = ebpf
    program: Any = load_program(ROUTER)
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    stub = p4runtime_pb2_grpc.P4RuntimeStub(ch)
    s = Session(stub)
    try:
        s.arbitrate(1)
        assert s.recv_kind("arbitration").status.code == 0
        req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
            device_id=0,
            election_id=election(1),
            action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
        )
        req.config.p4info.CopyFrom(program.p4info)
        req.config.p4_device_config = program.device_config()
        stub.SetForwardingPipelineConfig(req)
        assert dev.process(1, FRAME) == []  # no route yet: the default action drops
        ids = {
            o.preamble.name: o.preamble.id for g in ("tables", "actions") for o in getattr(program.p4info, g)
        }
        te = p4runtime_pb2.TableEntry(table_id=ids["MyIngress.ipv4_lpm"])
        lpm = te.match.add(field_id=1).lpm
        lpm.value, lpm.prefix_len = bytes([10, 1, 2, 0]), 24
        te.action.action.action_id = ids["MyIngress.ipv4_forward"]
        te.action.action.params.add(param_id=1, value=bytes.fromhex("111111111111"))
        te.action.action.params.add(param_id=2, value=b"\x03")
        w = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
        w.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry.CopyFrom(te)
        stub.Write(w)
        out = dev.process(1, FRAME)
        assert [p for p, _ in out] == [3]
        assert out[0][1][:6] == bytes.fromhex("111111111111") and out[0][1][22] == 63
        read = p4runtime_pb2.ReadRequest(
            device_id=0, entities=[p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry())]
        )
        assert len([e for r in stub.Read(read) for e in r.entities]) == 1
    finally:
        s.close()
        ch.close()


def push_pipeline(stub: Any, program: Any) -> None:
    req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
        device_id=0,
        election_id=election(1),
        action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
    )
    req.config.p4info.CopyFrom(program.p4info)
    req.config.p4_device_config = program.device_config()
    stub.SetForwardingPipelineConfig(req)


def frames_on(rig: VethRig, port: int, timeout: float = 2.0) -> list[bytes]:
    """Wait (select, no sleep) until the host side of ``port`` has a frame; return what it has."""
    deadline = time.monotonic() + timeout
    got: list[bytes] = []
    while not got and time.monotonic() < deadline:
        select.select([rig.socks[port]], [], [], max(0.0, deadline - time.monotonic()))
        got = [f for p, f in rig.drain() if p == port]
    return got


def test_packet_in_and_packet_out_cross_the_cpu_veth() -> None:
    """The CPU port is a veth pair the switch makes (dc<pid>s/c); the server reads packet-ins on
    it and strips the controller header into metadata; a packet-out goes in there and leaves by
    the port its metadata names, without the packet_out header."""
    program: Any = load_program(PUNT)
    with VethRig([1, 2]) as rig:
        dev = EbpfSwitch(
            None, ports={p: rig.switch_if(p) for p in rig.ports}, netns=rig.name, rig=rig, cpu_port=64
        )
        try:
            assert dev.cpu_interface is not None
            with in_netns(rig.name):
                ports = RawSocketPorts({64: dev.cpu_interface})
            srv = SoftSwitchServer(dev, address="127.0.0.1:0", ports=ports, idle_poll_interval=0.05)
            srv.start()
            ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
            s = Session(p4runtime_pb2_grpc.P4RuntimeStub(ch))
            try:
                s.arbitrate(1)
                assert s.recv_kind("arbitration").status.code == 0
                push_pipeline(p4runtime_pb2_grpc.P4RuntimeStub(ch), program)
                rig.send(1, FRAME)
                pin = s.recv_kind("packet")
                assert pin.payload == FRAME
                assert [(m.metadata_id, m.value) for m in pin.metadata] == [(1, b"\x01"), (2, b"\x00")]
                out = p4runtime_pb2.StreamMessageRequest()
                out.packet.payload = FRAME[::-1]
                out.packet.metadata.add(metadata_id=1, value=b"\x02")
                out.packet.metadata.add(metadata_id=2, value=b"\x00")
                s.send(out)
                assert frames_on(rig, 2) == [FRAME[::-1]]
            finally:
                s.close()
                ch.close()
                srv.stop(grace=0)
        finally:
            cpu = dev.cpu_interface
            dev.close()
        # closing the switch deletes its CPU veth
        gone = subprocess.run(["ip", "-n", rig.name, "link", "show", "dev", str(cpu)], capture_output=True)
        assert gone.returncode != 0


def fwd_entry(program: Any, in_port: int, out_port: int, idle_ns: int) -> TableEntry:
    t = next(t for t in program.p4info.tables if t.preamble.name == "MyIngress.fwd")
    a = next(a for a in program.p4info.actions if a.preamble.name == "MyIngress.forward")
    return TableEntry(
        t.preamble.id, (FieldMatch(1, "exact", in_port),), ActionCall(a.preamble.id, (out_port,)),
        idle_timeout_ns=idle_ns,
    )  # fmt: skip


def test_the_program_writes_the_last_hit_and_the_sweep_reports_once_per_idle_period() -> None:
    """An entry idle for its timeout is reported once; a packet that hits it (the TC program
    writes bpf_ktime_get_ns into the entry) starts a new idle period; reads carry the time since
    the last hit."""
    program: Any = load_program(FWD)
    with VethRig([1, 2]) as rig:
        dev = EbpfSwitch(program, ports={p: rig.switch_if(p) for p in rig.ports}, netns=rig.name, rig=rig)
        try:
            entry = fwd_entry(program, 1, 2, idle_ns=1)
            dev.write_entry("insert", entry)
            assert [e.match for e in dev.expired_entries()] == [entry.match]
            assert dev.expired_entries() == []  # reported already, no hit since
            before = time.monotonic_ns()
            assert [p for p, _ in dev.process(1, FRAME)] == [2]
            (read,) = dev.read_entries()
            assert read.time_since_last_hit_ns is not None
            assert read.time_since_last_hit_ns <= time.monotonic_ns() - before  # the hit, not the insert
            assert [e.match for e in dev.expired_entries()] == [entry.match]
            plain = fwd_entry(program, 2, 1, idle_ns=0)
            dev.write_entry("insert", plain)  # no timeout: never reported
            assert dev.expired_entries() == []
        finally:
            dev.close()


def test_idle_timeout_notification_on_the_stream() -> None:
    program: Any = load_program(FWD)
    with VethRig([1, 2]) as rig:
        dev = EbpfSwitch(None, ports={p: rig.switch_if(p) for p in rig.ports}, netns=rig.name, rig=rig)
        srv = SoftSwitchServer(dev, address="127.0.0.1:0", ports=None, idle_poll_interval=0.05)
        srv.start()
        ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
        stub = p4runtime_pb2_grpc.P4RuntimeStub(ch)
        s = Session(stub)
        try:
            s.arbitrate(1)
            assert s.recv_kind("arbitration").status.code == 0
            push_pipeline(stub, program)
            ids = {
                o.preamble.name: o.preamble.id
                for g in ("tables", "actions")
                for o in getattr(program.p4info, g)
            }
            te = p4runtime_pb2.TableEntry(table_id=ids["MyIngress.fwd"], idle_timeout_ns=100_000_000)
            te.match.add(field_id=1).exact.value = b"\x01"
            te.action.action.action_id = ids["MyIngress.forward"]
            te.action.action.params.add(param_id=1, value=b"\x02")
            w = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
            w.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry.CopyFrom(te)
            stub.Write(w)
            note = s.recv_kind("idle_timeout_notification")
            assert [e.match[0].exact.value for e in note.table_entry] == [b"\x01"]
            assert note.table_entry[0].table_id == ids["MyIngress.fwd"]
        finally:
            s.close()
            ch.close()
            srv.stop(grace=0)
            dev.close()


def test_a_dead_switchs_cpu_veth_is_deleted_by_the_next_start_a_live_ones_kept() -> None:
    from dysco.softswitch.targets.ebpf.cpuport import CpuVeth, pid_alive

    dead = next(p for p in range(4_000_000, 3_000_000, -1) if not pid_alive(p))
    with VethRig([1]) as rig:
        for pid in (dead, 1):  # pid 1 always runs
            subprocess.run(["ip", "-n", rig.name, "link", "add", f"dc{pid}s", "type", "veth", "peer", "name",
                            f"dc{pid}c"], check=True)  # fmt: skip
        cpu = CpuVeth(netns=rig.name)
        try:
            links = subprocess.run(
                ["ip", "-n", rig.name, "-o", "link", "show"], capture_output=True, text=True
            ).stdout
            assert f"dc{dead}s" not in links and f"dc{dead}c" not in links
            assert "dc1s" in links and cpu.switch_if in links
        finally:
            cpu.close()
