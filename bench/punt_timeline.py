"""Where a connect's milliseconds go: every crossing of its SYN and SYN+ACK through a chain,
stamped by the kernel, cut into stages.

``python -m bench.punt_timeline`` (as root) prints JSON.  The testbed is bench.e2e_goodput's
(client -> m1..m4 -> server, every host behind its own ``dysco switch`` NIC and agent, all of
them in the root namespace).  While the client connects ``--connects`` times, one at a time,
through ``--middleboxes`` middleboxes, this process reads with AF_PACKET sockets and kernel
receive timestamps (SO_TIMESTAMPNS) every NIC's two ports, every switch's CPU veth (the
controller side, ``dc<pid>c``) and loopback, where each agent talks P4Runtime to its switch.
Nothing in the agents or switches is changed or slowed (one more process reads copies of
their frames, and it shares the two cores with them).

Each connect's SYN is followed by its sequence number through every port, punt, packet-in,
packet-out and injection (bench/_timeline.py says how and names the stages); its SYN+ACK by its
acknowledgment number on the way back.  The JSON gives per stage the median over the connects
of the time the SYN spent in it along the whole chain, the same per host, and the SYN+ACK's way
back (``fast_path`` when every NIC translates it without a punt).  The sum of the stages is the
SYN's way from the client's NIC to the server's; ``connect_median_ms`` is what the client's
connect() took.

    python -m bench.punt_timeline --connects 200 --middleboxes 4
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import _timeline as tl
from bench import e2e_goodput as eg
from bench._cli import run_in_dir
from dysco.errors import UserError
from dysco.testbed import Testbed

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
SNAP = 65536
RCVBUF = 8 << 20


def _progress(text: str) -> None:
    print(f"punt_timeline: {text}", file=sys.stderr, flush=True)


class Sniffer:
    """AF_PACKET sockets on named interfaces, read by one thread into a list of frames with the
    kernel's receive timestamp.  ``interfaces``: interface -> (host, where); ``grpc_ports``: a
    switch's P4Runtime port -> its host, for the segments on loopback (the rest are not kept)."""

    def __init__(self, interfaces: dict[str, tuple[str, tl.Where]], grpc_ports: dict[int, str]) -> None:
        self.interfaces = interfaces
        self.grpc_ports = grpc_ports
        self.frames: list[tl.Frame] = []
        self.socks: list[tuple[socket.socket, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="punt-timeline-sniffer", daemon=True)

    def __enter__(self) -> Sniffer:
        for ifname in [*self.interfaces, "lo"]:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            s.bind((ifname, 0))
            s.setblocking(False)
            self.socks.append((s, ifname))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for s, _ in self.socks:
            s.close()

    def _run(self) -> None:
        by_fd = {s.fileno(): (s, name) for s, name in self.socks}
        poll = select.poll()
        for fd in by_fd:
            poll.register(fd, select.POLLIN)
        while not self._stop.is_set():
            for fd, _ in poll.poll(50):
                s, name = by_fd[fd]
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data, anc, _, addr = s.recvmsg(SNAP, 64)
                        t = next(
                            (
                                sec * 1_000_000_000 + nsec
                                for level, kind, c in anc
                                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                                for sec, nsec in [struct.unpack("qq", c[:16])]
                            ),
                            time.time_ns(),
                        )
                        frame = self._label(name, addr[2] == PACKET_OUTGOING, data, t)
                        if frame is not None:
                            self.frames.append(frame)

    def _label(self, ifname: str, outgoing: bool, data: bytes, t: int) -> tl.Frame | None:
        if ifname != "lo":
            host, where = self.interfaces[ifname]
            return tl.Frame(t, host, where, outgoing, data)
        # loopback: every segment is seen leaving and arriving; the leaving copy counts
        if not outgoing or len(data) < 54 or data[12:14] != b"\x08\x00" or data[23] != 6:
            return None
        ihl = (data[14] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", data, 14 + ihl)
        if sport in self.grpc_ports:  # switch -> agent: a packet-in (or a Write's answer)
            return tl.Frame(t, self.grpc_ports[sport], tl.Where.GRPC, False, data)
        if dport in self.grpc_ports:  # agent -> switch: a packet-out (or a Write)
            return tl.Frame(t, self.grpc_ports[dport], tl.Where.GRPC, True, data)
        return None


def _cpu_veths(tb: Testbed) -> dict[str, str]:
    """Host name -> its switch's CPU veth, controller side (``dc<switch pid>c``)."""
    listing = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    present = set(re.findall(r"^\d+: (dc\d+c)@", listing.stdout, re.MULTILINE))
    out = {}
    for h, sw in zip(tb.plan.with_agent(), tb.switches, strict=True):
        name = f"dc{sw.proc.pid}c"
        if name not in present:
            raise UserError(f"no CPU veth {name} for {h.name}'s switch (is its back end ebpf?)")
        out[h.name] = name
    return out


def _isns(frames: list[tl.Frame]) -> list[int]:
    """Initial sequence numbers of the client's SYNs, in order, from its NIC's host port."""
    isns = []
    for f in frames:
        d = f.data
        if f.where is not tl.Where.HOST_PORT or f.host != "client" or f.outgoing:
            continue
        if len(d) < 54 or d[12:14] != b"\x08\x00" or d[23] != 6:
            continue
        tcp = 14 + (d[14] & 0x0F) * 4
        if d[tcp + 13] & (tl.SYN | tl.ACK) == tl.SYN:
            isn = struct.unpack_from("!I", d, tcp + 4)[0]
            if isn not in isns:
                isns.append(isn)
    return isns


def timeline(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    p = eg.plan("dysco", f"t{os.getpid() % 100000}", str(logs / "policy.dysco"), "ebpf", True)
    port = eg.SETUP_BASE + args.middleboxes
    _progress(f"starting {len(p.hosts)} NICs and agents (ebpf back end)")
    with Testbed(p, logs) as tb:
        if not tb.carried_by().startswith("ebpf backend"):
            raise UserError("the NICs came up on the python back end; the timeline needs ebpf's CPU veths")
        cpu = _cpu_veths(tb)
        interfaces: dict[str, tuple[str, tl.Where]] = {}
        for h in tb.plan.with_agent():
            interfaces[f"{p.prefix}-{h.key}-host"] = (h.name, tl.Where.HOST_PORT)
            interfaces[f"{p.prefix}-{h.key}-net"] = (h.name, tl.Where.NET_PORT)
            interfaces[cpu[h.name]] = (h.name, tl.Where.CPU)
        grpc_ports = {h.grpc_port: h.name for h in tb.plan.with_agent()}
        with eg.accepting(tb, logs, port):
            _progress(f"{args.connects} connects through {args.middleboxes} middleboxes, captured")
            with Sniffer(interfaces, grpc_ports) as sniffer:
                times = eg.connect_times(tb, logs, args.connects, port)
            frames = sniffer.frames
    hosts = ["client", *(f"m{i}" for i in range(1, args.middleboxes + 1)), "server"]
    syns, synacks, odd = [], [], 0
    for isn in _isns(frames):
        w = tl.way(tl.syn_events(frames, isn))
        b = tl.way(tl.synack_events(frames, isn))
        if w is None or b is None:
            odd += 1
            continue
        syns.append(w)
        synacks.append(b)
        odd += w.odd + b.odd
    if not syns:
        raise UserError("no SYN was followed through the chain (see the logs)")
    punts = {h: statistics.median(w.punts.get(h, 0) for w in syns) for h in hosts}
    return {
        "benchmark": "punt_timeline",
        "parameters": {"connects": args.connects, "middleboxes": args.middleboxes, "backend": "ebpf"},
        "connect_median_ms": round(statistics.median(times) * 1e3, 3),
        "followed": len(syns),
        "frames_captured": len(frames),
        "gaps_no_stage_names": odd,
        "syn_way_ms": tl.medians_ms(syns),
        "syn_way_by_host_ms": tl.per_host_ms(syns, hosts),
        "punts_per_host": punts,
        "synack_way_ms": tl.medians_ms(synacks),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: sudo .venv/bin/python -m bench.punt_timeline --connects 200 --middleboxes 4",
    )
    ap.add_argument("--connects", type=int, default=200, help="connections set up while captured")
    ap.add_argument("--middleboxes", type=int, choices=range(1, eg.MBOXES + 1), default=4,
                    help="middleboxes on the chain (1-4)")  # fmt: skip
    ap.add_argument("--logs", type=Path, help="keep the logs here (default: a temporary directory)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces, NICs, AF_PACKET sockets)")
    if args.connects < 1:
        ap.error("--connects must be at least 1")
    run_in_dir("punt_timeline", args.logs, lambda logs: timeline(args, logs))


if __name__ == "__main__":
    main()
