"""Established-session packets per second through p4src/dysco.p4 vs p4src/baseline.p4 on the
softswitch, side by side in one run: in-process, and over veth as a ``dysco switch`` process.

The packet is a 64-byte TCP data segment from HOST.  dysco.p4 has a session-out entry for it
(rewrite with an ack delta, so the tuple, the ack and both checksums change); baseline.p4
forwards it as it is.  A third figure, dysco.p4 with no entry for the packet (parsed and
looked up, not rewritten), splits the extra cost between parsing/lookup and rewriting.
Runs alternate between the programs; medians are reported.  Target: ratio >= 0.85.

    python -m bench.dataplane_pps [--packets N] [--runs R] [--veth-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
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


def frame() -> bytes:
    """A 64-byte TCP segment with 10 bytes of data, checksums right."""

    src, dst, sport, dport = SESSION
    payload = b"0123456789"
    tcp = bytearray(sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (1).to_bytes(4, "big"))
    tcp += (5000).to_bytes(4, "big") + bytes([0x50, 0x18]) + (1000).to_bytes(2, "big") + bytes(4)
    pseudo = (
        src.to_bytes(4, "big")
        + dst.to_bytes(4, "big")
        + bytes([0, 6])
        + (20 + len(payload)).to_bytes(2, "big")
    )
    tcp[16:18] = csum16(pseudo + bytes(tcp) + payload).to_bytes(2, "big")
    ip = bytearray(
        bytes([0x45, 0]) + (40 + len(payload)).to_bytes(2, "big") + bytes([0, 7, 0x40, 0, 64, 6, 0, 0])
    )
    ip += src.to_bytes(4, "big") + dst.to_bytes(4, "big")
    ip[10:12] = csum16(bytes(ip)).to_bytes(2, "big")
    out = DMAC + bytes.fromhex("020000000001") + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload
    assert len(out) == 64
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


def over_veth(seconds: float, runs: int) -> dict[str, Any]:
    from bench._veth import measure

    pkt = frame()
    results: dict[str, list[int]] = {"dysco": [], "baseline": []}
    for i in range(runs):
        print(f"veth run {i + 1}/{runs}", file=sys.stderr)
        results["dysco"].append(measure(DYSCO, pkt, seconds, _install_session, DMAC)["pps"])
        results["baseline"].append(measure(BASELINE, pkt, seconds, lambda stub, info: None, DMAC)["pps"])
    med = {name: statistics.median(r) for name, r in results.items()}
    return {
        "pps": {name: round(v) for name, v in med.items()},
        "runs_pps": results,
        "ratio": round(med["dysco"] / med["baseline"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=30_000, help="packets per in-process run")
    ap.add_argument("--runs", type=int, default=5, help="in-process runs per program (median reported)")
    ap.add_argument("--veth-seconds", type=float, default=3.0, help="length of each veth run (needs root)")
    ap.add_argument("--veth-runs", type=int, default=3)
    args = ap.parse_args()
    result: dict[str, Any] = {"benchmark": "dataplane_pps", "packet_bytes": 64, "target_ratio": TARGET_RATIO}
    result["in_process"] = in_process(args.packets, args.runs)
    result["veth"] = over_veth(args.veth_seconds, args.veth_runs) if os.geteuid() == 0 else "needs root"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
