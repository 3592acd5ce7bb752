"""A restarted agent rebuilds its sessions from its NIC's entries (issue 20), in the simulation:
the NIC keeps the entries (and their notes, the entries' metadata) while the agent's core is
replaced by a new one; the new core adopts what the entries describe, removes what it cannot
use, and reconfigures and closes the sessions it adopted."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from random import Random
from typing import Any

from dysco.runtime.core import Mapping, Table
from dysco.runtime.core import _note as note
from dysco.runtime.core._session import Role, Session
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.sim import MS, Conn, Forwarder, Nat, World
from dysco.softswitch.api import Program

from .simworld import CLIENT, SERVER, chain_world, check_clean, check_exchange, feed, request

SECOND = 1000 * MS
LINGER = 30 * SECOND
NEW = "10.0.0.50"


def shape(s: Session) -> tuple[object, ...]:
    """What must survive the restart of a session."""
    subs = tuple((x.tuple, x.local_port, x.fsm.state) if x is not None else None for x in (s.up, s.down))
    maps = sorted((t.value, str(k), str(m.target), m.seq_delta, m.ack_delta, d.value)
                  for (t, k), (m, d) in s.mappings.items())  # fmt: skip
    return (s.sid, s.role, s.session, s.chain, s.instances, s.macs, s.fsm.state, s.emitted, subs,
            s.delta_up, s.delta_down, maps)  # fmt: skip


def streaming(program: Program, until: int, mbs: int = 1, app: Any = None) -> tuple[World, object, object]:
    """client -> mb0 .. -> server (and a spare middlebox NEW), a session carrying data both ways;
    ``app``: the first middlebox's application (Linux-like forwarding by default)."""
    w, client, server = chain_world(program, mbs, mb_app=lambda i: app if app and i == 0 else Forwarder)
    w.host("new", ip_int(NEW), app=Forwarder)
    server.listen_stream(80)
    conn = client.connect(ip_int(SERVER), 80, b"", stream=True)
    feed(w, conn, bytes(range(100)) * 10, 10 * MS, until)
    while not server.conns:
        w.sim.run_for(MS)
    (srv,) = server.conns.values()
    feed(w, srv, bytes(range(50)) * 10, 10 * MS, until)
    w.sim.run_for(200 * MS)
    return w, conn, srv


def test_the_note_round_trips() -> None:
    from dysco.runtime.core._fsm import SESSION_TRANSITIONS, Machine, SessionState
    from dysco.runtime.core._types import prefixed

    fsm = Machine("s", SessionState.ESTABLISHED, SESSION_TRANSITIONS, prefixed("t", "t", "t"))
    t = FiveTuple(ip_int(CLIENT), ip_int(SERVER), 40000, 80)
    chain = tuple(ip_int(f"10.0.1.{i}") for i in range(16))
    s = Session(7, Role.LEFT, t, fsm, 0, chain, instances=(chain[3], chain[15]), macs=(b"\1" * 6, b"\2" * 6))
    data = note.encode(s)
    assert len(data) == note.MAX_SIZE == 96
    assert note.decode(data) == note.Note(Role.LEFT, t, chain, (chain[3], chain[15]), s.macs)
    s.macs, s.role, s.chain, s.instances = None, Role.MIDDLE, (), ()
    assert note.decode(note.encode(s)) == note.Note(Role.MIDDLE, t, (), (), None)
    for bad in (b"", b"x" * 40, data[:-1], data + b"\0", b"Dy\x02" + data[3:]):
        assert note.decode(bad) is None, bad


