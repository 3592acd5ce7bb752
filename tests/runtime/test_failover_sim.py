"""Replacing a dead middlebox (issue 23) in the simulation: the middlebox's host dies mid-transfer
(every frame to or from it is dropped), and the anchors on both sides of it set the new path up
without it (``Agent.reconfigure(..., failed=DEAD)``, runtime/core/reconf/_failover.py)."""

from __future__ import annotations

import random
from functools import partial

import pytest

from dysco.runtime import Notify
from dysco.runtime.core import SECOND
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core._types import ip_int
from dysco.runtime.core.reconf import LOCK_TIMEOUT
from dysco.runtime.sim import MS, Faults, Forwarder, Host, Inserter, Nat, World
from dysco.softswitch.api import Program

from .simworld import SERVER, chain_world, feed, respond
from .test_reconf_sim import LINGER, _ctl_kind

NEW = ip_int("10.0.0.50")


def kill(w: World, name: str) -> None:
    """``name``'s host is gone: nothing reaches it, nothing it sends arrives."""
    dead = w.hosts[name].address
    for h in w.hosts.values():
        if h.address != dead:
            w.net.partition(dead, h.address)


def live_leftovers(w: World, dead: str) -> dict[str, str]:
    """What is left at every host but the dead one (its state died with it)."""
    return {name: what for name, what in w.leftovers().items() if name != dead}


def outcomes(notes: list[Notify]) -> list[str]:
    return [f"{n.event}: {n.message}" for n in notes if n.event in ("reconfigured", "reconfigure_failed")]


def test_a_dead_middlebox_is_replaced_and_the_transfer_completes(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 1)
    nh = w.host("new", NEW, app=Forwarder)
    data = bytes(range(256)) * 4000  # 1 MB: still under way when the middlebox dies
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(20 * MS)
    ch, mb0, sh = w.hosts["client"], w.hosts["mb0"], w.hosts["server"]
    assert ch.agent is not None and sh.agent is not None
    (sid,) = ch.agent.sessions
    assert not conn.done and 0 < len(server.conns[next(iter(server.conns))].received) < len(data)
    kill(w, "mb0")
    # the ordinary replacement needs the dead box: its lock request crosses the old path
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW]))
    w.sim.run_for(10_000 * MS)
    (failed,) = outcomes(ch.notes)
    assert failed.startswith("reconfigure_failed") and "lock refused: no answer via 10.0.0.10" in failed
    # around it: the client's agent and the server's lock and switch without it
    out = ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failed=mb0.address)
    ch.execute(out)
    (started,) = [n.message for n in out if isinstance(n, Notify)]
    assert started.endswith("(around the dead 10.0.0.10)")
    w.sim.run_for(LINGER)
    assert outcomes(ch.notes)[-1].startswith("reconfigured"), outcomes(ch.notes)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    assert ch.agent.metrics["reconf.failed_over"] == 1 and sh.agent.metrics["reconf.failed_over"] == 1
    assert [n.event for n in sh.notes if n.event == "reconfigured"] == ["reconfigured"]
    assert live_leftovers(w, "mb0") == {}


def test_a_dead_middlebox_is_deleted(dysco_program: Program) -> None:
    """No new middlebox: the new path runs from anchor to anchor."""
    w, client, server = chain_world(dysco_program, 1)
    data = bytes(range(256)) * 4000
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(20 * MS)
    ch, mb0 = w.hosts["client"], w.hosts["mb0"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    kill(w, "mb0")
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [], failed=mb0.address))
    w.sim.run_for(LINGER)
    assert [o.split(":")[0] for o in outcomes(ch.notes)] == ["reconfigured"], outcomes(ch.notes)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert live_leftovers(w, "mb0") == {}


def test_the_second_of_two_middleboxes_dies_and_the_client_asks(dysco_program: Program) -> None:
    """Asked at the client's agent, the edit is delegated to the first middlebox's agent, the dead
    box's left neighbour, which anchors it around the dead box."""
    w, client, server = chain_world(dysco_program, 2)
    nh = w.host("new", NEW, app=Forwarder)
    data = bytes(range(256)) * 4000
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(20 * MS)
    ch, mb0, mb1 = w.hosts["client"], w.hosts["mb0"], w.hosts["mb1"]
    assert ch.agent is not None and mb0.agent is not None
    (sid,) = ch.agent.sessions
    kill(w, "mb1")
    ch.execute(
        ch.agent.delegate_reconfiguration(
            w.sim.now, sid, mb0.address, ip_int(SERVER), [NEW], failed=mb1.address
        )
    )
    w.sim.run_for(LINGER)
    assert [o.split(":")[0] for o in outcomes(ch.notes)] == ["reconfigured"], outcomes(ch.notes)
    assert mb0.agent.metrics["reconf.failed_over"] == 1
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    assert live_leftovers(w, "mb1") == {}


