"""Edits asked at one agent and anchored by another (delegation), in the simulation: the client's
agent asks for a change behind the first middlebox; the middlebox in front of it anchors it, and
the client hears the outcome under its own rid."""

from __future__ import annotations

from dysco.runtime import Notify
from dysco.runtime.core._types import ip_int
from dysco.runtime.sim import MS, Forwarder
from dysco.softswitch.api import Program

from .simworld import SERVER, chain_world, check_clean, respond
from .test_reconf_sim import LINGER


def test_the_client_deletes_the_second_middlebox_through_the_first(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 2)
    data = bytes(range(256)) * 1200
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(10 * MS)
    ch, mb0, mb1 = w.hosts["client"], w.hosts["mb0"], w.hosts["mb1"]
    assert ch.agent is not None and mb0.agent is not None and mb1.agent is not None
    (sid,) = ch.agent.sessions
    out = ch.agent.delegate_reconfiguration(w.sim.now, sid, mb0.address, ip_int(SERVER), [])
    ch.execute(out)
    (started,) = [n for n in out if isinstance(n, Notify)]
    assert started.event == "reconfigure_started" and "delegated to 10.0.0.10" in started.message
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    done = [n for n in ch.notes if n.event in ("reconfigured", "reconfigure_failed")]
    assert [n.event for n in done] == ["reconfigured"], done
    assert started.message.split("rid ")[1].split()[0] == done[0].message.split("rid ")[1].split()[0]
    assert mb0.agent.metrics["reconf.completed"] == 1  # the middlebox anchored it
    assert ch.agent.metrics["reconf.completed"] == 0
    assert ch.agent.metrics["reconf.delegate_done"] == 1
    closed = [n.message for n in mb1.notes if n.event == "session_closed"]
    assert len(closed) == 1 and closed[0].endswith("(reconfigured away)")
    check_clean(w)


def test_the_client_inserts_behind_the_first_middlebox(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 1)
    new = ip_int("10.0.0.50")
    nh = w.host("new", new, app=Forwarder)
    data = bytes(range(256)) * 1200
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(10 * MS)
    ch, mb0 = w.hosts["client"], w.hosts["mb0"]
    assert ch.agent is not None and mb0.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.delegate_reconfiguration(w.sim.now, sid, mb0.address, ip_int(SERVER), [new]))
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert [n.event for n in ch.notes if n.event.startswith("reconfigure")][-1] == "reconfigured"
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    check_clean(w)


def test_a_delegation_that_cannot_be_honoured_fails_at_the_client(dysco_program: Program) -> None:
    w, client, _server = chain_world(dysco_program, 1)
    client.connect(ip_int(SERVER), 80, bytes(300_000))
    w.sim.run_for(10 * MS)
    ch, mb0, sh = w.hosts["client"], w.hosts["mb0"], w.hosts["server"]
    assert ch.agent is not None and mb0.agent is not None and sh.agent is not None
    (sid,) = ch.agent.sessions
    # refused at the client: not an agent of the session, or itself
    for left in (ip_int("10.0.0.99"), ch.address):
        out = ch.agent.delegate_reconfiguration(w.sim.now, sid, left, ip_int(SERVER), [])
        assert [n.event for n in out if isinstance(n, Notify)] == ["reconfigure_refused"]
    # the delegate is busy anchoring its own edit: it refuses, and the client says so
    (msid,) = mb0.agent.sessions
    mb0.execute(mb0.agent.reconfigure(w.sim.now, msid, ip_int(SERVER), [ip_int("10.0.0.60")]))
    ch.execute(ch.agent.delegate_reconfiguration(w.sim.now, sid, mb0.address, ip_int(SERVER), []))
    w.sim.run_for(10 * MS)
    failed = [n for n in ch.notes if n.event == "reconfigure_failed"]
    assert len(failed) == 1 and "refused (BUSY)" in failed[0].message, failed
    assert ch.agent.rc.delegated == {} and mb0.agent.rc.delegates == {}


def test_a_middlebox_that_anchored_an_edit_restarts_and_keeps_the_session(dysco_program: Program) -> None:
    """The middlebox in front of the edit anchors it, so its session's chain changes; every one of
    its entries carries the new chain, and its agent, restarted afterwards, adopts the session."""
    w, client, server = chain_world(dysco_program, 2)
    data = bytes(range(256)) * 1200
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(10 * MS)
    ch, mb0 = w.hosts["client"], w.hosts["mb0"]
    assert ch.agent is not None and mb0.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.delegate_reconfiguration(w.sim.now, sid, mb0.address, ip_int(SERVER), []))
    w.sim.run_for(20 * MS)
    assert [n.event for n in ch.notes if n.event.startswith("reconfigure")][-1] == "reconfigured"
    (before,) = mb0.agent.sessions.values()
    assert before.chain == (ip_int(SERVER),)
    again = mb0.restart_agent()
    assert again.metrics["sessions.adopted"] == 1, dict(again.metrics)
    (after,) = again.sessions.values()
    assert after.chain == before.chain
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    check_clean(w)
