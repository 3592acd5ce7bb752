"""Fixtures: a softswitch server on a free localhost port around a fake device, and clients."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch.server import MemoryPorts, SoftSwitchServer

from .client import Session
from .fake_device import CONFIG, FakeDevice, build_p4info, load_fake_program


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def device(clock: FakeClock) -> FakeDevice:
    return FakeDevice(clock, cpu_port=64)


@pytest.fixture
def ports() -> MemoryPorts:
    return MemoryPorts()


@pytest.fixture
def server(device: FakeDevice, ports: MemoryPorts, clock: FakeClock) -> Iterator[SoftSwitchServer]:
    srv = SoftSwitchServer(
        device,  # type: ignore[arg-type]
        device_id=0,
        address="127.0.0.1:0",
        ports=ports,
        program_loader=load_fake_program,
        clock=clock,
        idle_poll_interval=0.01,
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(grace=0)


@pytest.fixture
def channel(server: SoftSwitchServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield ch
    finally:
        ch.close()


@pytest.fixture
def stub(channel: grpc.Channel) -> p4runtime_pb2_grpc.P4RuntimeStub:
    return p4runtime_pb2_grpc.P4RuntimeStub(channel)


@pytest.fixture
def sessions(stub: p4runtime_pb2_grpc.P4RuntimeStub) -> Iterator[list[Session]]:
    """Open sessions with ``sessions.append(Session(stub))``; all are closed at the end."""
    opened: list[Session] = []
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def pipeline_request(eid: int | None = 1) -> p4runtime_pb2.SetForwardingPipelineConfigRequest:
    req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
        device_id=0, action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT
    )
    if eid is not None:
        req.election_id.low = eid
    req.config.p4info.CopyFrom(build_p4info())
    req.config.p4_device_config = CONFIG
    req.config.cookie.cookie = 0xC00C1E
    return req


@pytest.fixture
def primary(stub: p4runtime_pb2_grpc.P4RuntimeStub, sessions: list[Session]) -> Session:
    """A primary controller (election id 1) that pushed the fake pipeline."""
    s = Session(stub)
    sessions.append(s)
    s.arbitrate(1)
    arb = s.recv_kind("arbitration")
    assert arb.status.code == 0
    stub.SetForwardingPipelineConfig(pipeline_request(1))
    return s


def is_root() -> bool:
    return os.geteuid() == 0
