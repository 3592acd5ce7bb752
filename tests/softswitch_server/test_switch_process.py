"""``dysco switch`` as a real process on veth pairs into a network namespace.

Frames go in one host end and out another, a frame for the CPU becomes a PacketIn,
a PacketOut leaves on a host end, and SIGTERM ends the process with status 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from .client import Session, election
from .netns import Topology, expect_frame, frame, host_ports, raw_socket_in
from .switch_process import WAIT_S, running_switch

PROGRAM = Path(__file__).parent / "programs" / "fwd.p4"

pytestmark = pytest.mark.root


@pytest.fixture
def topology() -> Iterator[Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, raw sockets)")
    with host_ports(2) as topo:
        yield topo


def _ebpf_why() -> str | None:
    from dysco.softswitch.targets.ebpf import unavailable

    return unavailable()


EBPF_WHY = _ebpf_why()


@pytest.fixture(
    params=[
        "python",
        pytest.param("ebpf", marks=pytest.mark.skipif(EBPF_WHY is not None, reason=EBPF_WHY or "")),
    ]
)
def switch(
    request: pytest.FixtureRequest, topology: Topology, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The switch on either back end; on ebpf the CPU port is the veth pair dc<pid>s/c."""
    argv = ["--backend", request.param, "--cpu-port", "64", "--grpc-server-addr", "127.0.0.1:0"]
    for i, pair in enumerate(topology.pairs, start=1):
        argv += ["-i", f"{i}@{pair.switch_end}"]
    with running_switch([*argv, str(PROGRAM)], tmp_path / "switch.log") as running:
        yield running


def ids(p4info: object) -> dict[str, int]:
    out = {}
    for group in ("tables", "actions"):
        for obj in getattr(p4info, group):
            out[obj.preamble.name] = obj.preamble.id
    return out


def test_forwarding_packet_in_and_out(topology: Topology, switch: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = switch
    h1 = raw_socket_in(topology.netns, topology.pairs[0].host_end)
    h2 = raw_socket_in(topology.netns, topology.pairs[1].host_end)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
    session = Session(stub)
    try:
        session.arbitrate(1)
        assert session.recv_kind("arbitration").status.code == 0
        get = p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=0)
        p4 = ids(stub.GetForwardingPipelineConfig(get).config.p4info)
        req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
        for in_port, action, params in ((1, "MyIngress.forward", [b"\x02"]), (2, "MyIngress.to_cpu", [])):
            te = req.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry
            te.table_id = p4["MyIngress.fwd"]
            te.match.add(field_id=1).exact.value = bytes([in_port])
            te.action.action.action_id = p4[action]
            for i, value in enumerate(params, start=1):
                te.action.action.params.add(param_id=i, value=value)
        stub.Write(req)

        h1.send(frame(b"one-to-two"))
        assert expect_frame(h2, b"one-to-two") == frame(b"one-to-two")

        h2.send(frame(b"to-the-cpu"))
        pkt = session.recv_kind("packet")
        assert pkt.payload == frame(b"to-the-cpu")
        assert [(m.metadata_id, m.value) for m in pkt.metadata] == [(1, b"\x02"), (2, b"\x00")]

        ebpf = "ebpf" in proc.args
        cpu_veth = subprocess.run(["ip", "link", "show", f"dc{proc.pid}s"], capture_output=True)
        assert (cpu_veth.returncode == 0) == ebpf  # the packet-in came through it on ebpf

        out = p4runtime_pb2.StreamMessageRequest()
        out.packet.payload = frame(b"packet-out")
        out.packet.metadata.add(metadata_id=1, value=b"\x01")
        session.send(out)
        assert expect_frame(h1, b"packet-out") == frame(b"packet-out")
    finally:
        session.close()
        channel.close()
        h1.close()
        h2.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT_S) == 0
    # nothing of the ebpf back end's CPU port is left behind (python never makes it)
    assert subprocess.run(["ip", "link", "show", f"dc{proc.pid}s"], capture_output=True).returncode != 0
