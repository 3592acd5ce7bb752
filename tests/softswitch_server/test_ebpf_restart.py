"""A NIC restarts without losing a session (issue 20): ``dysco switch`` on the ebpf back end, as a
real process on veth pairs into a namespace, is SIGKILLed while a stream of frames crosses it;
the kernel keeps forwarding while no switch runs, and the next ``dysco switch`` on the same
interfaces re-adopts the pinned pipeline: Read returns the same entries, byte for byte, the
cookie is the controller's, counters kept counting, a push of the same pipeline keeps it all.
A different program replaces what is pinned; a clean stop leaves nothing pinned."""

from __future__ import annotations

import contextlib
import re
import select
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch import load_program
from dysco.softswitch.targets.ebpf import unavailable
from dysco.softswitch.targets.ebpf._pins import PinDir, read_meta

from .client import Session, election
from .netns import ETHERTYPE, Topology, frame, host_ports, raw_socket_in
from .switch_process import WAIT_S, running_switch

PROGRAMS = Path(__file__).parent / "programs"
FWD, PUNT = PROGRAMS / "fwd.p4", PROGRAMS / "punt.p4"
COOKIE = 0x2020
PACE_S = 0.0005
"""Between two frames of the stream (pacing the sender; nothing waits on it)."""
DOWN_FRAMES = 100
"""Frames that must cross the switch while no switch process runs."""
WHY = unavailable()
pytestmark = [pytest.mark.root, pytest.mark.skipif(WHY is not None, reason=WHY or "")]


class Stream:
    """Tagged frames sent in at host end 0 by one thread, counted at host end 1 by another."""

    def __init__(self, topo: Topology) -> None:
        self.tx = raw_socket_in(topo.netns, topo.pairs[0].host_end)
        self.rx = raw_socket_in(topo.netns, topo.pairs[1].host_end)
        self.count = 0
        self._seen = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, name="stream-send", daemon=True),
            threading.Thread(target=self._receive, name="stream-receive", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        seq = 0
        while not self._stop.wait(PACE_S):
            self.tx.send(frame(b"seq" + seq.to_bytes(4, "big")))
            seq += 1

    def _receive(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.rx], [], [], 0.1)
            if ready:
                data = self.rx.recv(65535)
                if data[12:14] == ETHERTYPE and data[14:17] == b"seq":
                    with self._seen:
                        self.count += 1
                        self._seen.notify_all()

    def wait_for(self, n: int, timeout: float = WAIT_S) -> int:
        """Wait until ``n`` frames arrived in all; the count then."""
        with self._seen:
            if not self._seen.wait_for(lambda: self.count >= n, timeout):
                raise AssertionError(f"{self.count} frames arrived in {timeout}s, not {n}")
            return self.count

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=WAIT_S)
        self.tx.close()
        self.rx.close()


@pytest.fixture
def topology() -> Iterator[Topology]:
    with host_ports(2) as topo:
        yield topo


