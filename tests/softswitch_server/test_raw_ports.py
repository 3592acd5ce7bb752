"""AF_PACKET ports on veth pairs, in-process, with the fake device."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry
from dysco.softswitch.server import PortError, RawSocketPorts, SoftSwitchServer
from dysco.softswitch.server._metrics import SwitchCollector

from .conftest import FakeClock
from .fake_device import A_SET_PORT, T_FWD, FakeDevice, FakeProgram, load_fake_program
from .netns import ETHERTYPE, WAIT_S, Topology, expect_frame, frame, host_ports, raw_socket_in

pytestmark = pytest.mark.root


@pytest.fixture
def topology() -> Iterator[Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, raw sockets)")
    with host_ports(2) as topo:
        yield topo


def test_frames_cross_between_veth_pairs(topology: Topology) -> None:
    device = FakeDevice(FakeClock())
    device.load(FakeProgram())
    broadcast = int.from_bytes(b"\xff" * 6, "big")
    device.write_entry(
        "insert", TableEntry(T_FWD, (FieldMatch(1, "exact", broadcast),), ActionCall(A_SET_PORT, (2,)))
    )
    ports = RawSocketPorts({1: topology.pairs[0].switch_end, 2: topology.pairs[1].switch_end})
    server = SoftSwitchServer(
        device,  # type: ignore[arg-type]
        address="127.0.0.1:0",
        ports=ports,
        program_loader=load_fake_program,
    )
    h1 = raw_socket_in(topology.netns, topology.pairs[0].host_end)
    h2 = raw_socket_in(topology.netns, topology.pairs[1].host_end)
    server.start()
    try:
        h1.send(frame(b"hello"))
        assert expect_frame(h2, b"hello") == frame(b"hello")
        # the switch does not see its own transmissions as input.  Only frames of the test's
        # ethertype count: whatever else reaches a switch end (nothing did in a 4 s capture
        # here, IPv6 being off on these veths) says nothing about that.
        assert [p for p, d in device.processed if d[12:14] == ETHERTYPE] == [1]
    finally:
        server.stop()
        h1.close()
        h2.close()


def test_unknown_interface_is_a_port_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (raw sockets)")
    with pytest.raises(PortError, match="no-such-if0"):
        RawSocketPorts({1: "no-such-if0"})


class _HeldDevice(FakeDevice):
    """Takes its first frame, then holds the ports' receive thread until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__(FakeClock())
        self.first = threading.Event()
        self.go = threading.Event()
        self.ours = 0
        self.changed = threading.Condition()

    def process(self, port: int, data: bytes) -> list[tuple[int, bytes]]:
        if data[12:14] == ETHERTYPE:
            self.first.set()
            self.go.wait(WAIT_S)
            with self.changed:
                self.ours += 1
                self.changed.notify_all()
        return super().process(port, data)


def test_frames_the_kernel_drops_before_the_pipeline_are_counted(topology: Topology) -> None:
    """A burst into a port whose reader is busy overruns its socket's receive queue: every frame
    is either processed or counted as lost, with its port and cause, and the switch logs it."""
    device = _HeldDevice()
    device.load(FakeProgram())
    ports = RawSocketPorts({1: topology.pairs[0].switch_end})
    server = SoftSwitchServer(
        device,  # type: ignore[arg-type]
        address="127.0.0.1:0",
        ports=ports,
        program_loader=load_fake_program,
    )
    h1 = raw_socket_in(topology.netns, topology.pairs[0].host_end)
    server.start()
    sent = 3000
    cause = f"port 1 ({topology.pairs[0].switch_end}): receive queue full"
    try:
        h1.send(frame(b"first"))
        assert device.first.wait(WAIT_S)
        for i in range(sent - 1):
            h1.send(frame(i.to_bytes(2, "big")))
        lost = server.poll_drops().get(cause, 0)
        assert lost > 0, server.kernel_drops()
        device.go.set()

        with device.changed:
            device.changed.wait_for(lambda: device.ours >= sent - lost, WAIT_S)
        assert (device.ours, server.poll_drops()[cause]) == (sent - lost, lost)
        # and the switch's metrics say so (dysco switch --metrics serves this collector)
        registry = CollectorRegistry()
        registry.register(SwitchCollector(server.core, "python", server.kernel_drops))
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
        samples = families["dysco_switch_kernel_dropped"].samples
        assert [(s.name, s.value) for s in samples if "port_1" in s.labels["cause"]] == [
            ("dysco_switch_kernel_dropped_total", lost)
        ], samples
    finally:
        device.go.set()
        server.stop()
        h1.close()
