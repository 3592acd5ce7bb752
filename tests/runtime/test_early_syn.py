"""The SYN goes on before its entries' Write is answered, and a SYN-ACK that overtakes the Write
is translated by the agent in software, after the entries are in (issue 19).

A real ``dysco switch`` behind :class:`HoldingProxy`, which holds the agent's Writes until the
test lets them go: a target whose writes are slow, as P4Runtime allows any target to be.
"""

from __future__ import annotations

import asyncio

from dysco import p4names
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.p4rt import AgentService
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

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
    async def main() -> None:
        async with HoldingProxy(switch.address) as proxy:
            service = AgentService(settings(dysco_program, proxy.address))
            out_ids = _meta_ids(service, "packet_out")
            in_ids = _meta_ids(service, "packet_in")
            task = await _running(service)
            try:
                await _run(service, proxy, out_ids, in_ids)
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
