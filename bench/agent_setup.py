"""Session setup by one agent on a ``dysco switch`` process over gRPC: latency per hop and rate.

``python -m bench.agent_setup`` prints JSON.  The switch runs p4src/dysco.p4 without interfaces;
host SYNs enter its pipeline on the HOST port as packet-outs in PIPELINE mode, the classifier
punts them, the agent (in this process, asyncio + grpc.aio) installs both directions with one
Write and sends the SYN with its Dysco payload on.

* ``latency``: one SYN at a time; per SYN the time from the packet-in reaching the agent to its
  packet-out, table writes included (the added setup latency of one hop), p50/p99 in ms.  The
  SYN goes on before its Write is answered (an early send, docs/dataplane.md), so the Write's
  round trip is not in it.
* ``switch_round_trip``: for the same SYNs, the injection's packet-out to the packet-in reaching
  the agent: what a punt costs outside the agent (two gRPC crossings and the pipeline).
* ``rate``: ``--sessions`` SYNs injected at once; sessions set up per second, first injection to
  last packet-out.  The switch process (Python) carries the injection, the pipeline and the
  packet-ins too, and shares the two cores with the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench._ports import free_port
from dysco import p4names
from dysco.compiler import compile_text
from dysco.runtime.core import Config
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import ip_int
from dysco.runtime.p4rt import AgentService, Pipeline, Settings
from dysco.softswitch import load_program
from dysco.testbed import SwitchProcess

ROOT = Path(__file__).resolve().parents[1]
POLICY = "middlebox fw { instances 10.0.2.2; }\npolicy web: tcp dst port 80 -> fw\n"
WAIT_S = 120.0


def _syn(src: int, sport: int) -> bytes:
    f = pk.TcpFrame(
        b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01", src, ip_int("10.0.3.2"),
        sport, 80, 1000, 0, pk.SYN, options=b"\x02\x04\x05\xb4",
    )  # fmt: skip
    return f.to_bytes()


def _inject(service: AgentService, frame: bytes) -> None:
    conn = service.connection
    assert conn is not None
    cpm = next(
        c
        for c in service.settings.pipeline.p4info.controller_packet_metadata
        if c.preamble.name == "packet_out"
    )
    ids = {m.name: m.id for m in cpm.metadata}
    conn.packet_out(frame, {ids["port"]: p4names.HOST_PORT, ids["mode"]: int(p4names.PacketOutMode.PIPELINE)})


def _ms(ns: float) -> float:
    return round(ns / 1e6, 3)


async def _measure(address: str, latency_n: int, rate_n: int) -> dict[str, object]:
    program = load_program(str(ROOT / "p4src" / "dysco.p4"))
    settings = Settings(
        p4runtime=address,
        config=Config(address=ip_int("10.0.1.2"), name="bench"),
        pipeline=Pipeline(program.p4info, program.device_config()),
        policies=compile_text(POLICY),
        limits={},  # the rate measurement sends SYNs far above the default punt limit on purpose
    )
    service = AgentService(settings)
    task = asyncio.create_task(service.run(), name="bench-agent")
    try:
        await asyncio.wait_for(service.ready.wait(), WAIT_S)
        service.setup_latencies, service.setup_arrivals = [], []
        src = ip_int("10.1.0.0")
        injected = []
        for i in range(latency_n):
            injected.append(service.now())
            _inject(service, _syn(src, 1024 + i))
            await service.wait_until(lambda n=i + 1: service.counters["packet_out"] >= n, WAIT_S)  # type: ignore[misc]
        lat = sorted(service.setup_latencies)
        trip = sorted(a - t for a, t in zip(service.setup_arrivals, injected, strict=True))
        service.setup_latencies = service.setup_arrivals = None
        base = service.counters["packet_out"]
        src = ip_int("10.2.0.0")
        start = time.perf_counter()
        for i in range(rate_n):
            _inject(service, _syn(src + i // 60000, 1024 + i % 60000))
        # a SYN the agent's intake has no room for is dropped and counted (the host retransmits
        # it in real life); the rate counts the setups done
        dropped0 = service.counters["drops.syn_backlog"]

        def done() -> int:
            return service.counters["packet_out"] - base + service.counters["drops.syn_backlog"] - dropped0

        await service.wait_until(lambda: done() >= rate_n, WAIT_S)
        elapsed = time.perf_counter() - start
        set_up = service.counters["packet_out"] - base
        return {
            "latency": {
                "sessions": latency_n,
                "p50_ms": _ms(statistics.median(lat)),
                "p99_ms": _ms(lat[min(len(lat) - 1, int(len(lat) * 0.99))]),
                "max_ms": _ms(lat[-1]),
                "target_p50_ms": 0.25,  # issue 19
            },
            "switch_round_trip": {
                "what": "the SYN's packet-out (PIPELINE) to its packet-in reaching the agent: gRPC "
                "both ways and the switch's pipeline, no agent work",
                "p50_ms": _ms(statistics.median(trip)),
                "p99_ms": _ms(trip[min(len(trip) - 1, int(len(trip) * 0.99))]),
            },
            "rate": {
                "syns": rate_n,
                "sessions": set_up,
                "dropped_by_syn_backlog": rate_n - set_up,
                "seconds": round(elapsed, 3),
                "sessions_per_s": round(set_up / elapsed),
                "target_sessions_per_s": 5000,  # issue 19
                "writes": service.counters["writes"],
                "updates": service.counters["updates"],
            },
            "agent_sessions": len(service.agent.sessions),
            "errors": list(service.errors),
        }
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-sessions", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=5000, help="sessions for the rate")
    args = parser.parse_args()
    address = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp, SwitchProcess(address, log=Path(tmp) / "switch.log"):
        result = asyncio.run(_measure(address, args.latency_sessions, args.sessions))
    result = {"benchmark": "agent_setup", "target": "dysco switch over gRPC (127.0.0.1)", **result}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
