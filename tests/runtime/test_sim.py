"""Simulation: agents on softswitches running p4src/dysco.p4, on a faulty network, fake clock."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from dysco.compiler import compile_text
from dysco.runtime.core import SECOND
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._types import ip_int
from dysco.runtime.sim import MS, ChainClassifier, Faults, Forwarder, Nat, TcpStack, World
from dysco.softswitch.api import Program

from .simworld import CLIENT, SERVER, chain_world, check_clean, check_exchange, request, respond

LINGER = 30 * SECOND  # more than the linger and the idle poll


@pytest.mark.parametrize("n_mbs", [0, 1, 2, 3, 4])
def test_chain_carries_a_session_and_leaves_nothing(dysco_program: Program, n_mbs: int) -> None:
    w, client, server = chain_world(dysco_program, n_mbs)
    conns = [client.connect(ip_int(SERVER), 80, request(0))]
    w.sim.run_for(LINGER)
    check_exchange(conns, server)
    # the server saw the client's own five-tuple
    (srv,) = server.conns.values()
    assert (srv.remote, srv.remote_port) == (ip_int("10.0.0.1"), conns[0].local_port)
    check_clean(w)
    mbs = [h for n, h in w.hosts.items() if n.startswith("mb")]
    assert all(h.app is not None and h.app.frames > 0 for h in mbs)  # type: ignore[attr-defined]


def test_nat_in_the_chain(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 2, mb_app=lambda i: Nat if i == 0 else Forwarder)
    conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(3)]
    w.sim.run_for(LINGER)
    check_exchange(conns, server)
    # the server saw the NAT's address, not the client's
    assert {c.remote for c in server.conns.values()} == {ip_int("10.0.0.10")}
    check_clean(w)


def test_classifier_middlebox_chooses_the_next_hop(dysco_program: Program) -> None:
    scrubber = ip_int("10.0.0.50")
    w, client, server = chain_world(
        dysco_program,
        1,
        mb_app=lambda i: lambda h: ChainClassifier(h, lambda t: [scrubber] if t.sport % 2 else []),
    )
    extra = w.host("scrubber", scrubber, app=Forwarder)
    conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(4)]
    w.sim.run_for(LINGER)
    check_exchange(conns, server)
    assert extra.agent is not None and extra.agent.metrics["sessions.created"] == 2
    check_clean(w)


def test_partial_deployment_gateways(dysco_program: Program) -> None:
    """client (no agent) -> gateway g1 [chain starts] -> mb -> gateway g2 [chain ends] -> server."""
    w = World(dysco_program, 3)
    g1, mb, g2 = ip_int("10.0.0.2"), ip_int("10.0.0.10"), ip_int("10.0.0.99")
    policies = compile_text(
        "middlebox fw { instances 10.0.0.10; }\npolicy web: tcp dst port 80 -> fw, 10.0.0.99\n"
    )
    client = TcpStack(w.sim, ip_int(CLIENT), lambda f: None)
    w.host("client", ip_int(CLIENT), agent=False, via=g1, app=lambda h: client)
    client.emit = w.hosts["client"].emit
    w.host("g1", g1, policies=policies, app=Forwarder, agentless=(ipaddress.IPv4Network("10.0.0.100/32"),))
    w.host("mb", mb, app=Forwarder)
    w.host("g2", g2, app=Forwarder)
    server = TcpStack(w.sim, ip_int(SERVER), lambda f: None)
    w.host("server", ip_int(SERVER), agent=False, via=g2, app=lambda h: server)
    server.emit = w.hosts["server"].emit
    server.listen(80, respond)
    conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(3)]
    w.sim.run_for(LINGER)
    check_exchange(conns, server)
    for name in ("g1", "mb", "g2"):
        agent = w.hosts[name].agent
        assert agent is not None and agent.metrics["sessions.created"] == 3, name
    check_clean(w)


# 3,000 sessions alive at once through a middlebox (about 15 s here; exact tables update their
# index in place, so the cost is linear in the number of sessions).
def test_thousands_of_concurrent_sessions(dysco_program: Program) -> None:
    n = 3000
    w, client, server = chain_world(dysco_program, 1, seed=7)
    w.net.faults = Faults(delay=2 * MS, jitter=1 * MS)
    conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(n)]
    w.sim.run_for(SECOND // 2)
    agent = w.hosts["mb0"].agent
    assert agent is not None and len(agent.sessions) == n  # all alive at once
    w.sim.run_for(LINGER)
    check_exchange(conns, server)
    check_clean(w)


def _is_syn(frame: bytes) -> bool:
    return len(frame) > 47 and frame[47] & 0x12 == 0x02


def test_syn_loss_and_retransmission(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 2, seed=1)
    lost: list[bytes] = []

    def drop_first_syns(frame: bytes) -> bool:
        if _is_syn(frame) and len(lost) < 3:
            lost.append(frame)
            return True
        return False

    w.net.faults = Faults(drop_if=drop_first_syns)
    conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(1)]
    w.sim.run_for(LINGER)
    assert len(lost) == 3 and client.retransmits >= 3
    check_exchange(conns, server)
    check_clean(w)


def test_syn_ack_loss_is_idempotent(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 1, seed=2)
    dropped = []

    def drop_syn_acks(frame: bytes) -> bool:
        if len(frame) > 47 and frame[47] & 0x12 == 0x12 and len(dropped) < 2:
            dropped.append(frame)
            return True
        return False

    w.net.faults = Faults(drop_if=drop_syn_acks)
    conns = [client.connect(ip_int(SERVER), 80, request(0))]
    w.sim.run_for(LINGER)
    assert len(dropped) == 2
    check_exchange(conns, server)
    mb = w.hosts["mb0"].agent
    assert mb is not None and mb.metrics["syn.retransmitted"] >= 2
    check_clean(w)


@pytest.mark.parametrize("seed", range(6))
def test_faulty_network(dysco_program: Program, seed: int) -> None:
    w, client, server = chain_world(dysco_program, 2, seed=seed)
    w.net.faults = Faults(delay=1 * MS, jitter=3 * MS, loss=0.05, duplicate=0.05)
    conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(20)]
    w.sim.run_for(120 * SECOND)
    check_exchange(conns, server)
    check_clean(w)


def test_deterministic_for_a_seed(dysco_program: Program) -> None:
    def run() -> tuple[object, ...]:
        w, client, _server = chain_world(dysco_program, 2, seed=11)
        w.net.faults = Faults(delay=1 * MS, jitter=3 * MS, loss=0.05, duplicate=0.05)
        conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(10)]
        w.sim.run_for(60 * SECOND)
        return (w.net.stats, client.retransmits, [c.iss for c in conns], w.sim.now)

    assert run() == run()


def test_simultaneous_fins(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 1, seed=4)
    conn = client.connect(ip_int(SERVER), 80, b"")
    conn.want_fin = False
    w.sim.run_for(100 * MS)
    (srv,) = server.conns.values()
    assert conn.established and srv.established
    # both ends close at the same moment: the FINs cross in the chain
    srv.respond = None
    conn.want_fin = srv.want_fin = True
    conn.pump()
    srv.pump()
    w.sim.run_for(LINGER)
    assert conn.done and srv.done
    check_clean(w)


def test_the_last_fin_lost_for_longer_than_the_linger_is_still_translated(dysco_program: Program) -> None:
    """The server's FIN (the second one) is lost on its first hop until the server's third
    retransmission, 0.8 s after the second, past the agents' linger (0.5 s, as the testbed runs
    them).  The server's agent, which saw both FINs, must still hold the session: every segment
    of the session leaves the server's NIC translated (to the middlebox), the client gets the FIN
    and both ends finish.  (It freed the session 0.5 s after the last FIN it saw, and the FIN went
    out untranslated: on the testbed the client waited in FIN-WAIT-2 forever.)"""
    w, client, server = chain_world(dysco_program, 1, seed=5, linger=500 * MS)
    mb, srv_addr = ip_int("10.0.0.10"), ip_int(SERVER)
    fins: list[pk.TcpFrame] = []

    def lose_the_servers_fin(frame: bytes) -> bool:
        f = pk.parse(frame)
        if f.src != srv_addr or not f.flags & pk.FIN:
            return False
        fins.append(f)
        return len(fins) <= 3

    w.net.faults.drop_if = lose_the_servers_fin
    conn = client.connect(ip_int(SERVER), 80, request(0))
    w.sim.run_for(LINGER)
    assert len(fins) >= 4 and all(f.dst == mb for f in fins), [str(f.five_tuple) for f in fins]
    assert fins[3].seq == fins[0].seq  # the same FIN, retransmitted
    check_exchange([conn], server)
    sh = w.hosts["server"]
    assert sh.agent is not None and sh.agent.metrics["teardown.fin_unacknowledged"] == 0
    check_clean(w)


def test_idle_timeout_removes_a_silent_session(dysco_program: Program) -> None:
    w, client, _server = chain_world(dysco_program, 1, idle_timeout=5 * SECOND)
    conn = client.connect(ip_int(SERVER), 80, b"")
    conn.want_fin = False  # the client never closes
    w.sim.run_for(100 * MS)
    assert all(h.agent is not None and len(h.agent.sessions) == 1 for h in w.hosts.values())
    w.sim.run_for(LINGER)
    assert all(h.agent is not None and h.agent.metrics["sessions.idle"] == 1 for h in w.hosts.values())
    check_clean(w)


def test_a_restarted_agent_removes_the_entries_of_the_sessions_it_forgot(dysco_program: Program) -> None:
    """An agent that restarts (a new core, nothing known) gets the NIC's idle-timeout
    notifications for the entries its predecessor wrote; each is deleted and counted, so nothing
    is left behind (the entries used to stay for good)."""
    from dysco.runtime.core import Agent

    w, client, _server = chain_world(dysco_program, 1, idle_timeout=5 * SECOND)
    conn = client.connect(ip_int(SERVER), 80, b"")
    conn.want_fin = False  # the client never closes
    w.sim.run_for(100 * MS)
    mb = w.hosts["mb0"]
    old = mb.agent
    assert old is not None and len(old.sessions) == 1
    written = mb.session_entries()
    assert written > 0
    mb.agent = Agent(old.config, old.chains.values())  # the restart: the NIC keeps its entries
    w.sim.run_for(LINGER)
    assert mb.agent.metrics["entries.orphans_removed"] == written
    assert mb.agent.metrics["sessions.idle"] == 0  # it never knew the session
    check_clean(w)


def test_partition_during_setup_times_out_cleanly(dysco_program: Program) -> None:
    # the setup deadline runs from the host's last SYN retransmission (~19 s of retries here), so
    # the idle timeout is longer than that: the setup's failure is what is reported
    w, client, _server = chain_world(dysco_program, 1, seed=5, idle_timeout=60 * SECOND)
    w.net.partition(ip_int("10.0.0.10"), ip_int(SERVER))
    conn = client.connect(ip_int(SERVER), 80, request(0))
    w.sim.run_for(120 * SECOND)
    assert conn.failed and not conn.established
    left = w.hosts["client"].agent
    assert left is not None and left.metrics["errors.setup_timeout"] >= 1
    assert any(n.event == "setup_timeout" and n.error for n in w.hosts["client"].notes)
    check_clean(w)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"DYSC\x01\x04\x00", "truncated"),
        (b"DYSC\x02" + bytes(60), "unknown_version"),
        (b"DYSC\x01\x04\x00\x28\x40" + bytes(60), "oversized"),
        (b"DYSC\x01\x09" + bytes(60), "garbled"),
    ],
)
def test_bad_payloads_are_dropped_and_counted(dysco_program: Program, payload: bytes, kind: str) -> None:
    w, _client, _server = chain_world(dysco_program, 1)
    mb = w.hosts["mb0"]
    syn = pk.TcpFrame(
        b"\2" * 6, b"\4" * 6, ip_int(CLIENT), mb.address, 1234, 80, 7, 0, pk.SYN, payload=payload
    )
    mb.from_net(syn.to_bytes())
    w.sim.run_for(SECOND)
    assert mb.agent is not None and mb.agent.metrics[f"drops.bad_payload.{kind}"] == 1
    assert mb.app is not None and mb.app.frames == 0  # type: ignore[attr-defined]
    check_clean(w)


def test_full_table_fails_closed(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 1, table_size=5)
    conns = [client.connect(ip_int(SERVER), 80, request(i)) for i in range(3)]
    w.sim.run_for(SECOND)
    # room for two sessions (two entries per table each); the third SYN was dropped, not sent unchained
    assert sorted(c.done for c in conns) == [False, True, True]  # which one lost depends on timing
    (late,) = [c for c in conns if not c.done]
    assert (ip_int(CLIENT), late.local_port, 80) not in server.conns
    assert any(n.event == "table_full" and n.error for h in w.hosts.values() for n in h.notes)
    w.sim.run_for(LINGER)  # the retransmitted SYN finds room once the others are gone
    check_exchange(conns, server)
    check_clean(w)


def test_a_setup_given_up_at_the_left_end_can_be_set_up_again(dysco_program: Program) -> None:
    """Every SYN lost for longer than the setup timeout (a partition here, a SYN flood on the
    testbed): the client's agent gives the session up while the middlebox's still holds it, pending.
    When the host tries again on a new subsession, the middlebox takes it as the same neighbour
    setting the same session up again, not as a clash."""
    w, client, _server = chain_world(dysco_program, 1, seed=3)
    w.net.partition(ip_int("10.0.0.10"), ip_int(SERVER))
    conn = client.connect(ip_int(SERVER), 80, request(1))
    w.sim.run_for(12 * SECOND)
    w.net.heal()
    w.sim.run_for(60 * SECOND)
    mb = w.hosts["mb0"].agent
    assert mb is not None and mb.metrics["errors.session_clash"] == 0
    assert conn.established and not conn.failed and not conn.reset
    check_clean(w)


def _run_until(w: World, what: str, done: Callable[[], bool], limit: int) -> None:
    end = w.sim.now + limit
    while not done():
        assert w.sim.now < end, f"{what}: not within {limit // SECOND} s"
        w.sim.run_for(100 * MS)


def test_a_setup_seen_through_further_on_is_set_up_again_on_a_new_subsession(
    dysco_program: Program,
) -> None:
    """Every SYN-ACK is lost on its way to the client for longer than the client's agent's setup
    timeout, after the middlebox passed the SYN on and the server's agent delivered it: both hold
    the session, established.  Another session toward the middlebox stays open, so the client's
    agent does not start its ports over, and the host's next SYN comes on a new subsession; the
    middlebox's agent replaces the session it held instead of refusing it as a clash (and so does
    the server's if its subsession is new too)."""
    # the simulated TCP retransmits its SYN every 3.2 s at most: a shorter setup timeout
    w, client, server = chain_world(dysco_program, 1, seed=5, client_config={"setup_timeout": 2 * SECOND})
    mb, agent = w.hosts["mb0"].agent, w.hosts["client"].agent
    assert mb is not None and agent is not None
    lost = [False]

    def synack_to_client(frame: bytes) -> bool:
        f = pk.parse(frame)
        return lost[0] and f.dst == ip_int(CLIENT) and f.flags & (pk.SYN | pk.ACK) == pk.SYN | pk.ACK

    w.net.faults.drop_if = synack_to_client
    held_open = client.connect(ip_int(SERVER), 80, b"", stream=True)
    _run_until(w, "a session held open", lambda: held_open.established, SECOND)
    lost[0] = True
    given_up = client.connect(ip_int(SERVER), 80, request(1))
    _run_until(w, "the client's agent gives the setup up", lambda: len(agent.sessions) == 1, 20 * SECOND)
    assert not given_up.done
    (held,) = [s for s in mb.sessions.values() if s.session.sport == given_up.local_port]
    assert held.fsm.state is SessionState.ESTABLISHED
    lost[0] = False
    _run_until(w, "the setup again", lambda: given_up.done, 90 * SECOND)
    assert mb.metrics["errors.session_clash"] == 0 and mb.metrics["sessions.resetup"] == 1
    assert held.sid not in mb.sessions
    held_open.data, held_open.want_fin = request(0), True
    held_open.pump()
    _run_until(w, "the session held open", lambda: held_open.done, 10 * SECOND)
    check_exchange([held_open, given_up], server)
    w.sim.run_for(LINGER)
    check_clean(w)
