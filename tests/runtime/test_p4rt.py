"""The P4Runtime adapter against a real ``dysco switch`` process on 127.0.0.1 (no root needed).

The switch has no interfaces: the test injects the host's SYN with a packet-out in PIPELINE mode
as if it came in on the HOST port; the classifier punts it to the agent, which installs both
directions over gRPC and sends the SYN with its Dysco payload on (the switch drops it: no port).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco import p4names
from dysco.compiler import compile_text
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.runtime.core import Config
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._auth import KeyRing
from dysco.runtime.core._events import Mapping, Table
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.p4rt import AgentService, Pipeline, Settings, _limits
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

WAIT_S = 20.0
POLICY = "middlebox fw { instances 10.0.2.2; }\npolicy web: tcp dst port 80 -> fw\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    with SwitchProcess(f"127.0.0.1:{free_port()}", log=tmp_path / "switch.log") as sw:
        yield sw


def settings(program: Program, address: str) -> Settings:
    return Settings(
        p4runtime=address,
        config=Config(address=ip_int("10.0.1.2"), name="client"),
        pipeline=Pipeline(program.p4info, program.device_config()),
        policies=compile_text(POLICY),
    )


def syn(sport: int = 40000) -> bytes:
    f = pk.TcpFrame(
        b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01", ip_int("10.0.1.2"), ip_int("10.0.3.2"),
        sport, 80, 1000, 0, pk.SYN,
    )  # fmt: skip
    return f.to_bytes()


def from_host(service: AgentService, frame: bytes) -> None:
    """The frame enters the NIC's pipeline on the HOST port."""
    from_port(service, frame, p4names.HOST_PORT)


def from_port(service: AgentService, frame: bytes, port: int) -> None:
    """The frame enters the NIC's pipeline on ``port``."""
    conn = service.connection
    assert conn is not None
    out = {m.name: m.id for m in _packet_out_meta(service)}
    conn.packet_out(frame, {out["port"]: port, out["mode"]: int(p4names.PacketOutMode.PIPELINE)})


def _packet_out_meta(service: AgentService) -> list[p4runtime_pb2.PacketMetadata]:
    cpm = next(
        c
        for c in service.settings.pipeline.p4info.controller_packet_metadata
        if c.preamble.name == "packet_out"
    )
    return list(cpm.metadata)


async def _running(service: AgentService) -> asyncio.Task[None]:
    task = asyncio.create_task(service.run(), name="test-agent")
    await asyncio.wait_for(service.ready.wait(), WAIT_S)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_session_set_up_over_grpc(dysco_program: Program, switch: SwitchProcess) -> None:
    async def main() -> None:
        service = AgentService(settings(dysco_program, switch.address))
        task = await _running(service)
        try:
            from_host(service, syn())
            await service.wait_until(lambda: service.counters["packet_out"] >= 1, WAIT_S)
            [row] = service.sessions()
            assert row["five_tuple"] == {
                "src": "10.0.1.2",
                "dst": "10.0.3.2",
                "sport": 40000,
                "dport": 80,
                "proto": 6,
            }
            assert row["chain"] == ["10.0.2.2", "10.0.3.2"]
            status = service.status()
            assert status["tables"] == {
                "session_out": {
                    "entries": 1,
                    "size": service.nic.table_sizes[next(iter(service.nic.table_sizes))],
                },
                "subsession_in": {
                    "entries": 1,
                    "size": service.nic.table_sizes[list(service.nic.table_sizes)[1]],
                },
            }
            assert status["adapter"]["updates"] >= 2  # type: ignore[index]
            # the retransmitted SYN is sent again without new entries
            from_host(service, syn())
            await service.wait_until(lambda: service.counters["packet_out"] >= 2, WAIT_S)
            assert service.agent.metrics["syn.retransmitted"] == 1
            assert not service.errors
        finally:
            await _stop(task)

    asyncio.run(main())


