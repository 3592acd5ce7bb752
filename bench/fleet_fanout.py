"""A policy write to in force at many agents, and a ``dysco fleet replace`` to its summary,
through a real etcd: ``--agents`` fleet clients (:class:`FleetAgent`, each with its own etcd
connection, lease and watches) in this process, each compiling the set it is given as an agent
does before its reload (the NIC writes are left out: bench.policy_reload times those) and
claiming, carrying out (:func:`carry_out`, on no sessions: an agent's own moves are timed by
tests/e2e/test_fleet.py) and answering every command.

``python -m bench.fleet_fanout`` prints JSON: per write, the seconds from the write to the last
agent's report of it in force (``dysco fleet policies put`` measures the same), p50 and max; per
replace, the seconds from writing the command to the summary with every agent's outcome
(``dysco fleet replace`` measures the same, without its process's start), p50 and max; and
three runs of ``dysco fleet replace`` itself, from starting it to its exit with the summary.  One
process and one event loop for every agent, on a shared machine: an upper bound for agents that
each have their own CPU.

    python -m bench.fleet_fanout [--agents 100] [--writes 5] [--replaces 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dysco.compiler import compile_text
from dysco.runtime.fleet import FleetAgent, FleetSettings, Layout, parse_url
from dysco.runtime.fleet._cli import _put_and_wait
from dysco.runtime.fleet._commands import Command, Outcome, carry_out, new_command
from dysco.runtime.fleet._issue import _issue
from dysco.testbed._etcd import EtcdProcess


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _connected(f: FleetAgent) -> Callable[[], bool]:
    return lambda: f.connected


async def _run(url: str, agents: int, writes: int, replaces: int) -> dict[str, Any]:
    async def apply(text: str, source: str) -> object:
        compiled = await asyncio.to_thread(compile_text, text, source)
        return {"policies": len(compiled.source.policies)}

    def execute(name: str, address: str) -> Callable[[Command], Any]:
        async def reconfigure(args: Any) -> Any:
            raise AssertionError("no session to reconfigure")

        async def run(cmd: Command) -> Outcome:
            return await carry_out(cmd, name, address, [], reconfigure)

        return run

    def member(i: int) -> FleetAgent:
        name, address = f"a{i:03d}", f"10.1.{i // 250}.{i % 250 + 1}"
        settings = FleetSettings(parse_url(url), name, address)
        return FleetAgent(
            settings, apply, lambda: 0, logging.getLogger("bench.fleet"), execute(name, address)
        )

    fleet = [member(i) for i in range(agents)]
    etcd = {"etcd": url, "etcd_ca": None, "etcd_cert": None, "etcd_key": None, "etcd_user": None,
            "etcd_password_file": None}  # fmt: skip
    tasks = [asyncio.create_task(f.run(), name=f.settings.name) for f in fleet]
    try:
        for f in fleet:
            await f.wait_until(_connected(f), 60)
        seconds = []
        for w in range(writes):
            with tempfile.NamedTemporaryFile("w", suffix=".dysco") as tmp:
                text = f"middlebox fw {{ instances 10.0.2.2; }}\npolicy p{w}: tcp dst port {9000 + w} -> fw\n"
                Path(tmp.name).write_text(text)
                args = argparse.Namespace(**etcd, no_wait=False, timeout=60.0)
                done = await _put_and_wait(args, Layout(), Layout().key("policies", "all"), text)
            assert len(done["in_force"]) == agents, done
            seconds.append(done["seconds"])
        replaced = []
        for _ in range(replaces):
            args = argparse.Namespace(**etcd)
            result = await _issue(
                args, Layout(), new_command("replace", "10.0.2.2", "10.0.4.2", timeout=30.0)
            )
            assert len(result["agents"]) == agents and not result["no_answer"], result
            replaced.append(result["seconds"])
        cli = []  # the command as an operator runs it: from its start to its summary printed
        for _ in range(replaces and 3):
            t0 = time.monotonic()
            argv = [
                sys.executable,
                "-m",
                "dysco",
                "fleet",
                "replace",
                "10.0.2.2",
                "10.0.4.2",
                "--json",
                "--etcd",
                url,
            ]
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            assert proc.returncode == 0 and len(json.loads(out)["agents"]) == agents, out
            cli.append(round(time.monotonic() - t0, 3))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "agents": agents,
        "write_to_in_force_s": seconds,
        "p50_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
        "replace_to_summary_s": replaced,
        "replace_p50_s": round(statistics.median(replaced), 3) if replaced else None,
        "replace_max_s": round(max(replaced), 3) if replaced else None,
        "cli_replace_s": cli,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_fanout", description=__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--replaces", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "etcd.log"
        with EtcdProcess(Path(tmp) / "etcd", _port(), _port(), log=log) as etcd:
            t0 = time.monotonic()
            result = asyncio.run(_run(etcd.url, args.agents, args.writes, args.replaces))
    result["total_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
