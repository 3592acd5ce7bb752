"""In-process packets per second of the softswitch on a simple IPv4 router (64-byte packets).

Run: ``.venv/bin/python -m bench.softswitch_pps [--packets N] [--runs R]``; prints JSON.
The program is tests/softswitch/programs/router.p4 (LPM on the destination, TTL
decrement, IPv4 checksum verify and update), the kind bmv2 publishes ~80 kpps for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from dysco.softswitch import Switch, load_program
from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry
from dysco.softswitch.targets.python.runtime import csum16

VETH_TARGET_PPS = 1_000_000  # issue 16: router.p4 on the ebpf back end
DMAC = bytes.fromhex("0a0b0c0d0e0f")  # what route_10_8 writes
PROGRAM = Path(__file__).resolve().parent.parent / "tests" / "softswitch" / "programs" / "router.p4"


def frame_64() -> bytes:
    ip = bytearray.fromhex("45000032000040004011 0000 0a000001 0a010203".replace(" ", ""))
    ip[10:12] = csum16(bytes(ip)).to_bytes(2, "big")
    udp = bytes.fromhex("04d2162e001e0000") + bytes(22)
    frame = bytes.fromhex("0000000000010000000000020800") + bytes(ip) + udp
    assert len(frame) == 64
    return frame


def setup() -> tuple[Switch, bytes]:
    prog = load_program(PROGRAM)
    info = prog.p4info
    table = next(t.preamble.id for t in info.tables if t.preamble.name.endswith("ipv4_lpm"))
    fwd = next(a.preamble.id for a in info.actions if a.preamble.name.endswith("ipv4_forward"))
    sw = Switch(prog)
    for i in range(16):  # a few prefixes of different lengths, as a small routing table
        plen = 8 + i
        value = (0x0A000000 + (i << (32 - plen - 1))) & ~((1 << (32 - plen)) - 1) & 0xFFFFFFFF
        entry = TableEntry(
            table, (FieldMatch(1, "lpm", value, prefix_len=plen),), ActionCall(fwd, (0x0A0B0C0D0E0F, 2))
        )
        sw.write_entry("insert", entry)
    return sw, frame_64()


def run_once(sw: Switch, frame: bytes, n: int) -> float:
    process = sw.process
    t0 = time.perf_counter()
    for _ in range(n):
        process(1, frame)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=50_000, help="packets per run")
    ap.add_argument("--runs", type=int, default=5, help="runs (the median is reported)")
    ap.add_argument("--veth-seconds", type=float, default=3.0, help="length of each veth run (needs root)")
    ap.add_argument(
        "--veth-runs", type=int, default=3, help="veth runs per back end (the median is reported)"
    )
    ap.add_argument(
        "--backends", default="ebpf,python", help="dysco switch back ends over veth (default: both)"
    )
    args = ap.parse_args()
    sw, frame = setup()
    out = sw.process(1, frame)
    if not out or out[0][0] != 2:
        raise SystemExit(f"the router did not forward the benchmark packet: {out!r}")
    run_once(sw, frame, 2_000)  # warm-up
    runs = [run_once(sw, frame, args.packets) for _ in range(args.runs)]
    veth: dict[str, Any] = {"note": "needs root: run as root for the veth figures"}
    if os.geteuid() == 0:
        from bench._veth import backends, per_backend, route_10_8

        names, skipped = backends(args.backends)
        by = per_backend(
            names, args.veth_runs, {"router": (PROGRAM, frame, route_10_8, DMAC)}, args.veth_seconds
        )
        veth = {b: r["router"] for b, r in by.items()}
        veth["not_run"] = skipped
        if "ebpf" in by:
            veth["ebpf_target_pps"] = VETH_TARGET_PPS
            veth["ebpf_target_met"] = by["ebpf"]["router"]["pps"] >= VETH_TARGET_PPS
        if "ebpf" in by and "python" in by:
            veth["ratio_ebpf_python"] = round(
                by["ebpf"]["router"]["pps"] / max(1, by["python"]["router"]["pps"]), 1
            )
    print(
        json.dumps(
            {
                "benchmark": "softswitch_pps",
                "mode": "in-process",
                "program": "tests/softswitch/programs/router.p4",
                "packet_bytes": len(frame),
                "packets_per_run": args.packets,
                "runs_pps": [round(r) for r in runs],
                "pps": round(statistics.median(runs)),
                "target_pps": 80_000,
                "python": platform.python_version(),
                "veth": veth,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