def test_a_syn_the_classifier_leaves_to_software_gets_its_chain_from_the_agents_evaluator(
    dysco_program: Program, switch: SwitchProcess
) -> None:
    """A classifier of capacity 1 holds one software entry; the real agent's evaluator picks the
    policy (ssh's chain, not web's) and sets the session up; a SYN no policy holds goes on."""
    from dysco.compiler import Options

    text = POLICY + "middlebox ids { instances 10.0.4.4; }\npolicy ssh: tcp dst port 22 -> ids\n"
    policies = compile_text(text, "software.dysco", Options(capacity=1))
    assert [e.action for e in policies.entries] == ["software"]

    async def main() -> None:
        base = settings(dysco_program, switch.address)
        service = AgentService(dataclasses.replace(base, policies=policies))
        task = await _running(service)
        try:
            f = pk.parse(syn())
            from_host(service, dataclasses.replace(f, dport=22).to_bytes())
            await service.wait_until(lambda: service.counters["packet_out"] >= 1, WAIT_S)
            [row] = service.sessions()
            assert row["chain"] == ["10.0.4.4", "10.0.3.2"]
            from_host(service, dataclasses.replace(f, sport=40001, dport=23).to_bytes())  # no policy
            await service.wait_until(lambda: service.counters["packet_out"] >= 2, WAIT_S)
            assert len(service.sessions()) == 1
            assert service.agent.metrics["errors.no_software_classifier"] == 0
            assert not service.errors
        finally:
            await _stop(task)

    asyncio.run(main())


def test_refused_write_fails_the_session_closed(dysco_program: Program, switch: SwitchProcess) -> None:
    """An entry the target refuses (here: one exists already) fails the session closed: no state
    is left in the core.  Its SYN left before the Write was answered (an early send) and is
    counted as such; whatever answers it finds no session here."""

    async def main() -> None:
        service = AgentService(settings(dysco_program, switch.address))
        task = await _running(service)
        try:
            conn = service.connection
            assert conn is not None
            # the return direction of the first subsession the agent will open (its first port)
            back = FiveTuple(ip_int("10.0.2.2"), ip_int("10.0.1.2"), 80, service.agent.config.port_low)
            squatter = service.nic.entry(Mapping(Table.IN, back, back, 7))
            assert await conn.write([conn.table_update("insert", squatter)]) == [None]
            from_host(service, syn())
            await service.wait_until(lambda: service.counters["packet_out.early_write_failed"] >= 1, WAIT_S)
            assert service.counters["packet_out"] == service.counters["packet_out.early"] == 1
            assert service.counters["errors.write.ALREADY_EXISTS"] == 1
            assert service.agent.empty()
            assert [e["kind"] for e in service.errors][:1] == ["write_failed"]
        finally:
            await _stop(task)

    asyncio.run(main())


def test_a_big_write_reports_every_updates_result_in_order(
    dysco_program: Program, switch: SwitchProcess
) -> None:
    """450 updates, every other one refused (225): the client splits them into Writes
    the server's error details fit in, and each update gets its own result, in order."""

    async def main() -> None:
        service = AgentService(settings(dysco_program, switch.address))
        task = await _running(service)
        try:
            conn = service.connection
            assert conn is not None

            def update(i: int) -> p4runtime_pb2.Update:
                key = FiveTuple(ip_int("10.9.0.1"), ip_int("10.9.0.2"), 1000 + i, 80)
                return conn.table_update("insert", service.nic.entry(Mapping(Table.IN, key, key, 9)))

            assert await conn.write([update(i) for i in range(0, 450, 2)]) == [None] * 225
            results = await conn.write([update(i) for i in range(450)])
            assert [r is not None and r.code == "ALREADY_EXISTS" for r in results] == [
                i % 2 == 0 for i in range(450)
            ]
        finally:
            await _stop(task)

    asyncio.run(main())


