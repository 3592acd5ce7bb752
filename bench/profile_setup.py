"""Where session setup spends its time: py-spy samples of every agent and every ``dysco switch``
of a chain while connections are set up through it, sorted into stages.

``python -m bench.profile_setup`` (as root, py-spy installed by ``make setup``) prints JSON.
The testbed is bench.e2e_goodput's (client -> m1..m4 -> server, each host behind its own NIC
and agent); the client connects ``--connects`` times, one connect at a time, to a port whose
policy crosses ``--middleboxes`` of them, while py-spy samples each agent and switch process.
Per process the JSON gives its CPU time as a share of the wall time (from /proc) and py-spy's
samples of threads holding the GIL per stage (Python work; a thread blocked in C is not
sampled); the connect() median comes from the client.
The raw samples stay in ``--out`` (one file per process; ``frame;frame;... COUNT`` lines) for
a flame graph or a closer look.

The first hop is the client's agent (it punts the policy SYN, picks the chain, writes both
directions, sends the SYN on with its address list), a middle hop a middlebox's agent (it strips
the list, writes, tags the SYN for the middlebox application and untags it on the way out), the
last hop the server's.  docs/performance.md has the figures of a run and what they say.

    python -m bench.profile_setup --connects 300 --middleboxes 3 --out out/profile-setup
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import _pyspy
from bench import e2e_goodput as eg
from bench._cli import run_in_dir
from dysco.softswitch.server.cli import default_backend
from dysco.testbed import Testbed

ROOT = Path(__file__).resolve().parents[1]

AGENT_STAGES: _pyspy.Stages = (
    ("core", ("/runtime/core/",)),
    ("encode_entries", ("entry_to_proto (", "Connection.table_update (", "Connection.entity_update (")),
    ("write_rpc", ("Connection.write (", "Connection._write_one (", "AgentService._write (")),
    ("packet_out", ("Connection.packet_out (",)),
    ("packet_in_stream", ("AgentService._stream (",)),
    ("execute_other", ("AgentService._execute (", "AgentService._worker (")),
    ("management", ("/runtime/_mgmt.py", "/runtime/p4rt/_management.py")),
    ("grpc_other", ("grpc/",)),
    ("event_loop", ("asyncio/",)),
)
"""An agent's stages: the sans-IO core, building P4Runtime updates, the Write RPC (issuing it and
taking its answer), packet-outs, the stream of packet-ins (gRPC read, protobuf decode, metadata),
the rest of carrying out a batch, the management socket, gRPC and asyncio themselves."""

SWITCH_STAGES: _pyspy.Stages = (
    (
        "map_update_syscalls",
        ("BpfMap.update_batch (", "BpfMap.delete_batch (", "BpfMap.update (", "BpfMap.delete ("),
    ),
    ("idle_sweep", ("EbpfSwitch.expired_entries (", "SwitchCore.poll_idle_timeouts (")),
    ("write", ("SwitchCore.write (", "EbpfSwitch.write_entries (", "plain_table_write (", "write_update (")),
    ("packet_in", ("/softswitch/targets/ebpf/cpuport.py", "split_packet_in (")),
    ("packet_out", ("build_packet_out (", "packet_out (")),
    ("stream", ("StreamChannel (",)),
    ("grpc_other", ("grpc/",)),
)
"""A switch's stages: map updates in the kernel, the idle sweep, the rest of a Write, packet-ins
from the CPU port to the stream, packet-outs, the rest of the stream, gRPC itself."""


def _progress(text: str) -> None:
    print(f"profile_setup: {text}", file=sys.stderr, flush=True)


def _file(name: str) -> str:
    return name.replace(" ", "-") + ".txt"


def shares(samples: dict[str, int]) -> dict[str, Any]:
    """Samples per stage and each stage's share of the samples that were work."""
    work = {k: v for k, v in samples.items() if k != _pyspy.WAITING}
    total = sum(work.values())
    return {
        "samples": samples,
        "work_share": {k: round(v / total, 3) for k, v in work.items() if v} if total else {},
    }


def profile(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    backend = args.backend or default_backend(os.environ)[0]
    p = eg.plan("dysco", f"p{os.getpid() % 100000}", str(logs / "policy.dysco"), backend, backend == "ebpf")
    port = eg.SETUP_BASE + args.middleboxes
    _progress(f"starting {len(p.hosts)} NICs and agents ({backend} back end)")
    with Testbed(p, logs) as tb:
        names = [h.name for h in tb.plan.with_agent()]
        procs = [(f"agent {n}", a, AGENT_STAGES) for n, a in zip(names, tb.agents, strict=True)]
        procs += [(f"switch {n}", s, SWITCH_STAGES) for n, s in zip(names, tb.switches, strict=True)]
        with eg.accepting(tb, logs, port):  # the warm-up's one-time work is not sampled
            recordings = {
                name: _pyspy.Recording(
                    proc.proc.pid, out / _file(name), args.rate, stages, gil=True, nonblocking=True
                )
                for name, proc, stages in procs
            }
            cpu0 = {name: _pyspy.cpu_seconds(proc.proc.pid) for name, proc, _ in procs}
            _progress(f"{args.connects} connects through {args.middleboxes} middleboxes, sampled")
            t0 = time.perf_counter()
            try:
                times = eg.connect_times(tb, logs, args.connects, port)
            finally:
                seconds = time.perf_counter() - t0
                cpu = {name: _pyspy.cpu_seconds(proc.proc.pid) - cpu0[name] for name, proc, _ in procs}
                samples = {name: r.stop() for name, r in recordings.items()}
    result: dict[str, Any] = {
        "benchmark": "profile_setup",
        "parameters": {**vars(args), "out": str(args.out)},
        "connect_median_ms": round(statistics.median(times) * 1e3, 3),
        "seconds": round(seconds, 2),
        "cpu_share_of_wall": {name: round(c / seconds, 3) for name, c in cpu.items()},
        "processes": {name: shares(s) for name, s in samples.items()},
    }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: sudo .venv/bin/python -m bench.profile_setup --connects 300 --middleboxes 3",
    )
    ap.add_argument("--connects", type=int, default=300, help="connections set up while sampling")
    ap.add_argument("--middleboxes", type=int, choices=range(1, eg.MBOXES + 1), default=3,
                    help="middleboxes on the chain (1-4)")  # fmt: skip
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument(
        "--backend", choices=("ebpf", "python"), help="the NICs' back end (default: the testbed's)"
    )
    ap.add_argument("--out", type=Path, help="where samples and logs go (default: a temporary directory)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces, NICs)")
    if _pyspy.py_spy() is None:
        ap.error("needs py-spy (make setup installs it)")
    if args.connects < 1:
        ap.error("--connects must be at least 1")
    run_in_dir("profile_setup", args.out, lambda out: profile(args, out))


if __name__ == "__main__":
    main()