def test_the_first_of_two_middleboxes_dies_and_the_second_is_the_right_anchor(dysco_program: Program) -> None:
    """The right anchor is a middlebox's agent: its session's left side moves to the new path."""
    w, client, server = chain_world(dysco_program, 2)
    nh = w.host("new", NEW, app=Forwarder)
    data = bytes(range(256)) * 4000
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(20 * MS)
    ch, mb0, mb1 = w.hosts["client"], w.hosts["mb0"], w.hosts["mb1"]
    assert ch.agent is not None and mb1.agent is not None
    (sid,) = ch.agent.sessions
    kill(w, "mb0")
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, mb1.address, [NEW], failed=mb0.address))
    w.sim.run_for(LINGER)
    assert [o.split(":")[0] for o in outcomes(ch.notes)] == ["reconfigured"], outcomes(ch.notes)
    assert mb1.agent.metrics["reconf.failed_over"] == 1
    assert ch.agent.sessions == {} and ch.agent.metrics["reconf.completed"] == 1
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    assert live_leftovers(w, "mb0") == {}


def test_an_ordinary_replacement_with_failover_goes_around_a_silent_middlebox(dysco_program: Program) -> None:
    """Automatic detection: the ordinary replacement's REQUEST_LOCK to the dead middlebox is never
    answered (control timeouts), and with ``failover`` the left anchor goes on around it, under the
    same rid; a live middlebox is replaced the ordinary way."""
    w, client, server = chain_world(dysco_program, 1)
    nh = w.host("new", NEW, app=Forwarder)
    data = bytes(range(256)) * 4000
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(20 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    kill(w, "mb0")
    out = ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failover=True)
    ch.execute(out)
    (started,) = [n.message for n in out if isinstance(n, Notify)]
    w.sim.run_for(LINGER)
    events = [(n.event, n.message) for n in ch.notes if n.event.startswith("reconfigure")]
    rid = started.split("rid ")[1]
    assert [e for e, _ in events] == ["reconfigure_started", "reconfigure_failover", "reconfigured"], events
    assert events[1][1].endswith(f"rid {rid}: 10.0.0.10 did not answer: around it")
    assert events[2][1].endswith(f"rid {rid}")
    assert ch.agent.metrics["reconf.failover"] == 1 and ch.agent.metrics["reconf.failed_over"] == 1
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    assert live_leftovers(w, "mb0") == {}
    # the same with a live middlebox: no failover
    w2, client2, _ = chain_world(dysco_program, 1)
    w2.host("new", NEW, app=Forwarder)
    conn2 = client2.connect(ip_int(SERVER), 80, data)
    w2.sim.run_for(20 * MS)
    c2 = w2.hosts["client"]
    assert c2.agent is not None
    (sid2,) = c2.agent.sessions
    c2.execute(c2.agent.reconfigure(w2.sim.now, sid2, ip_int(SERVER), [NEW], failover=True))
    w2.sim.run_for(LINGER)
    assert [n.event for n in c2.notes if n.event.startswith("reconfigure")] == [
        "reconfigure_started",
        "reconfigured",
    ]
    assert c2.agent.metrics["reconf.failover"] == 0 and c2.agent.metrics["reconf.two_path_packets"] > 0
    assert conn2.done and bytes(conn2.received) == respond(data)


def test_a_delegated_failover(dysco_program: Program) -> None:
    """Asked at the client's agent for the second middlebox, which died: the first one's agent
    anchors the ordinary replacement, hears nothing from it, and goes around it."""
    w, client, _server = chain_world(dysco_program, 2)
    w.host("new", NEW, app=Forwarder)
    data = bytes(range(256)) * 4000
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(20 * MS)
    ch, mb0 = w.hosts["client"], w.hosts["mb0"]
    assert ch.agent is not None and mb0.agent is not None
    (sid,) = ch.agent.sessions
    kill(w, "mb1")
    ch.execute(
        ch.agent.delegate_reconfiguration(w.sim.now, sid, mb0.address, ip_int(SERVER), [NEW], failover=True)
    )
    w.sim.run_for(LINGER)
    assert [o.split(":")[0] for o in outcomes(ch.notes)] == ["reconfigured"], outcomes(ch.notes)
    assert mb0.agent.metrics["reconf.failover"] == 1
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert live_leftovers(w, "mb1") == {}


