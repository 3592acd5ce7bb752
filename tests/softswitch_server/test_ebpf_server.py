"""The P4Runtime server in front of the ebpf back end: pipeline and table writes over gRPC land in
the kernel's maps, and packets through the veth rig are forwarded by the TC program."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from dysco.softswitch import load_program
from dysco.softswitch.server import SoftSwitchServer
from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig, unavailable

from .client import Session, election

ROUTER = Path(__file__).resolve().parents[1] / "softswitch" / "programs" / "router.p4"
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