def test_reconnects_after_the_target_restarts(dysco_program: Program, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"

    async def main() -> None:
        with SwitchProcess(address, log=tmp_path / "first.log") as first:
            service = AgentService(settings(dysco_program, first.address))
            task = await _running(service)
        try:
            await service.wait_until(lambda: not service.connected, WAIT_S)
            assert service.counters["reconnects"] >= 1
            with SwitchProcess(address, log=tmp_path / "second.log"):
                await service.wait_until(lambda: service.connected, WAIT_S)
                from_host(service, syn())  # the new target got the pipeline and the classifier again
                await service.wait_until(lambda: service.counters["packet_out"] >= 1, WAIT_S)
                assert len(service.sessions()) == 1
        finally:
            await _stop(task)

    asyncio.run(main())


def test_agent_writes_punt_limits_and_reports_drops(dysco_program: Program, switch: SwitchProcess) -> None:
    """The agent configures the punt meter when it connects; SYNs above the limit are dropped in
    the NIC, never reach the agent, and show up in the status."""
    limit = _limits.Limit(1, 2)
    n = 8

    async def main() -> None:
        s = dataclasses.replace(
            settings(dysco_program, switch.address),
            limits=_limits.with_overrides([(p4names.Reason.POLICY_SYN, limit)]),
        )
        service = AgentService(s)
        task = await _running(service)
        try:
            conn = service.connection
            assert conn is not None
            info = dysco_program.p4info
            meter_id = next(m.preamble.id for m in info.meters if m.preamble.name == p4names.PUNT_METER)
            wildcard = p4runtime_pb2.Entity()
            wildcard.meter_entry.meter_id = meter_id
            cells = {e.meter_entry.index.index: e.meter_entry.config for e in await conn.read([wildcard])}
            assert cells[p4names.Reason.POLICY_SYN].cir == 1 and cells[p4names.Reason.POLICY_SYN].pburst == 2
            assert cells[p4names.Reason.CONTROL].cir == _limits.DEFAULT_LIMITS[p4names.Reason.CONTROL].rate  # type: ignore[union-attr]
            # every cell of the peer meter has the Dysco-SYN limit
            wildcard.meter_entry.meter_id = next(
                m.preamble.id for m in info.meters if m.preamble.name == p4names.PEER_METER
            )
            peer_cells = [e.meter_entry.config for e in await conn.read([wildcard])]
            dysco_syn = _limits.DEFAULT_LIMITS[p4names.Reason.DYSCO_SYN]
            assert dysco_syn is not None and len(peer_cells) == p4names.PEER_CELLS
            assert {(c.cir, c.pburst) for c in peer_cells} == {(dysco_syn.rate, dysco_syn.burst)}
            started = asyncio.get_running_loop().time()
            for i in range(n):
                from_host(service, syn(41000 + i))
            deadline = started + WAIT_S
            while True:  # the drops are counted in the NIC, which tells nobody: poll the status
                status = await service.status_with_drops()
                row = status["limits"]["punts"]["policy_syn"]  # type: ignore[index]
                if (
                    row["dropped"] + len(service.sessions()) >= n
                    or asyncio.get_running_loop().time() > deadline
                ):
                    break
                await asyncio.sleep(0.05)
            elapsed = asyncio.get_running_loop().time() - started
            punted = len(service.sessions())
            assert row == {"rate_pps": 1, "burst": 2, "dropped": n - punted}
            assert 1 <= punted <= limit.burst + int(elapsed) + 1, (punted, elapsed)
            assert status["limits"]["max_sessions"] == s.config.max_sessions  # type: ignore[index]
        finally:
            await _stop(task)

    asyncio.run(main())


def test_agent_with_keys_refuses_unsealed_dysco_syns_and_takes_sealed_ones(
    dysco_program: Program, switch: SwitchProcess
) -> None:
    """Over a real switch: with a key ring, an unsealed Dysco SYN is refused and counted; one
    sealed with the domain's key at wall-clock time (the agent's stamps are wall clock, its
    events monotonic) sets the session up."""
    ring = KeyRing({4: bytes(range(32))}, 4)
    me, upstream = ip_int("10.0.1.2"), ip_int("10.0.0.9")
    session = FiveTuple(ip_int("10.0.0.1"), ip_int("10.0.3.2"), 40001, 80)

    def dysco_syn(payload: bytes, sport: int) -> bytes:
        f = pk.TcpFrame(
            b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02", upstream, me, sport, 80, 7, 0, pk.SYN,
            payload=payload,
        )  # fmt: skip
        return f.to_bytes()

    async def main() -> None:
        s = dataclasses.replace(
            settings(dysco_program, switch.address),
            config=Config(address=me, name="mbox", keys=ring),
        )
        service = AgentService(s)
        task = await _running(service)
        try:
            p = wire.SynPayload(session, (me, session.dst))
            from_port(service, dysco_syn(wire.encode(p), 20001), p4names.NET_PORT)
            await service.wait_until(lambda: service.counters["packet_in"] >= 1, WAIT_S)
            assert service.agent.metrics["drops.bad_payload.missing_tag"] == 1
            assert not service.sessions()
            sealed = wire.encode(p, ring, sender=upstream, receiver=me, now=time.time_ns())
            from_port(service, dysco_syn(sealed, 20002), p4names.NET_PORT)
            await service.wait_until(lambda: len(service.sessions()) == 1, WAIT_S)
            assert sum(v for k, v in service.agent.metrics.items() if k.startswith("drops.")) == 1
            # the sealed SYN's sender now has a cell of the peer meter of its own, in the NIC
            assert service.status()["limits"]["known_peers"]["agents"] == ["10.0.0.9"]  # type: ignore[index]
            conn = service.connection
            assert conn is not None
            table = p4runtime_pb2.Entity()
            table.table_entry.table_id = service.nic.peer_table or 0
            (entry,) = [e.table_entry for e in await conn.read([table])]
            assert int.from_bytes(entry.match[0].exact.value, "big") == upstream
            assert int.from_bytes(entry.action.action.params[0].value or b"\0", "big") == 0
        finally:
            await _stop(task)

    asyncio.run(main())
