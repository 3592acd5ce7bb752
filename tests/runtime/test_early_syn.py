"""The SYN goes on before its entries' Write is answered, and a SYN-ACK that overtakes the Write
is translated by the agent in software, after the entries are in (issue 19): from the network
(the next hop's answer) and from the host (the server's answer to the SYN its agent handed it).

A real ``dysco switch`` behind :class:`HoldingProxy`, which holds the agent's Writes until the
test lets them go: a target whose writes are slow, as P4Runtime allows any target to be.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from dysco import p4names
from dysco.runtime.core import Config
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Port, Send
from dysco.runtime.core._syn_payload import SynPayload, encode
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.p4rt import AgentService
from dysco.softswitch import load_program
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

from .conftest import ROOT
from .holding_proxy import HoldingProxy, Seen
from .test_p4rt import WAIT_S, _running, _stop, from_port, settings, switch, syn

__all__ = ["switch"]  # the fixture

SESSION = FiveTuple(ip_int("10.0.1.2"), ip_int("10.0.3.2"), 40000, 80)


def _meta_ids(service: AgentService, name: str) -> dict[str, int]:
    info = service.settings.pipeline.p4info
    cpm = next(c for c in info.controller_packet_metadata if c.preamble.name == name)
    return {m.name: m.id for m in cpm.metadata}


def test_an_early_syn_ack_is_translated_after_the_write(
    dysco_program: Program, switch: SwitchProcess
) -> None:
    _behind_proxy(switch, lambda address: settings(dysco_program, address), _run)


def _behind_proxy(switch: SwitchProcess, settings_for: Any, check: Any) -> None:
    """An agent with ``settings_for(address)`` on ``switch`` behind a :class:`HoldingProxy` at
    ``address``; ``check(service, proxy, out_ids, in_ids)`` drives it (packet_out and packet_in
    metadata ids by name)."""

    async def main() -> None:
        async with HoldingProxy(switch.address) as proxy:
            service = AgentService(settings_for(proxy.address))
            out_ids = _meta_ids(service, "packet_out")
            in_ids = _meta_ids(service, "packet_in")
            task = await _running(service)
            try:
                await check(service, proxy, out_ids, in_ids)
            finally:
                proxy.release()
                await _stop(task)

    asyncio.run(main())


async def _run(
    service: AgentService, proxy: HoldingProxy, out_ids: dict[str, int], in_ids: dict[str, int]
) -> None:
    def sent(port: int) -> list[pk.TcpFrame]:
        """Frames the agent sent out of ``port`` (direct packet-outs)."""
        return [
            pk.parse(s.payload)
            for s in proxy.log
            if s.kind == "packet_out"
            and s.fields.get(out_ids["mode"]) == p4names.PacketOutMode.DIRECT
            and s.fields.get(out_ids["port"]) == port
        ]

    start = len(proxy.log)  # what the agent did on its own connection before
    proxy.hold()
    from_port(service, syn(), p4names.HOST_PORT)
    # the SYN leaves for the first middlebox while the Write of its entries is held
    await proxy.wait_for(lambda: bool(sent(p4names.NET_PORT)) and proxy.held == 1, WAIT_S)
    assert not any(s.kind == "write_answered" for s in proxy.log[start:])
    (out,) = sent(p4names.NET_PORT)
    assert out.flags == pk.SYN and out.dst == ip_int("10.0.2.2")

    # the middlebox answers before the Write is in: the NIC has no entry and punts the SYN-ACK
    back = out.five_tuple.reversed()
    synack = pk.TcpFrame(out.eth_dst, out.eth_src, back.src, back.dst, back.sport, back.dport,
                         7000, (out.seq + 1) % 2**32, pk.SYN | pk.ACK).to_bytes()  # fmt: skip
    from_port(service, synack, p4names.NET_PORT)

    def punted() -> bool:
        return any(
            s.kind == "packet_in" and s.fields.get(in_ids["reason"]) == p4names.Reason.SETUP_MISS
            for s in proxy.log
        )

    await proxy.wait_for(punted, WAIT_S)
    assert sent(p4names.HOST_PORT) == [] and proxy.held == 1

    proxy.release()
    await proxy.wait_for(lambda: bool(sent(p4names.HOST_PORT)), WAIT_S)
    (to_host,) = sent(p4names.HOST_PORT)
    assert to_host.five_tuple == SESSION.reversed()
    assert to_host.flags == pk.SYN | pk.ACK and (to_host.seq, to_host.ack) == (7000, 1001)
    kinds = [s.kind for s in proxy.log]
    first_answer = kinds.index("write_answered", start)
    assert _index(proxy.log, to_host) > first_answer, "the SYN-ACK went to the host before the entries"
    assert service.agent.metrics["software.setup_miss"] == 1
    tables = service.status()["tables"]
    assert isinstance(tables, dict)
    assert tables["session_out"]["entries"] == tables["subsession_in"]["entries"] == 1
    assert service.counters["packet_out.early"] == 1


def _index(log: list[Seen], frame: pk.TcpFrame) -> int:
    raw = frame.to_bytes()
    return next(i for i, s in enumerate(log) if s.kind == "packet_out" and s.payload == raw)


# ---- the last hop: the agent hands the SYN to its server, which answers from HOST -------------------

ME, UPSTREAM = ip_int("10.0.3.2"), ip_int("10.0.2.2")
SERVED = FiveTuple(ip_int("10.0.1.2"), ME, 40000, 80)  # the session, as the server sees it
SUBSESSION = FiveTuple(UPSTREAM, ME, 20001, 80)  # the Dysco SYN's, from the previous hop


def _dysco_syn() -> bytes:
    f = pk.TcpFrame(
        b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02", UPSTREAM, ME, SUBSESSION.sport, 80,
        1000, 0, pk.SYN, payload=encode(SynPayload(SERVED, (ME,))),
    )  # fmt: skip
    return f.to_bytes()


def _server_side(program: Program, switch: SwitchProcess, check: Any) -> None:
    _behind_proxy(
        switch,
        lambda address: dataclasses.replace(
            settings(program, address), config=Config(address=ME, name="server")
        ),
        check,
    )


def _sent(proxy: HoldingProxy, out_ids: dict[str, int], port: int, mode: int) -> list[bytes]:
    return [
        s.payload
        for s in proxy.log
        if s.kind == "packet_out"
        and s.fields.get(out_ids["mode"]) == mode
        and s.fields.get(out_ids["port"]) == port
    ]


def test_the_servers_early_syn_ack_is_translated_after_the_write(
    dysco_program: Program, switch: SwitchProcess
) -> None:
    """The right end hands the SYN to its server while the Write of its entries is held; the
    server answers at once, the NIC punts that SYN-ACK (it was told to expect it) and the agent
    sends it on, translated byte for byte as the entry would, once the entries are in."""

    async def check(
        service: AgentService, proxy: HoldingProxy, out_ids: dict[str, int], in_ids: dict[str, int]
    ) -> None:
        assert service.nic.answer_cells == p4names.ANSWER_CELLS
        start = len(proxy.log)
        proxy.hold()
        from_port(service, _dysco_syn(), p4names.NET_PORT)
        expecting = int(p4names.PacketOutMode.EXPECT_ANSWER)
        await proxy.wait_for(
            lambda: bool(_sent(proxy, out_ids, p4names.HOST_PORT, expecting)) and proxy.held == 1, WAIT_S
        )
        assert not any(s.kind == "write_answered" for s in proxy.log[start:])
        (to_server,) = [pk.parse(b) for b in _sent(proxy, out_ids, p4names.HOST_PORT, expecting)]
        assert to_server.five_tuple == SERVED and to_server.flags == pk.SYN and to_server.payload == b""

        answer = pk.TcpFrame(to_server.eth_dst, to_server.eth_src, ME, SERVED.src, 80, SERVED.sport,
                             9000, (to_server.seq + 1) % 2**32, pk.SYN | pk.ACK,
                             options=b"\x02\x04\x05\xb4")  # fmt: skip
        from_port(service, answer.to_bytes(), p4names.HOST_PORT)

        def punted() -> bool:
            return any(
                s.kind == "packet_in"
                and s.fields.get(in_ids["reason"]) == p4names.Reason.SETUP_MISS
                and s.fields.get(in_ids["ingress_port"]) == p4names.HOST_PORT
                for s in proxy.log
            )

        await proxy.wait_for(punted, WAIT_S)
        direct = int(p4names.PacketOutMode.DIRECT)
        assert _sent(proxy, out_ids, p4names.NET_PORT, direct) == [] and proxy.held == 1

        proxy.release()
        await proxy.wait_for(lambda: bool(_sent(proxy, out_ids, p4names.NET_PORT, direct)), WAIT_S)
        (to_prev,) = _sent(proxy, out_ids, p4names.NET_PORT, direct)
        assert to_prev == answer.with_tuple(SUBSESSION.reversed()).to_bytes()
        first_answer = [s.kind for s in proxy.log].index("write_answered", start)
        assert _index(proxy.log, pk.parse(to_prev)) > first_answer, "sent on before the entries"
        assert service.agent.metrics["software.setup_miss_host"] == 1
        assert service.agent.metrics["software.setup_miss_host_passed"] == 0
        assert service.counters["packet_out.early"] == 1
        tables = service.status()["tables"]
        assert isinstance(tables, dict)
        assert tables["session_out"]["entries"] == tables["subsession_in"]["entries"] == 1

        # a SYN-ACK from the host that no session expects leaves as it is: the NIC does not punt it
        stranger = dataclasses.replace(answer, dport=41000).to_bytes()
        punts = service.counters["packet_in"]
        from_port(service, stranger, p4names.HOST_PORT)
        from_port(service, _dysco_syn(), p4names.NET_PORT)  # a retransmission, to know when it passed
        await proxy.wait_for(lambda: service.counters["packet_in"] >= punts + 1, WAIT_S)
        await service.wait_until(lambda: service.agent.metrics["syn.retransmitted"] == 1, WAIT_S)
        assert service.counters["packet_in"] == punts + 1

    _server_side(dysco_program, switch, check)


def test_without_the_register_the_server_gets_its_syn_after_the_write(switch: SwitchProcess) -> None:
    """A program built without answer_expected (as before it): the agent hands the SYN to its
    host only after the Write is answered, as a plain DIRECT packet-out."""
    program = load_program(ROOT / "p4src" / "dysco.p4", defines=["DYSCO_ANSWER_CELLS=0"])

    async def check(
        service: AgentService, proxy: HoldingProxy, out_ids: dict[str, int], in_ids: dict[str, int]
    ) -> None:
        assert service.nic.answer_cells is None
        start = len(proxy.log)
        proxy.hold()
        from_port(service, _dysco_syn(), p4names.NET_PORT)
        await proxy.wait_for(lambda: proxy.held == 1, WAIT_S)
        direct = int(p4names.PacketOutMode.DIRECT)
        assert _sent(proxy, out_ids, p4names.HOST_PORT, direct) == []  # the worker waits for the Write
        proxy.release()
        await proxy.wait_for(lambda: bool(_sent(proxy, out_ids, p4names.HOST_PORT, direct)), WAIT_S)
        (to_server,) = _sent(proxy, out_ids, p4names.HOST_PORT, direct)
        first_answer = [s.kind for s in proxy.log].index("write_answered", start)
        assert _index(proxy.log, pk.parse(to_server)) > first_answer
        assert service.counters["packet_out.early"] == 0
        assert not [s for s in proxy.log if s.kind == "packet_out" and s.fields.get(out_ids["mode"]) == 2]

    _server_side(program, switch, check)


def test_two_syns_of_a_batch_on_one_cell_do_not_both_leave_early(dysco_program: Program) -> None:
    """A cell holds one expectation: the second SYN to the host whose answer falls on a cell the
    batch already took waits for the writes (else the first's answer would leave untranslated)."""
    service = AgentService(settings(dysco_program, "127.0.0.1:1"))  # not run: no connection
    first = pk.parse(_dysco_syn()).with_tuple(SERVED)
    # the ports swapped: another five-tuple, the same sum, so the same cell
    second = first.with_tuple(FiveTuple(SERVED.src, SERVED.dst, SERVED.dport, SERVED.sport))
    cell = service.nic.answer_cell(first.to_bytes())
    assert cell == p4names.answer_cell(ME, SERVED.src, 80, SERVED.sport) is not None
    assert service.nic.answer_cell(second.to_bytes()) == cell
    cells: set[int] = set()
    assert service._cell_free(Send(first.to_bytes(), Port.HOST, early=True), cells)
    assert not service._cell_free(Send(second.to_bytes(), Port.HOST, early=True), cells)
    assert service._cell_free(Send(second.to_bytes(), Port.NET, early=True), cells)  # no cell
    assert service.counters["packet_out.early_cell_taken"] == 1
    other = first.with_tuple(dataclasses.replace(SERVED, sport=40001))
    assert service._cell_free(Send(other.to_bytes(), Port.HOST, early=True), cells)
