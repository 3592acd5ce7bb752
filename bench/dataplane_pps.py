"""Established-session packets per second through p4src/dysco.p4 vs p4src/baseline.p4 on the
softswitch, side by side in one run: in-process, and over veth as a ``dysco switch`` process.

The packet is a 64-byte TCP data segment from HOST.  dysco.p4 has a session-out entry for it
(rewrite with an ack delta, so the tuple, the ack and both checksums change); baseline.p4
forwards it as it is.  A third figure, dysco.p4 with no entry for the packet (parsed and
looked up, not rewritten), splits the extra cost between parsing/lookup and rewriting.
Runs alternate between the programs; medians are reported.  Target: ratio >= 0.85.

    python -m bench.dataplane_pps [--packets N] [--runs R] [--veth-seconds S] [--backends ebpf,python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from dysco.p4names import HOST_PORT, NET_PORT, SESSION_OUT
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch import Switch, load_program
from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry
from dysco.softswitch.targets.python.runtime import csum16

ROOT = Path(__file__).resolve().parents[1]
DYSCO, BASELINE = ROOT / "p4src" / "dysco.p4", ROOT / "p4src" / "baseline.p4"
DMAC = bytes.fromhex("020000000002")
SESSION = (0x0A000105, 0x0A000909, 40000, 80)  # 10.0.1.5:40000 -> 10.0.9.9:80
REWRITE = (0x0A000105, 0x0A000201, 50000, 7000, 0, 1234, 0, 0, 0, 0, 1)  # to 10.0.2.1:7000, ack delta 1234
TARGET_RATIO = 0.85
# NOP, NOP, timestamps: the options of every segment Linux sends on an established session
TIMESTAMPS = bytes([1, 1, 8, 10]) + (12345).to_bytes(4, "big") + (678).to_bytes(4, "big")


def frame(data: int = 10, options: bytes = b"") -> bytes:
    """A TCP segment with ``data`` bytes of data (10: a 64-byte frame) and TCP ``options`` (a
    multiple of 4 bytes), checksums right."""
    src, dst, sport, dport = SESSION
    payload = (b"0123456789" * (data // 10 + 1))[:data]
    thl = 20 + len(options)
    tcp = bytearray(sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (1).to_bytes(4, "big"))
    tcp += (5000).to_bytes(4, "big") + bytes([(thl // 4) << 4, 0x18]) + (1000).to_bytes(2, "big") + bytes(4)
    tcp += options
    pseudo = (
        src.to_bytes(4, "big")
        + dst.to_bytes(4, "big")
        + bytes([0, 6])
        + (thl + len(payload)).to_bytes(2, "big")
    )
    tcp[16:18] = csum16(pseudo + bytes(tcp) + payload).to_bytes(2, "big")
    ip = bytearray(
        bytes([0x45, 0]) + (20 + thl + len(payload)).to_bytes(2, "big") + bytes([0, 7, 0x40, 0, 64, 6, 0, 0])
    )
    ip += src.to_bytes(4, "big") + dst.to_bytes(4, "big")
    ip[10:12] = csum16(bytes(ip)).to_bytes(2, "big")
    out = DMAC + bytes.fromhex("020000000001") + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload
    assert len(out) == 34 + thl + data
    return out


def _ids(info: Any) -> tuple[int, int]:
    table = next(t.preamble.id for t in info.tables if t.preamble.name == SESSION_OUT.table)
    action = next(a.preamble.id for a in info.actions if a.preamble.name == SESSION_OUT.rewrite_action)
    return table, action


def _session_entry(info: Any) -> TableEntry:
    table, action = _ids(info)
    src, dst, sport, dport = SESSION
    match = tuple(FieldMatch(i, "exact", v) for i, v in enumerate((src, dst, 6, sport, dport), start=1))
    return TableEntry(table, match, ActionCall(action, REWRITE))


def in_process(packets: int, runs: int) -> dict[str, Any]:
    pkt = frame()
    dysco_prog, base_prog = load_program(DYSCO), load_program(BASELINE)
    rewriting = Switch(dysco_prog, cpu_port=255)
    rewriting.write_entry("insert", _session_entry(dysco_prog.p4info))
    switches = {"dysco": rewriting, "dysco_no_entry": Switch(dysco_prog, cpu_port=255),
                "baseline": Switch(base_prog, cpu_port=255)}  # fmt: skip
    for name, sw in switches.items():
        out = sw.process(HOST_PORT, pkt)
        if len(out) != 1 or out[0][0] != NET_PORT or (name == "dysco") == (out[0][1] == pkt):
            raise SystemExit(f"{name}: unexpected output {out!r}")
    results: dict[str, list[float]] = {name: [] for name in switches}
    for _ in range(runs):
        for name, sw in switches.items():
            process = sw.process
            t0 = time.perf_counter()
            for _ in range(packets):
                process(HOST_PORT, pkt)
            results[name].append(packets / (time.perf_counter() - t0))
    med = {name: statistics.median(r) for name, r in results.items()}
    us = {name: 1e6 / v for name, v in med.items()}
    return {
        "pps": {name: round(v) for name, v in med.items()},
        "runs_pps": {name: [round(v) for v in r] for name, r in results.items()},
        "ratio": round(med["dysco"] / med["baseline"], 3),
        "us_per_packet": {name: round(v, 2) for name, v in us.items()},
        "extra_us_parse_and_lookup": round(us["dysco_no_entry"] - us["baseline"], 2),
        "extra_us_rewrite_and_checksums": round(us["dysco"] - us["dysco_no_entry"], 2),
    }


def _install_session(stub: p4runtime_pb2_grpc.P4RuntimeStub, info: p4info_pb2.P4Info) -> None:
    table, action = _ids(info)
    req = p4runtime_pb2.WriteRequest(device_id=0)
    te = req.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry
    te.table_id = table
    for i, v in enumerate((SESSION[0], SESSION[1], 6, SESSION[2], SESSION[3]), start=1):
        te.match.add(field_id=i).exact.value = v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")
    te.action.action.action_id = action
    for i, v in enumerate(REWRITE, start=1):
        te.action.action.params.add(param_id=i, value=v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big"))
    stub.Write(req)


def over_veth(seconds: float, runs: int, wanted: str) -> dict[str, Any]:
    """dysco.p4 (with the session entry) and baseline.p4 as ``dysco switch`` processes over veth,
    on each back end; dysco/baseline per back end."""
    from bench._veth import backends, per_backend

    names, skipped = backends(wanted)
    pkt = frame()
    programs = {
        "dysco": (DYSCO, pkt, _install_session, DMAC),
        "baseline": (BASELINE, pkt, lambda stub, info: None, DMAC),
    }
    by = per_backend(names, runs, programs, seconds)
    out: dict[str, Any] = {}
    for b, r in by.items():
        out[b] = {**r, "ratio": round(r["dysco"]["pps"] / max(1, r["baseline"]["pps"]), 3)}
    out["not_run"] = skipped
    return out


def in_kernel(repeat: int) -> dict[str, Any]:
    """Nanoseconds per packet of the ebpf back end's program alone (BPF_PROG_TEST_RUN, no veth,
    no generator): baseline.p4, dysco.p4 with the session entry, dysco.p4 without it, for a
    64-byte and a 1,514-byte frame, and a 1,514-byte frame with timestamps (as Linux sends them:
    the parser walks the options state by state).  Five timings of ``repeat`` runs each; the median."""
    from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig

    frames = {"64": frame(), "1514": frame(1460), "1514_timestamps": frame(1448, TIMESTAMPS)}
    cases = {"baseline": (BASELINE, False), "dysco": (DYSCO, True), "dysco_no_entry": (DYSCO, False)}
    out: dict[str, Any] = {"note": "mean ns per packet inside the kernel, the TC program alone"}
    with VethRig([HOST_PORT, NET_PORT]) as rig:
        for name, (path, entry) in cases.items():
            prog = load_program(path)
            sw = EbpfSwitch(prog, ports={p: rig.switch_if(p) for p in rig.ports}, netns=rig.name, rig=rig)
            try:
                if entry:
                    sw.write_entry("insert", _session_entry(prog.p4info))
                out[name] = {}
                for size, pkt in frames.items():
                    runs = [sw.time_program(HOST_PORT, pkt, repeat) for _ in range(5)]
                    if {verdict for _, verdict in runs} != {7}:
                        raise RuntimeError(f"{name}: the {size}-byte frame was not forwarded: {runs}")
                    out[name][size] = statistics.median(ns for ns, _ in runs)
            finally:
                sw.close()
    out["dysco_over_baseline_ns"] = {s: out["dysco"][s] - out["baseline"][s] for s in frames}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=30_000, help="packets per in-process run")
    ap.add_argument("--runs", type=int, default=5, help="in-process runs per program (median reported)")
    ap.add_argument("--veth-seconds", type=float, default=3.0, help="length of each veth run (needs root)")
    ap.add_argument("--veth-runs", type=int, default=3, help="veth runs per back end and program")
    ap.add_argument("--test-runs", type=int, default=100_000, help="in-kernel runs per ebpf timing")
    ap.add_argument(
        "--backends", default="ebpf,python", help="dysco switch back ends over veth (default: both)"
    )
    args = ap.parse_args()
    result: dict[str, Any] = {"benchmark": "dataplane_pps", "packet_bytes": 64, "target_ratio": TARGET_RATIO}
    result["in_process"] = in_process(args.packets, args.runs)
    if os.geteuid() == 0 and "ebpf" in args.backends:
        from dysco.softswitch.targets.ebpf import unavailable

        why = unavailable()
        result["ebpf_program_ns"] = in_kernel(args.test_runs) if why is None else why
    result["veth"] = (
        over_veth(args.veth_seconds, args.veth_runs, args.backends) if os.geteuid() == 0 else "needs root"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
