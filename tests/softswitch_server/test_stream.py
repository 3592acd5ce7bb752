"""StreamChannel: arbitration between controllers, packet-in/out, idle-timeout notifications."""

from __future__ import annotations

import grpc
import pytest

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch.server import MemoryPorts

from .client import Session, election
from .conftest import FakeClock, pipeline_request
from .fake_device import T_FWD, FakeDevice
from .test_grpc_rpcs import fwd_entry, table

Stub = p4runtime_pb2_grpc.P4RuntimeStub
OK = 0
ALREADY_EXISTS = 6
U = p4runtime_pb2.Update


def join(stub: Stub, sessions: list[Session], eid: int) -> Session:
    s = Session(stub)
    sessions.append(s)
    s.arbitrate(eid)
    return s


def test_arbitration_primary_and_backup(stub: Stub, sessions: list[Session]) -> None:
    a = join(stub, sessions, 5)
    arb = a.recv_kind("arbitration")
    assert (arb.status.code, arb.election_id.low, arb.device_id) == (OK, 5, 0)
    b = join(stub, sessions, 3)
    arb = b.recv_kind("arbitration")
    assert (arb.status.code, arb.election_id.low) == (ALREADY_EXISTS, 5)
    # the backup cannot write or set the pipeline
    exc = _error(stub.SetForwardingPipelineConfig, pipeline_request(3))
    assert (exc.code(), exc.details()) == (grpc.StatusCode.PERMISSION_DENIED, "Not primary")
    stub.SetForwardingPipelineConfig(pipeline_request(5))
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(3))
    req.updates.add(type=U.INSERT, entity=table(fwd_entry(b"\x01")))
    assert _error(stub.Write, req).code() == grpc.StatusCode.PERMISSION_DENIED
    req.ClearField("election_id")
    assert _error(stub.Write, req).code() == grpc.StatusCode.PERMISSION_DENIED
    # a higher election id takes over: everyone is told
    b.arbitrate(9)
    for s, code in ((a, ALREADY_EXISTS), (b, OK)):
        arb = s.recv_kind("arbitration")
        assert (arb.status.code, arb.election_id.low) == (code, 9)
    # the primary leaves: the remaining controller becomes primary
    b.close()
    arb = a.recv_kind("arbitration")
    assert (arb.status.code, arb.election_id.low) == (OK, 5)


def test_duplicate_election_id_ends_the_stream(stub: Stub, sessions: list[Session]) -> None:
    a = join(stub, sessions, 2)
    a.recv_kind("arbitration")
    b = join(stub, sessions, 2)
    err = b.wait_end()
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "Election id already exists"


def test_wrong_device_id(stub: Stub, sessions: list[Session]) -> None:
    a = Session(stub)
    sessions.append(a)
    a.arbitrate(1, device_id=3)
    err = a.wait_end()
    assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND
    b = join(stub, sessions, 1)
    b.recv_kind("arbitration")
    b.arbitrate(1, device_id=4)
    err = b.wait_end()
    assert err is not None and err.code() == grpc.StatusCode.FAILED_PRECONDITION


