"""The server over the real executor (``dysco.softswitch.Switch``) running programs/fwd.p4."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch.server import MemoryPorts, SoftSwitchServer

from .client import Session, election
from .conftest import FakeClock

PROGRAM = Path(__file__).parent / "programs" / "fwd.p4"
CPU_PORT = 64


@pytest.fixture(scope="module")
def program() -> Any:
    from dysco.softswitch import load_program

    return load_program(PROGRAM)


@pytest.fixture
def real(program: Any, clock: FakeClock) -> Iterator[tuple[SoftSwitchServer, MemoryPorts]]:
    from dysco.softswitch import Switch

    ports = MemoryPorts()
    srv = SoftSwitchServer(
        Switch(None, cpu_port=CPU_PORT, clock=clock),
        address="127.0.0.1:0",
        ports=ports,
        clock=clock,
        idle_poll_interval=0.01,
    )
    srv.start()
    try:
        yield srv, ports
    finally:
        srv.stop(grace=0)


@pytest.fixture
def rstub(real: tuple[SoftSwitchServer, MemoryPorts]) -> Iterator[p4runtime_pb2_grpc.P4RuntimeStub]:
    ch = grpc.insecure_channel(f"127.0.0.1:{real[0].port}")
    try:
        yield p4runtime_pb2_grpc.P4RuntimeStub(ch)
    finally:
        ch.close()


def names(p4info: Any) -> dict[str, int]:
    return {o.preamble.name: o.preamble.id for group in ("tables", "actions") for o in getattr(p4info, group)}


@pytest.fixture
def controller(rstub: p4runtime_pb2_grpc.P4RuntimeStub, program: Any) -> Iterator[Session]:
    s = Session(rstub)
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
        rstub.SetForwardingPipelineConfig(req)
        yield s
    finally:
        s.close()


def fwd(p4: dict[str, int], in_port: int, action: str, *params: bytes, timeout: int = 0) -> Any:
    te = p4runtime_pb2.TableEntry(table_id=p4["MyIngress.fwd"], idle_timeout_ns=timeout)
    te.match.add(field_id=1).exact.value = bytes([in_port])
    te.action.action.action_id = p4[action]
    for i, v in enumerate(params, start=1):
        te.action.action.params.add(param_id=i, value=v)
    return te


def insert(stub: p4runtime_pb2_grpc.P4RuntimeStub, *entries: Any) -> None:
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    for te in entries:
        req.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry.CopyFrom(te)
    stub.Write(req)


FRAME = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(range(46))


def test_forward_punt_and_packet_out(
    rstub: p4runtime_pb2_grpc.P4RuntimeStub, controller: Session, program: Any, real: Any
) -> None:
    _, ports = real
    p4 = names(program.p4info)
    insert(rstub, fwd(p4, 1, "MyIngress.forward", b"\x02"), fwd(p4, 2, "MyIngress.to_cpu"))
    ports.inject(1, FRAME)
    assert ports.get(2) == FRAME
    ports.inject(2, FRAME)
    pkt = controller.recv_kind("packet")
    assert pkt.payload == FRAME
    assert [(m.metadata_id, m.value) for m in pkt.metadata] == [(1, b"\x02"), (2, b"\x00")]
    out = p4runtime_pb2.StreamMessageRequest()
    out.packet.payload = FRAME
    out.packet.metadata.add(metadata_id=1, value=b"\x03")
    controller.send(out)
    assert ports.get(3) == FRAME
    ports.inject(5, FRAME)  # no entry: the default action drops it
    req = p4runtime_pb2.ReadRequest(device_id=0, entities=[_all()])
    entities = [e for r in rstub.Read(req) for e in r.entities]
    assert len(entities) == 2
    assert {e.table_entry.table_id for e in entities} == {p4["MyIngress.fwd"]}
    assert ports.pending(5) == 0


def _all() -> p4runtime_pb2.Entity:
    return p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry())


def test_read_back_is_canonical_and_errors_come_from_the_device(
    rstub: p4runtime_pb2_grpc.P4RuntimeStub, controller: Session, program: Any
) -> None:
    p4 = names(program.p4info)
    te = fwd(p4, 1, "MyIngress.forward", b"\x00\x07")
    insert(rstub, te)
    got = [
        e for r in rstub.Read(p4runtime_pb2.ReadRequest(device_id=0, entities=[_all()])) for e in r.entities
    ]
    assert len(got) == 1 and got[0].table_entry.action.action.params[0].value == b"\x07"
    with pytest.raises(grpc.RpcError) as info:
        insert(rstub, te)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    from .client import write_errors

    (err,) = write_errors(info.value)
    assert err.canonical_code == grpc.StatusCode.ALREADY_EXISTS.value[0]


def test_idle_timeout_from_the_executor(
    rstub: p4runtime_pb2_grpc.P4RuntimeStub, controller: Session, program: Any, clock: FakeClock
) -> None:
    p4 = names(program.p4info)
    insert(rstub, fwd(p4, 1, "MyIngress.forward", b"\x02", timeout=5_000_000))
    clock.advance(6_000_000)
    note = controller.recv_kind("idle_timeout_notification")
    assert [te.match[0].exact.value for te in note.table_entry] == [b"\x01"]
