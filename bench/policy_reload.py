"""Policies at scale at a live agent: a full classifier written into a NIC, and a reload of
10,000 policies, timed.

``python -m bench.policy_reload`` prints JSON.  An agent (in this process, as ``dysco agent``
runs it) drives a ``dysco switch`` process over gRPC; its policy file is ``--count`` generated
policies that seldom overlap (bench.compile_policies' "disjoint" file), so the 4,096-entry
classifier fills up and the rest goes to software.  Reported:

* ``first_load_s``: from the agent's start to ready (pipeline pushed, classifier written);
* ``reload``: ``dysco ctl policies reload`` of another such file, as the management socket runs
  it: compile, then the catch-all entry, the old entries out, the new in, the catch-all out;
  ``total_s`` is until the new set is in force, ``writes_s`` the Writes alone;
* ``ebpf_write_s`` (as root with clang): the same classifier entries inserted into the ebpf back
  end in process (its map updates), for comparison with the python back end's Write.

Target (issue 21): 4,096 classifier entries into a NIC in under a second on both back ends.

    python -m bench.policy_reload [--count 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._ports import free_port
from bench.compile_policies import _file
from dysco.compiler import Options, compile_text
from dysco.compiler.generate import disjoint_predicates
from dysco.compiler.p4rt import classifier_capacity
from dysco.runtime._nic import Nic
from dysco.runtime.core import Config
from dysco.runtime.core._types import ip_int
from dysco.runtime.p4rt import AgentService, Pipeline, Settings
from dysco.softswitch import load_program
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0
WAIT_S = 600.0


def _progress(text: str) -> None:
    print(f"policy_reload: {text}", file=sys.stderr, flush=True)


async def _agent(prog: Program, address: str, first: Path, second: Path) -> dict[str, Any]:
    capacity = classifier_capacity(prog.p4info)
    compiled = compile_text(first.read_text(), str(first), Options(capacity=capacity))
    settings = Settings(
        p4runtime=address,
        config=Config(address=ip_int("10.0.1.2"), name="bench"),
        pipeline=Pipeline(prog.p4info, prog.device_config()),
        policies=compiled,
        policies_file=str(first),
    )
    service = AgentService(settings)
    t0 = time.perf_counter()
    task = asyncio.create_task(service.run(), name="bench-agent")
    try:
        await asyncio.wait_for(service.ready.wait(), WAIT_S)
        first_load = time.perf_counter() - t0
        _progress(f"first load: {len(compiled.entries)} entries, ready in {first_load:.2f} s; reloading")
        t0 = time.perf_counter()
        done = await service.reload_policies({"file": str(second)})
        total = time.perf_counter() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "capacity": capacity,
        "entries": len(compiled.entries),
        "first_load_s": round(first_load, 3),
        "reload": {**done, "total_s": round(total, 3), "writes_s": done["seconds"]},
    }


def _ebpf_write(prog: Program, first: Path) -> dict[str, Any]:
    from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig, unavailable

    why = unavailable()
    if why is not None:
        return {"not_run": why}
    nic = Nic(prog.p4info)
    compiled = compile_text(first.read_text(), str(first), Options(capacity=classifier_capacity(prog.p4info)))
    entries = nic.classifier_entries(compiled.entries)
    with VethRig([1, 2]) as rig:
        sw = EbpfSwitch(prog, ports={p: rig.switch_if(p) for p in rig.ports}, netns=rig.name, rig=rig)
        try:
            t0 = time.perf_counter()
            errors = [e for e in sw.write_entries([("insert", e) for e in entries]) if e is not None]
            seconds = time.perf_counter() - t0
        finally:
            sw.close()
    if errors:
        raise SystemExit(f"policy_reload: the ebpf back end refused {len(errors)} entries: {errors[0]}")
    return {"entries": len(entries), "seconds": round(seconds, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="example: .venv/bin/python -m bench.policy_reload"
    )
    ap.add_argument("--count", type=int, default=10_000, help="policies per file (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.count < 1:
        ap.error("--count must be at least 1")
    prog = load_program(ROOT / "p4src" / "dysco.p4")
    with tempfile.TemporaryDirectory(prefix="dysco-reload-") as tmp:
        first, second = Path(tmp) / "first.dysco", Path(tmp) / "second.dysco"
        first.write_text(_file(disjoint_predicates(random.Random(args.seed), args.count)))
        second.write_text(_file(disjoint_predicates(random.Random(args.seed + 1), args.count)))
        address = f"127.0.0.1:{free_port()}"
        _progress(f"{args.count} policies per file; dysco switch (python back end, no ports) at {address}")
        with SwitchProcess(address, log=Path(tmp) / "switch.log"):
            python = asyncio.run(_agent(prog, address, first, second))
        _progress("the same entries into the ebpf back end, in process")
        ebpf = _ebpf_write(prog, first)
    result = {
        "benchmark": "policy_reload",
        "parameters": vars(args),
        "python_backend_over_grpc": python,
        "ebpf_write_s": ebpf,
        "target_s": TARGET_S,
        "meets_target": python["first_load_s"] < TARGET_S and ebpf.get("seconds", 0.0) < TARGET_S,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
