"""Packet-in from a TC program to a Python reader: a CPU veth pair vs a BPF ring buffer.

Run (root): ``python -m bench.punt_path [--seconds S] [--runs R] [--sizes 64,1514]``; prints JSON.

The ebpf back end of ``dysco switch`` punts packets to the P4Runtime server through a veth pair
(docs/dataplane.md, "The CPU port"); the other way the kernel offers is a BPF ring buffer.  This
measures both with the same small program (bench/_punt_bpf.c) at the ingress of a veth port, fed
by the C generator (bench/_blast.c) as fast as it sends: ``veth`` redirects every packet out of a
second veth pair whose far end a Python AF_PACKET socket reads; ``ring`` copies the packet into a
16 MB ring buffer that Python polls through libbpf.  Either way the reader gets each packet as a
``bytes`` object, as the server needs it.  Reported per mechanism and frame size: packets the
program handed over and refused per second, packets the reader got per second, and the reader's
CPU time per packet (user + system).  Runs alternate between the two; medians are reported.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._veth import blaster
from dysco.softswitch.targets.ebpf.libbpf import BpfMap, BpfObject
from tests.softswitch_server.netns import host_ports, raw_socket_in

SOURCE = Path(__file__).resolve().parent / "_punt_bpf.c"
OBJECT_DIR = Path(__file__).resolve().parent.parent / "build" / "bench"
QUIET_S = 0.3
MECHANISMS = ("veth", "ring")
SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def build() -> Path:
    """bench/_punt_bpf.c compiled as the ebpf back end compiles its programs (build/bench/punt.o)."""
    from dysco.softswitch.targets.ebpf.build import build as clang_bpf

    return clang_bpf(SOURCE.read_text(), OBJECT_DIR, "punt")


def udp_frame(size: int) -> bytes:
    """An Ethernet/IPv4/UDP frame of ``size`` bytes (the checksums do not matter here)."""
    ip_len = size - 14
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0x4000, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 1, 2, 3])
    )
    udp = struct.pack("!HHHH", 1234, 5678, ip_len - 20, 0)
    return bytes.fromhex("0a0b0c0d0e0f0200000000010800") + ip + udp + bytes(size - 42)


class _Ring:
    """libbpf's ring_buffer__new / __poll / __free over ctypes; every record becomes ``bytes``."""

    def __init__(self, map_fd: int) -> None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        lib.ring_buffer__new.restype = ctypes.c_void_p
        lib.ring_buffer__new.argtypes = [ctypes.c_int, SAMPLE_FN, ctypes.c_void_p, ctypes.c_void_p]
        lib.ring_buffer__poll.restype = ctypes.c_int
        lib.ring_buffer__poll.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.ring_buffer__free.restype = None
        lib.ring_buffer__free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self.count = 0
        self._cb = SAMPLE_FN(self._sample)  # kept alive as long as the ring
        self._rb = lib.ring_buffer__new(map_fd, self._cb, None, None)
        if not self._rb:
            raise OSError(ctypes.get_errno(), "ring_buffer__new failed")

    def _sample(self, _ctx: int | None, data: int | None, size: int) -> int:
        ctypes.string_at(data or 0, size)  # the packet, as the server would take it
        self.count += 1
        return 0

    def poll(self, timeout_ms: int) -> int:
        n = int(self._lib.ring_buffer__poll(self._rb, timeout_ms))
        if n < 0:
            raise OSError(-n, "ring_buffer__poll failed")
        return n

    def close(self) -> None:
        self._lib.ring_buffer__free(self._rb)


def _stats(obj: BpfObject) -> tuple[int, int]:
    m = BpfMap(obj, "stats", 4, 8 * obj.possible_cpus())
    out = []
    for key in (0, 1):
        raw = m.lookup(struct.pack("=I", key)) or b""
        out.append(sum(struct.unpack(f"={len(raw) // 8}Q", raw)))
    return out[0], out[1]


