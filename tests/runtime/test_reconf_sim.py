"""Reconfiguration in the simulation: the real NIC program, faulty network, many seeds."""

from __future__ import annotations

from dysco.runtime._core import SECOND
from dysco.runtime._types import ip_int
from dysco.runtime.sim import MS, Forwarder
from dysco.softswitch.api import Program

from .simworld import SERVER, chain_world, check_clean, respond

LINGER = 30 * SECOND


def test_insert_a_middlebox(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 0)
    new = ip_int("10.0.0.50")
    nh = w.host("new", new, app=Forwarder)
    data = bytes(range(256)) * 40
    conns = [client.connect(ip_int(SERVER), 80, data)]
    w.sim.run_for(3 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [new]))
    w.sim.run_for(LINGER)
    print([n.event + ":" + n.message for n in ch.notes])
    assert conns[0].done and not conns[0].reset
    assert bytes(conns[0].received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert ch.agent.metrics["reconf.completed"] == 1
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    check_clean(w)


def test_delete_the_middlebox(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 1)
    data = bytes(range(256)) * 40
    conns = [client.connect(ip_int(SERVER), 80, data)]
    w.sim.run_for(4 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), []))
    w.sim.run_for(LINGER)
    assert conns[0].done and not conns[0].reset
    assert bytes(conns[0].received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert ch.agent.metrics["reconf.completed"] == 1
    check_clean(w)