def test_restarted_agents_rebuild_their_sessions_then_reconfigure_and_close_them(
    dysco_program: Program,
) -> None:
    until = 3 * SECOND
    w, conn, srv = streaming(dysco_program, until)
    before = {}
    for name in ("client", "mb0", "server"):
        a = w.hosts[name].agent
        assert a is not None
        (s,) = a.sessions.values()
        before[name] = shape(s)
    # the left end, the middle and the right end restart; their NICs go on translating
    agents = {name: w.hosts[name].restart_agent() for name in ("client", "mb0", "server")}
    for name, a in agents.items():
        (s,) = a.sessions.values()
        assert shape(s) == before[name], name
        assert a.metrics["sessions.adopted"] == 1 and a.metrics["entries.orphans_removed"] == 0
        assert any(n.event == "sessions_adopted" for n in w.hosts[name].notes)
    w.sim.run_for(300 * MS)
    # the restarted left anchor replaces the middlebox that restarted too
    ch = w.hosts["client"]
    (sid,) = agents["client"].sessions
    ch.execute(agents["client"].reconfigure(w.sim.now, sid, ip_int(SERVER), [ip_int(NEW)]))
    while agents["client"].metrics["reconf.completed"] == 0 and w.sim.now < until:
        w.sim.run_for(MS)
    assert agents["client"].metrics["reconf.completed"] == 1, [n.message for n in ch.notes]
    # and again, once the old path is gone: the chain it rebuilds is the new one
    w.sim.run_for(100 * MS)
    (s,) = agents["client"].sessions.values()
    assert s.chain == (ip_int(NEW), ip_int(SERVER))
    again = shape(s)
    agents["client"] = w.hosts["client"].restart_agent()
    (s,) = agents["client"].sessions.values()
    assert shape(s) == again
    w.sim.run_for(until + LINGER - w.sim.now)
    assert agents["server"].metrics["reconf.completed"] == 1  # its right anchor's part
    assert conn.done and srv.done and not conn.reset and not srv.reset  # type: ignore[attr-defined]
    assert bytes(srv.received) == conn.data and bytes(conn.received) == srv.data  # type: ignore[attr-defined]
    assert len(conn.data) > 100_000  # type: ignore[attr-defined]
    closed = [n.message for n in w.hosts["mb0"].notes if n.event == "session_closed"]
    assert closed and closed[-1].endswith("(reconfigured away)"), closed
    nh = w.hosts["new"]
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    check_clean(w)


def test_entries_it_cannot_use_are_removed_and_counted(dysco_program: Program) -> None:
    w, conn, srv = streaming(dysco_program, 2 * SECOND)
    h = w.hosts["mb0"]
    assert h.switch is not None and h.nic is not None and h.agent is not None
    ours = h.nic_mappings()
    assert len(ours) == 4 and all(note.decode(m.note) is not None for m in ours)
    # a stale entry of another session (a predecessor's, with no note) and a session whose note
    # one of its entries lost (a write from before notes); and a drop entry
    stray = Mapping(Table.IN, FiveTuple(ip_int("10.0.0.77"), h.address, 1234, 80), FiveTuple(1, 2, 3, 4), 99)
    half = Mapping(Table.OUT, FiveTuple(ip_int("10.0.0.78"), h.address, 1235, 80), FiveTuple(5, 6, 7, 8), 98)
    other = replace(half, table=Table.IN, note=ours[0].note)
    drop = Mapping(Table.OUT, FiveTuple(ip_int("10.0.0.79"), h.address, 1236, 80), None, 0, drop=True)
    for m in (stray, half, other, drop):
        h.switch.write_entry("insert", h.nic.entry(m))
    a = w.hosts["mb0"].restart_agent()
    assert a.metrics["sessions.adopted"] == 1
    assert a.metrics["entries.orphans_removed"] == 4
    assert a.metrics["adopt.refused.no_note"] == 1 and a.metrics["adopt.refused.notes_differ"] == 1
    assert a.metrics["adopt.refused.no_session"] == 1
    assert sorted(str(m.key) for m in h.nic_mappings()) == sorted(str(m.key) for m in ours)
    w.sim.run_for(2 * SECOND + LINGER)
    assert conn.done and srv.done and not conn.reset and not srv.reset  # type: ignore[attr-defined]
    assert bytes(srv.received) == conn.data and bytes(conn.received) == srv.data  # type: ignore[attr-defined]
    check_clean(w)