def test_every_teardown_around_is_lost(dysco_program: Program) -> None:
    """The left anchor's TEARDOWN never reaches the right anchor: the left anchor completes when it
    gives it up, the right anchor by itself after ``LOCK_TIMEOUT``; meanwhile the session runs on
    the new path, forwarded by the anchors' agents."""
    w, client, server = chain_world(dysco_program, 1)
    w.host("new", NEW, app=Forwarder)
    w.net.faults.drop_if = lambda frame: _ctl_kind(frame) is cw.Kind.TEARDOWN
    server.listen_stream(80)
    conn = client.connect(ip_int(SERVER), 80, b"", stream=True)
    until = 45 * SECOND  # longer than LOCK_TIMEOUT after the failover
    feed(w, conn, bytes(range(100)) * 10, 10 * MS, until)
    while not server.conns:
        w.sim.run_for(MS)
    (srv,) = server.conns.values()
    feed(w, srv, bytes(range(50)) * 10, 10 * MS, until)
    w.sim.run_for(100 * MS)
    ch, mb0, sh = w.hosts["client"], w.hosts["mb0"], w.hosts["server"]
    assert ch.agent is not None and sh.agent is not None
    (sid,) = ch.agent.sessions
    (ssid,) = sh.agent.sessions
    kill(w, "mb0")
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failed=mb0.address))
    w.sim.run_for(200 * MS)
    assert ch.agent.rc.anchors[sid].phase.value == sh.agent.rc.anchors[ssid].phase.value == "failed_over"
    w.sim.run_for(10 * SECOND)  # the left anchor gave its TEARDOWN up and completed
    assert sid not in ch.agent.rc.anchors and sh.agent.rc.anchors[ssid].phase.value == "failed_over"
    assert [o.split(":")[0] for o in outcomes(ch.notes)] == ["reconfigured"], outcomes(ch.notes)
    w.sim.run_for(LOCK_TIMEOUT)
    assert sh.agent.metrics["reconf.around_self_completed"] == 1 and ssid not in sh.agent.rc.anchors
    w.sim.run_for(LINGER)
    assert conn.done and srv.done and not conn.reset and not srv.reset
    assert bytes(srv.received) == bytes(conn.data) and bytes(conn.received) == bytes(srv.data)
    assert ch.agent.metrics["reconf.failover_packets"] > 0 and sh.agent.metrics["reconf.failover_packets"] > 0
    assert live_leftovers(w, "mb0") == {}


def test_a_session_that_ends_while_failed_over(dysco_program: Program) -> None:
    """The session ends before the TEARDOWN is answered: it had moved, so the reconfiguration is
    reported done, and nothing is reset or left."""
    w, client, server = chain_world(dysco_program, 1)
    w.host("new", NEW, app=Forwarder)
    w.net.faults.drop_if = lambda frame: _ctl_kind(frame) is cw.Kind.TEARDOWN
    data = bytes(range(256)) * 400
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(10 * MS)
    ch, mb0 = w.hosts["client"], w.hosts["mb0"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    kill(w, "mb0")
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failed=mb0.address))
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    (done,) = outcomes(ch.notes)
    assert done.startswith("reconfigured") and done.endswith("(the session ended on the new path)"), done
    w.sim.run_for(LOCK_TIMEOUT)
    assert live_leftovers(w, "mb0") == {}


