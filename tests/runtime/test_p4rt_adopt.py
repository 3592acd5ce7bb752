"""An agent that starts while its ``dysco switch`` runs the pipeline already takes the switch's
session entries over (issue 20): it rebuilds the sessions they describe, from their actions and
the note each carries as its P4Runtime metadata, deletes the entries it cannot use, and tears
the adopted sessions down as its own.  A real switch process on 127.0.0.1 (no root needed)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc

from dysco import p4names
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.runtime.core import Table
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Mapping
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._types import FiveTuple, ip_int, prefixed
from dysco.runtime.p4rt import AgentService
from dysco.runtime.p4rt._adoption import session_entries
from dysco.runtime.p4rt._client import Connection
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

from .test_p4rt import WAIT_S, _running, _stop, from_host, from_port, settings, switch, syn

__all__ = ["switch"]  # the fixture

CLIENT, SERVER, FW = ip_int("10.0.1.2"), ip_int("10.0.3.2"), ip_int("10.0.2.2")
MACS = (b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01")


def segment(t: FiveTuple, flags: int, seq: int = 1001, ack: int = 5001) -> bytes:
    return pk.TcpFrame(*MACS, t.src, t.dst, t.sport, t.dport, seq, ack, flags).to_bytes()


def agent(program: Program, address: str) -> AgentService:
    s = settings(program, address)
    return AgentService(dataclasses.replace(s, config=dataclasses.replace(s.config, linger=200_000_000)))


def test_a_new_agent_adopts_the_sessions_in_its_switch_and_tears_them_down(
    dysco_program: Program, switch: SwitchProcess
) -> None:
    session = FiveTuple(CLIENT, SERVER, 40000, 80)
    stray = Mapping(Table.IN, FiveTuple(FW, CLIENT, 80, 12345), session.reversed(), 77)

    async def main() -> None:
        first = agent(dysco_program, switch.address)
        task = await _running(first)
        try:
            from_host(first, syn())  # the client's SYN: a session through fw
            await first.wait_until(lambda: first.counters["packet_out"] >= 1, WAIT_S)
            from_host(first, segment(session, pk.ACK))  # its first ACK: established
            await first.wait_until(lambda: first.counters["packet_out"] >= 2, WAIT_S)
            (s,) = first.agent.sessions.values()
            assert s.fsm.state is SessionState.ESTABLISHED and s.down is not None
            down = s.down.tuple
            conn = first.connection
            assert conn is not None  # an entry of a session nobody knows (no note): a leftover
            assert await conn.write([conn.table_update("insert", first.nic.entry(stray))]) == [None]
            before = first.sessions()
        finally:
            await _stop(task)  # the agent goes; the switch keeps its tables

        second = agent(dysco_program, switch.address)
        task = await _running(second)
        try:
            rows = second.sessions()  # once: a session's age moves between two calls
            assert rows == [{**before[0], "age_s": rows[0]["age_s"]}]
            metrics = second.status()["core"]
            assert isinstance(metrics, dict)
            assert metrics["sessions.adopted"] == 1 and metrics["entries.orphans_removed"] == 1
            conn = second.connection
            assert conn is not None
            assert sorted(str(m.key) for m in await session_entries(conn, second.nic)) == sorted(
                [str(session), str(down.reversed())]
            )
            # both FINs and their acknowledgments pass the agent: the session closes
            from_host(second, segment(session, pk.FIN | pk.ACK))
            from_port(second, segment(down.reversed(), pk.FIN | pk.ACK, 5001, 1002), p4names.NET_PORT)
            (s,) = second.agent.sessions.values()
            await second.wait_until(lambda: s.fsm.state is SessionState.CLOSING, WAIT_S)
            from_host(second, segment(session, pk.ACK, 1002, 5002))
            from_port(second, segment(down.reversed(), pk.ACK, 5002, 1002), p4names.NET_PORT)
            await second.wait_until(lambda: not second.agent.sessions, WAIT_S)
            assert second.agent.metrics["sessions.closed"] == 1
            await second.wait_until(lambda: second.agent.empty(), WAIT_S)
            assert await session_entries(conn, second.nic) == []
            assert not second.errors
        finally:
            await _stop(task)

    asyncio.run(main())


class _BigReads(p4runtime_pb2_grpc.P4RuntimeServicer):  # type: ignore[misc]
    """A P4Runtime server that makes anyone primary and answers every Read with one reply larger
    than gRPC's default receive limit (4 MB), as a full session table's is."""

    ENTRIES = 60
    EACH = 100_000

    async def StreamChannel(self, requests: Any, context: Any) -> Any:
        async for req in requests:
            if req.WhichOneof("update") == "arbitration":
                reply = p4runtime_pb2.StreamMessageResponse()
                reply.arbitration.CopyFrom(req.arbitration)
                yield reply

    async def Read(self, request: Any, context: Any) -> Any:
        reply = p4runtime_pb2.ReadResponse()
        for i in range(self.ENTRIES):
            reply.entities.add().table_entry.CopyFrom(
                p4runtime_pb2.TableEntry(table_id=1, metadata=bytes([i]) * self.EACH)
            )
        yield reply


def test_the_agent_reads_a_reply_of_full_tables_back() -> None:
    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 << 20)])
        p4runtime_pb2_grpc.add_P4RuntimeServicer_to_server(_BigReads(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            log = prefixed("test", "test", "p4rt")
            async with Connection(f"127.0.0.1:{port}", 0, 1, log) as conn:
                found = await asyncio.wait_for(conn.read([p4runtime_pb2.Entity()]), WAIT_S)
            assert len(found) == _BigReads.ENTRIES
            assert sum(len(e.table_entry.metadata) for e in found) > 4 << 20
        finally:
            await server.stop(None)

    asyncio.run(main())