def test_a_session_half_way_through_its_setup_is_not_adopted(dysco_program: Program) -> None:
    # the middlebox's SYN never comes back out: its session is PENDING, the left end's SYN_SENT
    # entry punts; a restart of both removes their entries, and the host's retransmitted SYN
    # sets the session up anew
    w, client, server = chain_world(dysco_program, 1)
    mb = w.hosts["mb0"]
    app = mb.app
    mb.app = None  # the middlebox application is not there yet
    conn = client.connect(ip_int(SERVER), 80, b"hello")
    w.sim.run_for(20 * MS)
    assert mb.agent is not None and [s.fsm.state.value for s in mb.agent.sessions.values()] == ["pending"]
    a = w.hosts["mb0"].restart_agent()
    c = w.hosts["client"].restart_agent()
    assert a.metrics["sessions.adopted"] == 0 and a.metrics["adopt.refused.shape"] == 1
    assert c.metrics["adopt.refused.not_established"] == 1
    assert mb.session_entries() == 0 and w.hosts["client"].session_entries() == 0
    mb.app = app
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == b"200 " + b"olleh" * 2
    assert [bytes(x.received) for x in server.conns.values()] == [b"hello"]
    check_clean(w)


def test_the_note_layout_is_the_one_docs_protocol_md_shows() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = doc.split("## 6. The session note", 1)[1]
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| ") and "`" in line]
    shown = [(int(o), int(n), f.strip(" `")) for o, n, f in rows[:-1]]
    assert shown == note.HEAD.describe()
    assert rows[-1][0].strip() == str(note.HEAD.size) and rows[-1][2].strip() == "`chain`"


def test_a_chain_of_two_with_a_nat_restarted_everywhere(dysco_program: Program) -> None:
    # the first middlebox translates the source (its agent's session and emitted five-tuples
    # differ), the second follows it: every agent restarts, the session goes on and closes
    until = 2 * SECOND
    w, conn, srv = streaming(dysco_program, until, 2, Nat)
    names = ("client", "mb0", "mb1", "server")
    before = {}
    for name in names:
        a = w.hosts[name].agent
        assert a is not None
        (s,) = a.sessions.values()
        before[name] = shape(s)
    (s,) = w.hosts["mb0"].agent.sessions.values()  # type: ignore[union-attr]
    assert s.emitted is not None and s.emitted != s.session
    for name in names:
        a = w.hosts[name].restart_agent()
        (s,) = a.sessions.values()
        assert shape(s) == before[name], name
    w.sim.run_for(until + LINGER - w.sim.now)
    assert conn.done and srv.done and not conn.reset and not srv.reset  # type: ignore[attr-defined]
    assert bytes(srv.received) == conn.data and bytes(conn.received) == srv.data  # type: ignore[attr-defined]
    assert all(w.hosts[n].agent.metrics["sessions.closed"] == 1 for n in names)  # type: ignore[union-attr]
    check_clean(w)


def _random_restarts(program: Program, seed: int, seen: Counter[str]) -> None:
    """12 request/response sessions through two middleboxes over a lossy network, 6 restarts of
    random agents at random moments; what the restarted agents counted goes to ``seen``."""
    rng = Random(seed)
    w, client, server = chain_world(program, 2, seed=seed, idle_timeout=5 * SECOND)
    w.net.faults.loss = 0.02
    conns: list[Conn] = []
    for i in range(12):
        w.sim.at(i * 7 * MS, lambda i=i: conns.append(client.connect(ip_int(SERVER), 80, request(i))))

    def restart(name: str) -> None:
        a = w.hosts[name].restart_agent()
        seen.update({k: v for k, v in a.metrics.items() if k.startswith(("sessions.", "adopt."))})

    for _ in range(6):
        name = rng.choice(("client", "mb0", "mb1", "server"))
        w.sim.at(rng.randrange(0, 120 * MS), lambda name=name: restart(name))
    w.sim.run_for(60 * SECOND)
    check_exchange(conns, server)
    check_clean(w)


def test_agents_restarting_at_random_lose_no_session(dysco_program: Program) -> None:
    """Seeded: agents restart in a session's setup, mid-transfer or while it closes; every
    exchange completes byte for byte without a reset and nothing is left anywhere.  Sessions
    caught in their setup or their closing are not adopted (their hosts' retransmissions carry
    them through); the others are."""
    seen: Counter[str] = Counter()
    for seed in range(8):
        _random_restarts(dysco_program, seed, seen)
    assert seen["sessions.adopted"] > 0 and seen["adopt.refused.not_established"] > 0, seen