def test_refusals_around_a_dead_hop(dysco_program: Program) -> None:
    """Every refusal names its reason: a dead hop that is not the left anchor's right neighbour, a
    right anchor that is not the hop after it, a right anchor whose left neighbour is another."""
    w, client, _server = chain_world(dysco_program, 2)
    client.connect(ip_int(SERVER), 80, bytes(300_000))
    w.sim.run_for(10 * MS)
    ch, mb0, mb1 = w.hosts["client"], w.hosts["mb0"], w.hosts["mb1"]
    assert ch.agent is not None

    def refused(right: int, dead: int, at: Host = ch) -> str:
        assert at.agent is not None
        (sid,) = at.agent.sessions
        out = at.agent.reconfigure(w.sim.now, sid, right, [NEW], failed=dead)
        (n,) = [n for n in out if isinstance(n, Notify)]
        assert n.event == "reconfigure_refused"
        return n.message

    assert "10.0.0.11 is not this agent's right neighbour on the session (10.0.0.10 is)" in refused(
        ip_int(SERVER), mb1.address
    )
    assert "the right anchor is the hop after it, 10.0.0.11" in refused(ip_int(SERVER), mb0.address)
    assert "10.0.0.100 is the session's right end" in refused(ip_int(SERVER), ip_int(SERVER), mb1)
    (sid,) = ch.agent.sessions
    out = ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failover=True)
    (n,) = [n for n in out if isinstance(n, Notify)]
    assert n.event == "reconfigure_refused"
    assert "no failover around 10.0.0.10: around 10.0.0.10 the right anchor is the hop after it" in n.message
    out = ch.agent.reconfigure(w.sim.now, sid, mb1.address, [mb0.address], failover=True)
    assert "no failover around 10.0.0.10: it is one of the new middleboxes" in str(out)
    assert ch.agent.rc.empty() and mb1.agent is not None and mb1.agent.rc.empty()


def test_a_right_anchor_whose_neighbour_is_not_the_dead_hop_refuses(dysco_program: Program) -> None:
    """The left anchor's view of the chain may be stale: the right anchor checks its own left
    neighbour and refuses with NOT_NEIGHBOUR, and the left anchor's failure says so."""
    w, client, _server = chain_world(dysco_program, 2)
    client.connect(ip_int(SERVER), 80, bytes(300_000))
    w.sim.run_for(10 * MS)
    ch, mb0, mb1 = w.hosts["client"], w.hosts["mb0"], w.hosts["mb1"]
    assert ch.agent is not None and mb1.agent is not None
    (sid,) = ch.agent.sessions
    s = ch.agent.sessions[sid]
    s.chain = (mb0.address, ip_int(SERVER))  # stale: as if mb1 had not been inserted behind mb0
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failed=mb0.address))
    w.sim.run_for(100 * MS)
    (failed,) = outcomes(ch.notes)
    assert failed.startswith("reconfigure_failed")
    assert (
        "lock refused (NOT_NEIGHBOUR): at 10.0.0.100 the session's left neighbour is not 10.0.0.10" in failed
    )
    w.sim.run_for(11 * SECOND)  # past the answers' cache
    assert all(h.agent is not None and h.agent.rc.empty() for h in w.hosts.values())


def test_a_dead_middlebox_with_a_delta_leaves_the_ends_out_of_step(dysco_program: Program) -> None:
    """A middlebox that changed the stream's length (it inserted bytes, and declared the delta to
    its agent) dies: its delta died with it, the reconfiguration around it succeeds as far as the
    agents can tell, and the ends are out of step by that delta (docs/operations.md)."""
    text = b"X-Inserted-By: mb0\r\n"
    w, client, server = chain_world(dysco_program, 1, mb_app=lambda i: partial(Inserter, text=text))
    w.host("new", NEW, app=Forwarder)
    data = bytes(range(256)) * 40
    conn = client.connect(ip_int(SERVER), 80, data)
    ch, mb0 = w.hosts["client"], w.hosts["mb0"]
    assert ch.agent is not None and mb0.agent is not None
    while not conn.received and w.sim.now < 50 * MS:  # until the first bytes went through mb0
        w.sim.run_for(MS // 10)
    assert mb0.agent.metrics["delta.declared"] >= 1
    (sid,) = ch.agent.sessions
    kill(w, "mb0")
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failed=mb0.address))
    w.sim.run_for(LINGER)
    assert [o.split(":")[0] for o in outcomes(ch.notes)] == ["reconfigured"], outcomes(ch.notes)
    assert not (conn.done and not conn.reset and bytes(conn.received) == text + respond(data))
    # the client acknowledges the server's bytes plus the inserted ones: bytes never sent
    assert all(c.bad_acks for c in server.conns.values()) and not conn.done


