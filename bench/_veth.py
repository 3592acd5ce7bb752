"""The softswitch's packets per second through veth pairs, as a real ``dysco switch`` process.

Two veth pairs join the switch (this namespace) to a host namespace made for the
run and removed after it.  The router program is loaded at start; its route is
written over P4Runtime.  One thread sends 64-byte frames into port 1 as fast as it
can for a fixed time while another counts what comes out of port 2.  The figure is
frames out per second; on two cores the generator and counter share a core with
nothing else, the switch has the other.
"""

from __future__ import annotations

import queue
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import grpc

from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from tests.softswitch_server.netns import host_ports, raw_socket_in

READY = re.compile(r"softswitch: P4Runtime server listening on \S+ \(port (\d+)\)")
START_S = 60.0
QUIET_S = 0.5
DMAC = bytes.fromhex("0a0b0c0d0e0f")


def _lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


Install = Callable[[p4runtime_pb2_grpc.P4RuntimeStub, p4info_pb2.P4Info], None]


def route_10_8(stub: p4runtime_pb2_grpc.P4RuntimeStub, info: p4info_pb2.P4Info) -> None:
    """The router program's route for 10.0.0.0/8 out of port 2."""
    table = next(t for t in info.tables if t.preamble.name.endswith("ipv4_lpm"))
    action = next(a for a in info.actions if a.preamble.name.endswith("ipv4_forward"))
    req = p4runtime_pb2.WriteRequest(device_id=0)
    te = req.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry
    te.table_id = table.preamble.id
    fm = te.match.add(field_id=1)
    fm.lpm.value, fm.lpm.prefix_len = bytes([10, 0, 0, 0]), 8
    te.action.action.action_id = action.preamble.id
    te.action.action.params.add(param_id=1, value=DMAC)
    te.action.action.params.add(param_id=2, value=b"\x02")
    stub.Write(req)


def _install(port: int, install: Install) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        get = p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=0)
        install(stub, stub.GetForwardingPipelineConfig(get).config.p4info)


def measure(
    program: Path, frame: bytes, seconds: float, install: Install = route_10_8, out_dmac: bytes = DMAC
) -> dict[str, Any]:
    """Frames per second out of port 2 while ``frame`` is sent into port 1 (see the module doc)."""
    dysco = Path(sys.executable).parent / "dysco"
    with host_ports(2) as topo:
        argv = [str(dysco), "switch", "--grpc-server-addr", "127.0.0.1:0"]
        for i, pair in enumerate(topo.pairs, start=1):
            argv += ["-i", f"{i}@{pair.switch_end}"]
        proc = subprocess.Popen(
            [*argv, str(program)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            lines: queue.Queue[str] = queue.Queue()
            assert proc.stdout is not None
            threading.Thread(
                target=_lines, args=(proc.stdout, lines), name="switch-stdout", daemon=True
            ).start()
            match = READY.match(lines.get(timeout=START_S))
            if match is None:
                raise RuntimeError("dysco switch did not start")
            _install(int(match.group(1)), install)
            tx = raw_socket_in(topo.netns, topo.pairs[0].host_end)
            rx = raw_socket_in(topo.netns, topo.pairs[1].host_end)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
            return _blast(tx, rx, frame, seconds, out_dmac)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _blast(tx: socket.socket, rx: socket.socket, frame: bytes, seconds: float, dmac: bytes) -> dict[str, Any]:
    counted = 0
    sending = threading.Event()
    sending.set()

    def count() -> None:
        """Count until sending has ended and the link has been quiet for QUIET_S."""
        nonlocal counted
        buf = bytearray(2048)
        while True:
            ready, _, _ = select.select([rx], [], [], QUIET_S)
            if ready:
                rx.recv_into(buf)
                if buf[:6] == dmac:
                    counted += 1
            elif not sending.is_set():
                return

    # one frame first: the path works before the clock starts
    tx.send(frame)
    deadline = time.monotonic() + 10
    buf = bytearray(2048)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([rx], [], [], 0.5)
        if ready and rx.recv_into(buf) and buf[:6] == dmac:
            break
    else:
        raise RuntimeError("the benchmark frame did not come through the switch")
    counter = threading.Thread(target=count, name="veth-counter")
    counter.start()
    sent = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(64):
            try:
                tx.send(frame)
                sent += 1
            except BlockingIOError:
                break
    elapsed = time.perf_counter() - t0
    sending.clear()
    counter.join()
    return {"sent": sent, "received": counted, "seconds": round(elapsed, 2), "pps": round(counted / elapsed)}
