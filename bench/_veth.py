"""Packets per second through veth pairs, as a real ``dysco switch`` process on either back end.

Two veth pairs join the switch (this namespace) to a host namespace made for the run and
removed after it.  The program is loaded at start; its entries are written over P4Runtime.
A generator sends 64-byte frames into port 1 as fast as it can for a fixed time; what comes
out of port 2 is counted.  The generator is bench/_blast.c (sendmmsg on an AF_PACKET socket,
built with clang into build/bench/) and the count is the kernel's rx counter of port 2's host
end, whose stack drops them at once (not its MAC): neither is a Python loop, so neither caps the
ebpf back end.  Without clang a Python send loop and counter stand in (a few hundred thousand
frames a second at most; the JSON's "generator" says which ran).  On two cores the generator
and the ebpf program share one (the program runs in the sender's softirq); the python back end
has the other core.
"""

from __future__ import annotations

import json
import queue
import re
import select
import shutil
import socket
import statistics
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


BLAST_C = Path(__file__).resolve().parent / "_blast.c"
BLAST = Path(__file__).resolve().parent.parent / "build" / "bench" / "blast"
BACKENDS = ("ebpf", "python")


def blaster() -> Path | None:
    """The C frame generator (bench/_blast.c), built with clang when missing or older than its
    source; None without clang (the Python send loop is used then, and says so)."""
    if BLAST.exists() and BLAST.stat().st_mtime >= BLAST_C.stat().st_mtime:
        return BLAST
    clang = shutil.which("clang-16") or shutil.which("clang")
    if clang is None:
        return None
    BLAST.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([clang, "-O2", "-Wall", "-o", str(BLAST), str(BLAST_C)], check=True)
    return BLAST


def measure(
    program: Path,
    frame: bytes,
    seconds: float,
    install: Install = route_10_8,
    out_dmac: bytes = DMAC,
    backend: str = "ebpf",
) -> dict[str, Any]:
    """Frames per second out of port 2 while ``frame`` is sent into port 1 (see the module doc),
    with the switch on ``backend``."""
    dysco = Path(sys.executable).parent / "dysco"
    with host_ports(2) as topo:
        argv = [str(dysco), "switch", "--backend", backend, "--grpc-server-addr", "127.0.0.1:0"]
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
            _first_frame(tx, rx, frame, out_dmac)
            gen = blaster()
            if gen is None:
                result = _blast(tx, rx, frame, seconds, out_dmac)
            else:
                rx.close()
                result = _blast_c(
                    gen, topo.netns, topo.pairs[0].host_end, topo.pairs[1].host_end, frame, seconds
                )
            return {"backend": backend, **result}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _first_frame(tx: socket.socket, rx: socket.socket, frame: bytes, dmac: bytes) -> None:
    """One frame through first: the path works (entries in, ports up) before the clock starts."""
    tx.send(frame)
    deadline = time.monotonic() + 10
    buf = bytearray(2048)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([rx], [], [], 0.5)
        if ready and rx.recv_into(buf) and buf[:6] == dmac:
            return
    raise RuntimeError("the benchmark frame did not come through the switch")


def _rx_packets(netns: str, iface: str) -> int:
    out = subprocess.run(
        ["ip", "-n", netns, "-s", "-j", "link", "show", "dev", iface],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def _blast_c(
    gen: Path, netns: str, tx_iface: str, rx_iface: str, frame: bytes, seconds: float
) -> dict[str, Any]:
    """The C generator sends into ``tx_iface``; what the switch puts out arrives at ``rx_iface``,
    counted by the kernel (its veth rx counter); the stack then drops it at once (the
    destination MAC is not the interface's), so the sink costs next to nothing.  Counting stops
    when the counter has not moved for QUIET_S after the generator ended (the python back end
    drains its queue)."""
    before = _rx_packets(netns, rx_iface)
    out = subprocess.run(
        ["ip", "netns", "exec", netns, str(gen), tx_iface, str(seconds), frame.hex()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sent, elapsed = int(out[0]), float(out[1])
    after = _rx_packets(netns, rx_iface)
    while True:
        time.sleep(QUIET_S)  # a drain, not a synchronisation: stop once nothing more arrives
        now = _rx_packets(netns, rx_iface)
        if now == after:
            break
        after = now
    return _figures("c", sent, after - before, elapsed)


def _figures(generator: str, sent: int, received: int, elapsed: float) -> dict[str, Any]:
    return {
        "generator": generator,
        "sent": sent,
        "received": received,
        "seconds": round(elapsed, 2),
        "sent_pps": round(sent / elapsed),
        "pps": round(received / elapsed),
    }


def _blast(tx: socket.socket, rx: socket.socket, frame: bytes, seconds: float, dmac: bytes) -> dict[str, Any]:
    """The Python generator and counter (no clang): tops out at a few hundred thousand frames a second."""
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
    return _figures("python", sent, counted, elapsed)


def backends(wanted: str) -> tuple[list[str], dict[str, str]]:
    """The back ends of ``--backends`` that can run here, and why each other one cannot."""
    from dysco.softswitch.targets.ebpf import unavailable

    names = [b.strip() for b in wanted.split(",") if b.strip()]
    bad = [b for b in names if b not in BACKENDS]
    if bad:
        raise SystemExit(f"--backends: unknown back end {bad[0]!r} (choose from {', '.join(BACKENDS)})")
    why = unavailable() if "ebpf" in names else None
    skipped = {"ebpf": why} if why else {}
    return [b for b in names if b not in skipped], skipped


def per_backend(
    names: list[str], runs: int, programs: dict[str, tuple[Path, bytes, Install, bytes]], seconds: float
) -> dict[str, dict[str, Any]]:
    """``runs`` rounds; each round measures every (back end, program) once, so slow drifts of a
    shared machine hit all of them alike.  Medians per back end and program, with every run."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {b: {p: [] for p in programs} for b in names}
    for i in range(runs):
        for b in names:
            for name, (program, frame, install, dmac) in programs.items():
                print(f"veth round {i + 1}/{runs}: {b} {name}", file=sys.stderr)
                raw[b][name].append(measure(program, frame, seconds, install, dmac, backend=b))
    return {
        b: {
            name: {
                "pps": round(statistics.median(r["pps"] for r in rs)),
                "sent_pps": round(statistics.median(r["sent_pps"] for r in rs)),
                "generator": rs[0]["generator"],
                # everything sent came out: the generator, not the switch, set the pace (a lower bound)
                "generator_limited": statistics.median(r["pps"] for r in rs)
                >= 0.98 * statistics.median(r["sent_pps"] for r in rs),
                "runs_pps": [r["pps"] for r in rs],
            }
            for name, rs in progs.items()
        }
        for b, progs in raw.items()
    }