def run(mechanism: str, size: int, seconds: float, gen: Path, obj_path: Path) -> dict[str, Any]:
    from pyroute2 import IPRoute

    frame = udp_frame(size)
    with host_ports(2) as topo, IPRoute() as ipr:
        port, cpu = topo.pairs
        with BpfObject(obj_path, f"punt_{mechanism}") as obj:
            port_idx = int(ipr.link_lookup(ifname=port.switch_end)[0])
            cpu_idx = int(ipr.link_lookup(ifname=cpu.switch_end)[0])
            BpfMap(obj, "cpu", 4, 4).update(struct.pack("=I", 0), struct.pack("=I", cpu_idx))
            ipr.tc("add", "clsact", index=port_idx)
            try:
                ipr.tc("add-filter", "bpf", index=port_idx, handle=":1", fd=obj.prog_fd, name="punt",
                       parent="ffff:fff2", classid=1, direct_action=True)  # fmt: skip
                reader: socket.socket | _Ring
                if mechanism == "veth":
                    reader = raw_socket_in(topo.netns, cpu.host_end)
                    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
                else:
                    reader = _Ring(BpfMap(obj, "ring", 0, 0).fd)
                try:
                    return _measure(reader, obj, gen, topo.netns, port.host_end, frame, seconds)
                finally:
                    reader.close()
            finally:
                ipr.tc("del", "clsact", index=port_idx)


def _measure(
    reader: socket.socket | _Ring,
    obj: BpfObject,
    gen: Path,
    netns: str,
    iface: str,
    frame: bytes,
    seconds: float,
) -> dict[str, Any]:
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    blast = subprocess.Popen(
        ["ip", "netns", "exec", netns, str(gen), iface, str(seconds), frame.hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    got = 0
    quiet_since: float | None = None
    buf = bytearray(65536)
    while True:
        if isinstance(reader, _Ring):
            n = reader.poll(100)
            got = reader.count
        else:
            n = 0
            ready, _, _ = select.select([reader], [], [], 0.1)
            while ready:
                try:
                    k = reader.recv_into(buf, flags=socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                bytes(buf[:k])  # the packet, as the server would take it
                n += 1
            got += n
        if blast.poll() is None:
            continue
        if n:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            break
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    assert blast.stdout is not None
    sent, elapsed = (float(x) for x in blast.stdout.read().split())
    punted, refused = _stats(obj)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "sent_pps": round(sent / elapsed),
        "handed_over_pps": round(punted / elapsed),
        "refused_pps": round(refused / elapsed),
        "read_pps": round(got / elapsed),
        "reader_us_per_packet": round(1e6 * cpu_s / max(1, got), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each run")
    ap.add_argument("--runs", type=int, default=3, help="runs per mechanism and size (medians reported)")
    ap.add_argument("--sizes", default="64,1514", help="frame sizes in bytes, comma-separated")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.punt_path needs root (network namespaces, TC programs)")
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(not 60 <= s <= 2048 for s in sizes):
        raise SystemExit("--sizes: each frame size must be 60..2048 bytes")
    gen, obj = blaster(), build()
    if gen is None:
        raise SystemExit("bench.punt_path needs clang for its generator (apt-get install clang-16)")
    raw: dict[str, dict[int, list[dict[str, Any]]]] = {m: {s: [] for s in sizes} for m in MECHANISMS}
    for i in range(args.runs):
        for size in sizes:
            for m in MECHANISMS:
                print(f"run {i + 1}/{args.runs}: {m}, {size}-byte frames", file=sys.stderr)
                raw[m][size].append(run(m, size, args.seconds, gen, obj))
    result: dict[str, Any] = {"benchmark": "punt_path", "seconds": args.seconds, "runs": args.runs}
    for m in MECHANISMS:
        result[m] = {
            str(s): {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in raw[m].items()
        }
    result["ring_over_veth_read_pps"] = {
        str(s): round(result["ring"][str(s)]["read_pps"] / max(1, result["veth"][str(s)]["read_pps"]), 2)
        for s in sizes
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