@pytest.fixture
def cleanup(topology: Topology) -> Iterator[list[int]]:
    """Pids of the switches a test starts; whatever they left (pins, CPU veths) goes at the end."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        shutil.rmtree(pins_of(topology).path, ignore_errors=True)
        for pid in pids:
            subprocess.run(["ip", "link", "del", f"dc{pid}s"], capture_output=True)


def pins_of(topo: Topology) -> PinDir:
    from dysco.softswitch.targets.ebpf._pins import netns_inode

    return PinDir(netns_inode(None), {i: p.switch_end for i, p in enumerate(topo.pairs, start=1)})


def argv(topo: Topology, *program: str) -> list[str]:
    args = ["--backend", "ebpf", "--cpu-port", "64", "--grpc-server-addr", "127.0.0.1:0"]
    for i, pair in enumerate(topo.pairs, start=1):
        args += ["-i", f"{i}@{pair.switch_end}"]
    return [*args, *(program or ("--no-p4",))]


@contextlib.contextmanager
def controller(port: int) -> Iterator[p4runtime_pb2_grpc.P4RuntimeStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
    session = Session(stub)
    try:
        session.arbitrate(1)
        assert session.recv_kind("arbitration").status.code == 0
        yield stub
    finally:
        session.close()
        channel.close()


def push(stub: Any, path: Path, cookie: int = COOKIE) -> Any:
    program: Any = load_program(path)
    req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
        device_id=0,
        election_id=election(1),
        action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
    )
    req.config.p4info.CopyFrom(program.p4info)
    req.config.p4_device_config = program.device_config()
    req.config.cookie.cookie = cookie
    stub.SetForwardingPipelineConfig(req)
    return program


def ids(program: Any) -> dict[str, int]:
    info = program.p4info
    return {
        o.preamble.name: o.preamble.id for group in (info.tables, info.actions, info.counters) for o in group
    }


def write_sessions(stub: Any, program: Any) -> None:
    """Port 1 -> 2 (the stream's way; metadata and a long idle timeout), 2 -> 1 (never hit)."""
    n = ids(program)
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    for in_port, out_port, timeout, meta in ((1, 2, 3600 * 10**9, b"session-1"), (2, 1, 300_000_000, b"")):
        te = req.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry
        te.table_id = n["MyIngress.fwd"]
        te.match.add(field_id=1).exact.value = bytes([in_port])
        te.action.action.action_id = n["MyIngress.forward"]
        te.action.action.params.add(param_id=1, value=bytes([out_port]))
        te.idle_timeout_ns, te.controller_metadata, te.metadata = timeout, in_port * 1000, meta
    stub.Write(req)


def read(stub: Any, entity: p4runtime_pb2.Entity) -> list[p4runtime_pb2.Entity]:
    req = p4runtime_pb2.ReadRequest(device_id=0, entities=[entity])
    return [e for r in stub.Read(req) for e in r.entities]


def table_entries(stub: Any) -> list[bytes]:
    """Every table entry, serialized, in a fixed order (the order of a Read is not specified)."""
    return sorted(e.SerializeToString() for e in read(stub, p4runtime_pb2.Entity(table_entry={})))


def counted_in(stub: Any, program: Any, port: int) -> int:
    entity = p4runtime_pb2.Entity(counter_entry={"counter_id": ids(program)["MyIngress.port_in"]})
    entity.counter_entry.index.index = port
    (got,) = read(stub, entity)
    return int(got.counter_entry.data.packet_count)


def cookie(stub: Any) -> int:
    types = p4runtime_pb2.GetForwardingPipelineConfigRequest
    reply = stub.GetForwardingPipelineConfig(types(device_id=0, response_type=types.COOKIE_ONLY))
    return int(reply.config.cookie.cookie)


def filters(ifname: str) -> list[str]:
    out = subprocess.run(["tc", "filter", "show", "dev", ifname, "ingress"], capture_output=True, text=True)
    return re.findall(r"dysco_tc:\d+", out.stdout)


def test_forwarding_goes_on_through_a_crash_and_the_next_switch_readopts_it(
    topology: Topology, cleanup: list[int], tmp_path: Path
) -> None:
    pins = pins_of(topology)
    stream = Stream(topology)
    try:
        with running_switch(argv(topology), tmp_path / "first.log") as (first, port):
            cleanup.append(first.pid)
            with controller(port) as stub:
                program = push(stub, FWD)
                write_sessions(stub, program)
                before = table_entries(stub)
                stream.wait_for(20)
                counted_before = counted_in(stub, program, 1)
            running = filters(topology.pairs[0].switch_end)
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=WAIT_S) == -signal.SIGKILL
            at_kill = stream.count
            # no switch process runs now: the kernel forwards on its own
            stream.wait_for(at_kill + DOWN_FRAMES)
            assert first.poll() is not None and pins.read() is not None

        with running_switch(argv(topology), tmp_path / "second.log") as (second, port):
            cleanup.append(second.pid)
            assert filters(topology.pairs[0].switch_end) == running  # never detached
            with controller(port) as stub:
                assert cookie(stub) == COOKIE  # the controller's pipeline, restored without a push
                assert table_entries(stub) == before
                assert counted_in(stub, program, 1) >= counted_before + DOWN_FRAMES
                entries = read(stub, p4runtime_pb2.Entity(table_entry={"time_since_last_hit": {}}))
                since = {e.table_entry.match[0].exact.value: e.table_entry.time_since_last_hit.elapsed_ns
                         for e in entries}  # fmt: skip
                assert since[b"\x01"] < since[b"\x02"]  # the stream's entry was hit, the other not
                push(stub, FWD)  # the same pipeline again: the first push after a restart keeps it
                assert table_entries(stub) == before
            stream.wait_for(stream.count + 50)  # and forwarding goes on
            cpu = subprocess.run(["ip", "link", "show", f"dc{first.pid}s"], capture_output=True)
            assert cpu.returncode != 0  # the dead switch's CPU veth is gone
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=WAIT_S) == 0
        # a clean stop: nothing pinned, nothing attached
        assert not pins.path.exists()
        assert filters(topology.pairs[0].switch_end) == []
    finally:
        stream.close()


