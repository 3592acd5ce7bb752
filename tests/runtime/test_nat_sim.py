"""Reconfiguration across an agentless NAT (issue 23): the client's agent sits behind a NAT that
keeps state for the session's TCP flows only (runtime/sim/_natbox.py, a model of Linux
conntrack's MASQUERADE), in front of the first middlebox.  Control messages between neighbours go
in band on the subsession; SWITCH and DONE between the anchors go in band along the old path."""

from __future__ import annotations

import pytest

from dysco import p4names
from dysco.compiler import compile_text
from dysco.runtime.core import SECOND
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _inband as ib
from dysco.runtime.core._auth import KeyRing
from dysco.runtime.core._types import ip_int
from dysco.runtime.sim import MS, Conn, Forwarder, Host, NatBox, TcpStack, World
from dysco.softswitch.api import Program

from .simworld import feed

CLIENT, NAT, MB, NEW, SERVER = "10.0.1.2", "10.0.0.2", "10.0.0.10", "10.0.0.50", "10.0.0.100"
LINGER = 30 * SECOND


def nat_world(program: Program, seed: int, keyed: bool) -> tuple[World, TcpStack, TcpStack, NatBox]:
    """client (private) -> NAT (no agent) -> mb -> server; a spare middlebox ``new``."""
    cfg = {"keys": KeyRing({1: b"k" * 32}, 1)} if keyed else {}
    w = World(program, seed)
    policies = compile_text(f"middlebox mb {{ instances {MB}; }}\npolicy web: tcp dst port 80 -> mb\n")
    nat = NatBox(w.net, ip_int(NAT), {ip_int(CLIENT)})
    w.net.attach(ip_int(NAT), nat.receive)
    client = TcpStack(w.sim, ip_int(CLIENT), lambda f: None)
    c = w.host("client", ip_int(CLIENT), policies=policies, via=ip_int(NAT), private=True,
               app=lambda h: client, **cfg)  # fmt: skip
    client.emit = c.emit
    w.host("mb", ip_int(MB), app=Forwarder, **cfg)
    w.host("new", ip_int(NEW), app=Forwarder, **cfg)
    server = TcpStack(w.sim, ip_int(SERVER), lambda f: None)
    s = w.host("server", ip_int(SERVER), app=lambda h: server, **cfg)
    server.emit = s.emit
    server.listen_stream(80)
    return w, client, server, nat


def _live(w: World, client: TcpStack, server: TcpStack, until: int) -> tuple[Conn, Conn, Host, int]:
    """A session carrying data both ways until ``until``."""
    conn = client.connect(ip_int(SERVER), 80, b"", stream=True)
    feed(w, conn, bytes(range(256)) * 4, 2 * MS, until)
    while not server.conns:
        w.sim.run_for(MS)
    (srv,) = server.conns.values()
    feed(w, srv, bytes(range(100)) * 5, 3 * MS, until)
    w.sim.run_for(20 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    return conn, srv, ch, sid


def _exact(conn: Conn, srv: Conn) -> None:
    assert conn.done and not conn.reset and srv.done and not srv.reset
    assert bytes(srv.received) == bytes(conn.data) and bytes(conn.received) == bytes(srv.data)


def _nothing_lost_at_the(nat: NatBox) -> None:
    """Nothing came unasked, and the NAT refused no segment of the session's: only in-band
    segments whose numbers an agent had to guess (it tries the other half next time)."""
    assert nat.counts["unsolicited"] == 0, nat.counts
    guesses = 0
    for frame in nat.invalid:
        ib.parse(frame)  # raises for a segment of the session
        guesses += 1
    assert guesses == nat.counts["invalid"] < nat.counts["ignored"], nat.counts


EDITS = {
    "insert": (MB, [NEW]),
    "delete": (SERVER, []),
    "replace": (SERVER, [NEW]),
}


@pytest.mark.parametrize("keyed", [False, True], ids=["no-keys", "keys"])
@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_behind_a_nat(dysco_program: Program, edit: str, keyed: bool) -> None:
    w, client, server, nat = nat_world(dysco_program, 1, keyed)
    conn, srv, ch, sid = _live(w, client, server, 400 * MS)
    assert ch.agent is not None
    right, hops = EDITS[edit]
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(right), [ip_int(h) for h in hops]))
    w.sim.run_for(LINGER)
    notes = [n.event for n in ch.notes]
    assert ch.agent.metrics["reconf.completed"] == 1, notes
    _exact(conn, srv)
    _nothing_lost_at_the(nat)
    assert ch.agent.metrics["control.inband_received"] > 0
    assert w.leftovers() == {}


def test_every_edit_in_turn_on_one_session(dysco_program: Program) -> None:
    w, client, server, nat = nat_world(dysco_program, 2, True)
    conn, srv, ch, sid = _live(w, client, server, 3 * SECOND)
    assert ch.agent is not None
    for n, (right, hops) in enumerate(EDITS.values(), 1):
        ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(right), [ip_int(h) for h in hops]))
        while ch.agent.metrics["reconf.completed"] < n and w.sim.now < 30 * SECOND:
            w.sim.run_for(10 * MS)
        assert ch.agent.metrics["reconf.completed"] == n, [x.event for x in ch.notes]
    w.sim.run_for(LINGER)
    _exact(conn, srv)
    _nothing_lost_at_the(nat)
    assert w.leftovers() == {}


def test_the_nat_drops_what_comes_unasked(dysco_program: Program) -> None:
    """The model: a datagram to the control port from outside, with no mapping, is dropped."""
    w, _client, _server, nat = nat_world(dysco_program, 3, False)
    w.net.send(ip_int(MB), cw.udp_frame(ip_int(MB), ip_int(NAT), p4names.CONTROL_UDP_PORT, b"x"))
    w.net.send(ip_int(MB), cw.udp_frame(ip_int(MB), ip_int(CLIENT), p4names.CONTROL_UDP_PORT, b"x"))
    w.sim.run_for(10 * MS)
    assert nat.counts["unsolicited"] == 1 and w.net.stats.unroutable == 1
