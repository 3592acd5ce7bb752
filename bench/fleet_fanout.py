"""A policy write to in force at many agents, through a real etcd: ``--agents`` fleet clients
(:class:`FleetAgent`, each with its own etcd connection, lease and watch) in this process, each
compiling the set it is given as an agent does before its reload (the NIC writes are left out:
bench.policy_reload times those), and ``dysco fleet policies put``'s wait for their reports.

``python -m bench.fleet_fanout`` prints JSON: per write, the seconds from the write to the last
agent's report of it in force (``dysco fleet policies put`` measures the same), p50 and max.
One process and one event loop for every agent, on a shared machine: an upper bound for agents
that each have their own CPU.

    python -m bench.fleet_fanout [--agents 100] [--writes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dysco.compiler import compile_text
from dysco.runtime.fleet import FleetAgent, FleetSettings, Layout, parse_url
from dysco.runtime.fleet._cli import _put_and_wait
from dysco.testbed._etcd import EtcdProcess


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _connected(f: FleetAgent) -> Callable[[], bool]:
    return lambda: f.connected


async def _run(url: str, agents: int, writes: int) -> dict[str, Any]:
    async def apply(text: str, source: str) -> object:
        compiled = await asyncio.to_thread(compile_text, text, source)
        return {"policies": len(compiled.source.policies)}

    fleet = [
        FleetAgent(
            FleetSettings(parse_url(url), f"a{i:03d}", f"10.1.{i // 250}.{i % 250 + 1}"),
            apply,
            lambda: 0,
            logging.getLogger("bench.fleet"),
        )
        for i in range(agents)
    ]
    tasks = [asyncio.create_task(f.run(), name=f.settings.name) for f in fleet]
    try:
        for f in fleet:
            await f.wait_until(_connected(f), 60)
        seconds = []
        for w in range(writes):
            with tempfile.NamedTemporaryFile("w", suffix=".dysco") as tmp:
                text = f"middlebox fw {{ instances 10.0.2.2; }}\npolicy p{w}: tcp dst port {9000 + w} -> fw\n"
                Path(tmp.name).write_text(text)
                args = argparse.Namespace(etcd=url, no_wait=False, timeout=60.0)
                done = await _put_and_wait(args, Layout(), Layout().key("policies", "all"), text)
            assert len(done["in_force"]) == agents, done
            seconds.append(done["seconds"])
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "agents": agents,
        "write_to_in_force_s": seconds,
        "p50_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_fanout", description=__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--writes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "etcd.log"
        with EtcdProcess(Path(tmp) / "etcd", _port(), _port(), log=log) as etcd:
            t0 = time.monotonic()
            result = asyncio.run(_run(etcd.url, args.agents, args.writes))
    result["total_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