def _error(fn: object, req: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(req)  # type: ignore[operator]
    return info.value


def packet_out(payload: bytes, port: int) -> p4runtime_pb2.StreamMessageRequest:
    req = p4runtime_pb2.StreamMessageRequest()
    req.packet.payload = payload
    req.packet.metadata.add(metadata_id=1, value=port.to_bytes(2, "big"))
    return req


def test_packet_out_builds_the_header(primary: Session, ports: MemoryPorts, device: FakeDevice) -> None:
    frame = bytes(range(60))
    primary.send(packet_out(frame, 3))
    assert ports.get(3) == frame
    port, injected = device.processed[-1]
    assert port == 64
    assert injected[:2] == bytes([3 >> 1, (3 & 1) << 7]) and injected[2:] == frame


def test_packet_out_errors(primary: Session, ports: MemoryPorts) -> None:
    req = packet_out(b"x" * 20, 3)
    req.packet.metadata.add(metadata_id=7, value=b"\x01")
    primary.send(req)
    err = primary.recv_kind("error")
    assert err.canonical_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "invalid metadata id 7" in err.message
    assert err.packet_out.packet_out.payload == b"x" * 20
    primary.send(packet_out(b"y" * 20, 1024))
    assert "does not fit within 9 bits" in primary.recv_kind("error").message
    assert ports.pending(3) == 0


def test_packet_in_strips_the_header(
    stub: Stub, primary: Session, ports: MemoryPorts, sessions: list
) -> None:
    backup = join(stub, sessions, 0)
    backup.recv_kind("arbitration")
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    req.updates.add(type=U.INSERT, entity=table(fwd_entry(b"\x00\x00\x00\x00\x00\x07", b"\x40")))
    stub.Write(req)
    frame = b"\x00\x00\x00\x00\x00\x07" + bytes(54)
    ports.inject(5, frame)
    pkt = primary.recv_kind("packet")
    assert pkt.payload == frame
    assert [(m.metadata_id, m.value) for m in pkt.metadata] == [(1, b"\x05"), (2, b"\x00"), (3, b"\x2a")]
    assert backup.responses.empty()  # packet-ins go to the primary only


def test_round_trip_out_and_back_in(stub: Stub, primary: Session, ports: MemoryPorts) -> None:
    """A packet-out to port 2 whose frame comes back in on port 2 and is punted to the CPU."""
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    req.updates.add(type=U.INSERT, entity=table(fwd_entry(b"\x00\x00\x00\x00\x00\x09", b"\x40")))
    stub.Write(req)
    frame = b"\x00\x00\x00\x00\x00\x09" + b"\xaa" * 54
    primary.send(packet_out(frame, 2))
    ports.inject(2, ports.get(2))
    pkt = primary.recv_kind("packet")
    assert pkt.payload == frame and pkt.metadata[0].value == b"\x02"


def test_idle_timeout_notification(stub: Stub, primary: Session, clock: FakeClock) -> None:
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    req.updates.add(type=U.INSERT, entity=table(fwd_entry(b"\x01", timeout=1_000_000)))
    stub.Write(req)
    clock.advance(2_000_000)
    note = primary.recv_kind("idle_timeout_notification")
    assert note.timestamp == clock.now
    (te,) = note.table_entry
    assert te.table_id == T_FWD and te.idle_timeout_ns == 1_000_000
    assert te.match[0].exact.value == b"\x01" and not te.HasField("action")


def test_idle_timeout_needs_table_support(stub: Stub, primary: Session) -> None:
    from .fake_device import A_DROP, T_ROUTE

    te = p4runtime_pb2.TableEntry(table_id=T_ROUTE, idle_timeout_ns=5)
    te.match.add(field_id=1).lpm.value = b"\x0a\x00\x00\x00"
    te.match[0].lpm.prefix_len = 8
    te.action.action.action_id = A_DROP
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    req.updates.add(type=U.INSERT, entity=table(te))
    with pytest.raises(grpc.RpcError) as info:
        stub.Write(req)
    assert info.value.code() == grpc.StatusCode.UNKNOWN


def test_too_many_streams_are_refused(stub: Stub, sessions: list[Session]) -> None:
    from dysco.softswitch.server._grpc import MAX_STREAMS

    for eid in range(MAX_STREAMS):
        join(stub, sessions, eid + 1).recv_kind("arbitration")
    extra = Session(stub)
    sessions.append(extra)
    err = extra.wait_end()
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # unary RPCs still get a worker
    assert stub.Capabilities(p4runtime_pb2.CapabilitiesRequest()).p4runtime_api_version


def test_packet_out_without_cpu_port_and_from_a_backup(
    stub: Stub, primary: Session, ports: MemoryPorts, device: FakeDevice, sessions: list[Session]
) -> None:
    backup = join(stub, sessions, 0)
    backup.recv_kind("arbitration")
    backup.send(packet_out(b"b" * 20, 3))  # ignored, as PI does
    backup.arbitrate(0)  # answered after the packet-out was handled: the stream is sequential
    backup.recv_kind("arbitration")
    assert device.processed == []
    device.cpu_port = None
    primary.send(packet_out(b"p" * 20, 3))
    err = primary.recv_kind("error")
    assert err.canonical_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "no CPU port" in err.message
    assert ports.pending(3) == 0 and device.processed == []