def test_a_dead_nat_cannot_be_gone_around(dysco_program: Program) -> None:
    """A NAT's state is its mapping: the agents right of it know the session by the five-tuple
    the NAT made, which the left anchor cannot name, so the right anchor refuses (NO_SESSION) and
    the left anchor's failure says so (docs/operations.md, stateful middleboxes)."""
    w, client, _server = chain_world(dysco_program, 1, mb_app=lambda i: Nat)
    client.connect(ip_int(SERVER), 80, bytes(300_000))
    w.sim.run_for(20 * MS)
    ch, mb0, sh = w.hosts["client"], w.hosts["mb0"], w.hosts["server"]
    assert ch.agent is not None and sh.agent is not None
    (sid,) = ch.agent.sessions
    (s,) = sh.agent.sessions.values()
    assert s.session.src == mb0.address  # the server's agent knows the NAT's five-tuple
    kill(w, "mb0")
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [NEW], failed=mb0.address))
    w.sim.run_for(100 * MS)
    (failed,) = outcomes(ch.notes)
    assert "lock refused (NO_SESSION): 10.0.0.100 does not know the session 10.0.0.1:" in failed, failed
    w.sim.run_for(11 * SECOND)  # past the answers' cache
    assert ch.agent.rc.empty() and sh.agent.rc.empty()


FAULT_SEEDS = 40


@pytest.mark.parametrize("first", range(0, FAULT_SEEDS, 10), ids=lambda f: f"seeds{f}-{f + 9}")
def test_dead_middleboxes_on_a_faulty_network(dysco_program: Program, first: int) -> None:
    """Seeded worlds: 1-3 middleboxes, loss, duplication and reordering; one middlebox dies at a
    random moment of a transfer both ways and is replaced (or deleted) around; the transfer
    completes byte-exact and nothing is left at the live hosts."""
    failed = []
    for seed in range(first, first + 10):
        rng = random.Random(seed)
        n = rng.randint(1, 3)
        w, client, server = chain_world(dysco_program, n, seed=seed)
        w.net.faults = Faults(1 * MS, rng.choice([0, 2 * MS]), rng.choice([0.0, 0.01, 0.03]), 0.02)
        w.host("new", NEW, app=Forwarder)
        data = bytes(rng.randrange(256) for _ in range(256)) * rng.randint(100, 400)
        conn = client.connect(ip_int(SERVER), 80, data)
        while not any(c.received for c in server.conns.values()):  # established end to end
            w.sim.run_for(1 * MS)
        w.sim.run_for(rng.randint(0, 5) * MS)
        dead = rng.randrange(n)
        mbs = [w.hosts[f"mb{i}"].address for i in range(n)]
        left = w.hosts["client" if dead == 0 else f"mb{dead - 1}"]
        right = ip_int(SERVER) if dead == n - 1 else mbs[dead + 1]
        kill(w, f"mb{dead}")
        assert left.agent is not None
        sid = next(iter(left.agent.sessions), None)
        if sid is None:
            failed.append(f"seed {seed}: the session is gone at {left.name} before the death")
            continue
        hops = [NEW] if rng.random() < 0.7 else []
        out = left.agent.reconfigure(w.sim.now, sid, right, hops, failed=mbs[dead])
        left.execute(out)
        refused = [n.message for n in out if isinstance(n, Notify) and n.event == "reconfigure_refused"]
        if refused:
            failed.append(f"seed {seed}: refused: {refused}")
            continue
        until = w.sim.now + 300 * SECOND  # the sim's TCP crawls under reordering: kilobytes a second
        while not conn.done and w.sim.now < until:
            w.sim.run_for(1 * SECOND)
        w.sim.run_for(LINGER)
        what = f"seed {seed}: {n} middleboxes, mb{dead} dies, hops {len(hops)}"
        got = outcomes(left.notes)
        if not got or not got[-1].startswith("reconfigured"):
            failed.append(f"{what}: {got}")
        elif not (conn.done and not conn.reset and bytes(conn.received) == respond(data)):
            failed.append(f"{what}: the transfer did not complete ({conn.done=}, {conn.reset=})")
        elif [bytes(c.received) for c in server.conns.values()] != [data]:
            failed.append(f"{what}: the server got other bytes")
        elif live_leftovers(w, f"mb{dead}"):
            failed.append(f"{what}: left {live_leftovers(w, f'mb{dead}')}")
    assert not failed, "\n".join(failed)