def test_a_different_program_replaces_what_is_pinned(
    topology: Topology, cleanup: list[int], tmp_path: Path
) -> None:
    pins = pins_of(topology)
    with running_switch(argv(topology), tmp_path / "first.log") as (first, port):
        cleanup.append(first.pid)
        with controller(port) as stub:
            write_sessions(stub, push(stub, FWD))
        fwd_filter = filters(topology.pairs[0].switch_end)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=WAIT_S)
    fwd = read_meta(pins.path)
    assert fwd is not None

    # restarted without a program, it re-adopts fwd; a controller then pushes another program
    with running_switch(argv(topology), tmp_path / "second.log") as (second, port):
        cleanup.append(second.pid)
        with controller(port) as stub:
            assert len(table_entries(stub)) == 2
            push(stub, PUNT, cookie=7)
            assert table_entries(stub) == [] and cookie(stub) == 7
        punt = read_meta(pins.path)
        assert punt is not None and punt.c_sha256 != fwd.c_sha256
        attached = filters(topology.pairs[0].switch_end)
        assert len(attached) == 1 and attached != fwd_filter  # punt's program, not fwd's
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=WAIT_S)

    # a leftover of another program (punt, pinned) is removed when fwd is started on its ports
    with running_switch(argv(topology, str(FWD)), tmp_path / "third.log") as (third, port):
        cleanup.append(third.pid)
        fresh = read_meta(pins.path)
        assert fresh is not None and fresh.c_sha256 == fwd.c_sha256 and fresh.pid == third.pid
        assert filters(topology.pairs[0].switch_end) != attached
        with controller(port) as stub:
            assert table_entries(stub) == [] and cookie(stub) == 0
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=WAIT_S) == 0
    assert not pins.path.exists()


def test_keep_datapath_and_sigusr1_stop_the_switch_and_leave_the_data_path_forwarding(
    topology: Topology, cleanup: list[int], tmp_path: Path
) -> None:
    """An upgrade: `--keep-datapath` (then SIGTERM), or SIGUSR1 without the flag, ends the switch
    with status 0 and leaves the pipeline forwarding for the next one, which re-adopts it."""
    pins = pins_of(topology)
    stream = Stream(topology)
    try:
        with running_switch([*argv(topology), "--keep-datapath"], tmp_path / "first.log") as (first, port):
            cleanup.append(first.pid)
            with controller(port) as stub:
                write_sessions(stub, push(stub, FWD))
                before = table_entries(stub)
            stream.wait_for(20)
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=WAIT_S) == 0
            stream.wait_for(stream.count + DOWN_FRAMES)  # forwarding after the switch exited
            assert pins.read() is not None

        for i, stop in enumerate((signal.SIGUSR1, signal.SIGTERM)):
            with running_switch(argv(topology), tmp_path / f"next{i}.log") as (proc, port):
                cleanup.append(proc.pid)
                with controller(port) as stub:
                    assert table_entries(stub) == before and cookie(stub) == COOKIE
                proc.send_signal(stop)
                assert proc.wait(timeout=WAIT_S) == 0
                if stop == signal.SIGUSR1:
                    stream.wait_for(stream.count + DOWN_FRAMES)
                    assert pins.read() is not None
        assert not pins.path.exists()  # the plain SIGTERM at the end removed it all
        assert filters(topology.pairs[0].switch_end) == []
    finally:
        stream.close()
