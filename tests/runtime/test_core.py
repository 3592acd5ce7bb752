"""The sans-IO core on its own: state machines, refused writes, bounded maps, allocation."""

from __future__ import annotations

import logging

import pytest

from dysco.errors import InternalError
from dysco.runtime import Agent, Config, Delete, Install, Notify, Port, Reason, Send, SetTimer
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._alloc import AllDrained, PortPool, PortsExhausted, Selector
from dysco.runtime.core._fsm import SESSION_TRANSITIONS, Machine, SessionState, to_dot
from dysco.runtime.core._syn_payload import SynPayload, encode
from dysco.runtime.core._types import FiveTuple, ip_int, prefixed

ME = ip_int("10.0.0.10")
LEFT = ip_int("10.0.0.1")


def _dysco_syn(hops: tuple[int, ...], sport: int = 10000, session_port: int = 0, src: int = LEFT) -> bytes:
    session = FiveTuple(LEFT, ip_int("10.0.0.100"), session_port or sport + 30000, 80)
    payload = encode(SynPayload(session, hops))
    return pk.TcpFrame(b"\2" * 6, b"\4" * 6, src, ME, sport, 80, 1, 0, pk.SYN, payload=payload).to_bytes()


def test_machine_refuses_illegal_moves_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    m = Machine("s1", SessionState.ESTABLISHED, SESSION_TRANSITIONS, prefixed("t", "h", "core"))
    with caplog.at_level(logging.DEBUG, logger="t"):
        m.set(SessionState.HALF_CLOSED)
    assert "[h|core] s1: ESTABLISHED -> HALF_CLOSED" in caplog.text
    with pytest.raises(InternalError, match="illegal transition HALF_CLOSED -> PENDING"):
        m.set(SessionState.PENDING)
    assert "ESTABLISHED -> CLOSING;" in to_dot("session", SESSION_TRANSITIONS)


def test_middle_installs_both_directions_before_the_syn_leaves() -> None:
    a = Agent(Config(ME))
    actions = a.packet_in(0, _dysco_syn((ME, ip_int("10.0.0.100"))), Port.NET, Reason.DYSCO_SYN)
    kinds = [type(x) for x in actions]
    assert kinds[:3] == [Install, Install, Send] and isinstance(actions[3], SetTimer)
    send = actions[2]
    assert isinstance(send, Send) and send.port is Port.HOST
    f = pk.parse(send.frame)
    assert f.payload == b"" and pk.find_tag(f.options) is not None
    # a retransmission is delivered again, with no new state; the setup deadline moves on with it
    again = a.packet_in(1, _dysco_syn((ME, ip_int("10.0.0.100"))), Port.NET, Reason.DYSCO_SYN)
    assert sorted(type(x).__name__ for x in again) == ["Send", "SetTimer"] and len(a.sessions) == 1
    first, later = actions[3], next(x for x in again if isinstance(x, SetTimer))
    assert isinstance(first, SetTimer) and isinstance(later, SetTimer) and later.at > first.at


def test_refused_write_fails_the_session_closed() -> None:
    a = Agent(Config(ME))
    actions = a.packet_in(0, _dysco_syn((ME,)), Port.NET, Reason.DYSCO_SYN)
    install = actions[0]
    assert isinstance(install, Install)
    out = a.write_failed(0, install.mapping, "RESOURCE_EXHAUSTED", "table full")
    assert any(isinstance(x, Notify) and x.error and "RESOURCE_EXHAUSTED" in x.message for x in out)
    assert sum(isinstance(x, Delete) for x in out) == 2
    assert a.empty() and a.metrics["errors.write.RESOURCE_EXHAUSTED"] == 1


def test_session_bound_fails_closed() -> None:
    a = Agent(Config(ME, max_sessions=1))
    a.packet_in(0, _dysco_syn((ME,), 10000), Port.NET, Reason.DYSCO_SYN)
    out = a.packet_in(0, _dysco_syn((ME,), 10001), Port.NET, Reason.DYSCO_SYN)
    assert [x.event for x in out if isinstance(x, Notify)] == ["table_full"]
    assert not any(isinstance(x, Send) for x in out)


def test_not_for_us_and_malformed_frames_are_counted() -> None:
    a = Agent(Config(ip_int("10.0.0.11")))
    assert a.packet_in(0, _dysco_syn((ME,)), Port.NET, Reason.DYSCO_SYN) == []
    assert a.packet_in(0, b"\0" * 20, Port.NET, Reason.DYSCO_SYN) == []
    assert a.metrics["drops.not_for_us"] == 1 and a.metrics["drops.malformed_frame"] == 1


def test_ports_never_collide_and_are_reused() -> None:
    pool = PortPool(100, 102)
    got = [pool.allocate(1) for _ in range(3)]
    assert sorted(got) == [100, 101, 102]
    with pytest.raises(PortsExhausted, match="all 3 ports in use"):
        pool.allocate(1)
    assert pool.allocate(2) == 100  # another next hop has its own ports
    pool.release(1, 101)
    assert pool.allocate(1) == 101
    with pytest.raises(ValueError, match="port range"):
        PortPool(0, 5)


def test_instance_selection() -> None:
    sel = Selector()
    inst = (1, 2, 3)
    t = FiveTuple(1, 2, 3, 4)
    assert [sel.pick("fw", inst, "round-robin", t) for _ in range(4)] == [1, 2, 3, 1]
    assert len({sel.pick("fw", inst, "hash", t) for _ in range(5)}) == 1
    sel.acquire(1)
    sel.acquire(2)
    assert sel.pick("fw", inst, "least-loaded", t) == 3


def test_a_closing_session_lingers_from_the_last_packet_the_agent_saw() -> None:
    a = Agent(Config(ME, linger=2_000))
    a.packet_in(0, _dysco_syn((ME,)), Port.NET, Reason.DYSCO_SYN)
    (s,) = a.sessions.values()
    sub = FiveTuple(LEFT, ME, 10000, 80)
    mac = b"\2" * 6

    def seg(t: FiveTuple, flags: int) -> bytes:
        return pk.TcpFrame(mac, mac, t.src, t.dst, t.sport, t.dport, 5, 7, flags).to_bytes()

    a.packet_in(100, seg(sub, pk.FIN | pk.ACK), Port.NET, Reason.TEARDOWN, session_id=s.sid)
    a.packet_in(100, seg(s.session.reversed(), pk.FIN | pk.ACK), Port.HOST, Reason.TEARDOWN, session_id=s.sid)
    assert s.fsm.state is SessionState.CLOSING
    # a retransmission crosses the agent (e.g. punted) just before the linger is over
    a.packet_in(1_900, seg(sub, pk.ACK), Port.NET, Reason.UNSUPPORTED)
    assert any(isinstance(x, SetTimer) and x.at == 3_900 for x in a.timer(2_100))
    assert a.sessions and a.metrics["sessions.closed"] == 0
    a.timer(3_900)
    assert a.empty() and a.metrics["sessions.closed"] == 1


SERVER = ip_int("10.0.0.100")


def _established_middle(a: Agent) -> int:
    """A middle that passed a session's SYN on (its middlebox host emitted it again): the
    session's id."""
    actions = a.packet_in(0, _dysco_syn((ME, SERVER), 10000, 40000), Port.NET, Reason.DYSCO_SYN)
    delivered = next(x for x in actions if isinstance(x, Send))
    a.packet_in(1, delivered.frame, Port.HOST, Reason.TAGGED_SYN)
    (s,) = a.sessions.values()
    assert s.fsm.state is SessionState.ESTABLISHED and s.down is not None
    return s.sid


@pytest.mark.parametrize("role", ["middle", "right"])
def test_the_previous_hop_sets_an_established_session_up_again(role: str) -> None:
    """The left end's agent gave a setup up after its timeout (a SYN flood delayed every SYN
    or SYN-ACK) while this host had seen it through; the host's next SYN comes on a new
    subsession.  The old session is replaced, not refused as a clash."""
    a = Agent(Config(ME))
    hops = (ME, SERVER) if role == "middle" else (ME,)
    if role == "middle":
        old = _established_middle(a)
    else:
        a.packet_in(0, _dysco_syn(hops, 10000, 40000), Port.NET, Reason.DYSCO_SYN)
        (s,) = a.sessions.values()
        old = s.sid
        assert s.fsm.state is SessionState.ESTABLISHED
    out = a.packet_in(2, _dysco_syn(hops, 10001, 40000), Port.NET, Reason.DYSCO_SYN)
    assert a.metrics["errors.session_clash"] == 0 and a.metrics["sessions.resetup"] == 1
    assert [x.message for x in out if isinstance(x, Notify) and x.event == "session_closed"] == [
        f"{FiveTuple(LEFT, SERVER, 40000, 80)} (set up again)"
    ]
    (s,) = a.sessions.values()
    assert s.sid != old and s.up is not None and s.up.tuple.sport == 10001
    assert any(isinstance(x, Send) and x.port is Port.HOST for x in out)
    # the old subsession's entries went with the old session
    deleted = {x.mapping.key for x in out if isinstance(x, Delete)}
    assert FiveTuple(LEFT, ME, 10000, 80) in deleted


def test_a_session_set_up_from_another_hop_is_a_clash() -> None:
    a = Agent(Config(ME))
    old = _established_middle(a)
    other = ip_int("10.0.0.2")
    out = a.packet_in(2, _dysco_syn((ME, SERVER), 10001, 40000, src=other), Port.NET, Reason.DYSCO_SYN)
    (note,) = [x for x in out if isinstance(x, Notify)]
    assert note.error and "is already a session at this host" in note.message
    assert a.metrics["errors.session_clash"] == 1 and list(a.sessions) == [old]
    assert not any(isinstance(x, (Send, Delete)) for x in out)


def test_a_session_in_a_reconfiguration_is_not_set_up_again() -> None:
    """A new path's SYN reaching a middle of the old path (new middleboxes must not be on the
    old path, docs/protocol.md §4) is refused, not taken for the session set up again: the old
    path is live until the reconfiguration ends."""
    a = Agent(Config(ME))
    old = _established_middle(a)
    started = a.reconfigure(3, old, SERVER, [ip_int("10.0.0.20")])
    assert any(isinstance(x, Send) and x.port is Port.NET for x in started)  # its REQUEST_LOCK
    out = a.packet_in(4, _dysco_syn((ME, SERVER), 10001, 40000), Port.NET, Reason.DYSCO_SYN)
    assert a.metrics["errors.session_clash"] == 1 and a.metrics["sessions.resetup"] == 0
    assert list(a.sessions) == [old] and not any(isinstance(x, Delete) for x in out)


def test_drained_instances_are_left_out_and_all_drained_is_refused() -> None:
    sel = Selector()
    inst = (1, 2, 3)
    t = FiveTuple(1, 2, 3, 4)
    sel.drained = frozenset({2})
    assert [sel.pick("fw", inst, "round-robin", t) for _ in range(4)] == [1, 3, 1, 3]
    assert sel.pick("fw", inst, "hash", t) in (1, 3)
    sel.acquire(1)
    assert sel.pick("fw", inst, "least-loaded", t) == 3
    assert sel.replacement(inst, frozenset({3})) == 1  # not drained, not on the path
    assert sel.replacement(inst, frozenset({1, 3})) is None
    sel.drained = frozenset(inst)
    with pytest.raises(AllDrained, match="every instance of fw is drained"):
        sel.pick("fw", inst, "round-robin", t)


def test_a_policy_syn_with_every_instance_drained_is_refused() -> None:
    from dysco.compiler import compile_text

    fw1, fw2 = ip_int("10.0.0.21"), ip_int("10.0.0.22")
    compiled = compile_text(
        "middlebox fw { instances 10.0.0.21, 10.0.0.22; }\npolicy web: tcp dst port 80 -> fw\n"
    )
    a = Agent(Config(ME), compiled.chains.values())
    policy_id = next(iter(compiled.chains.values())).id
    assert a.drain([fw1]) == [Notify("drain", "10.0.0.21")]
    assert a.drain_target(fw1, [fw1, ip_int("10.0.0.100")]) == fw2
    assert a.drained_types() == {}
    a.drain([fw1, fw2])
    assert a.drain_target(fw1, [fw1]) is None
    assert a.drained_types() == {"fw": (fw1, fw2)}
    syn = pk.TcpFrame(b"\2" * 6, b"\4" * 6, ME, ip_int("10.0.0.100"), 40000, 80, 1, 0, pk.SYN).to_bytes()
    out = a.packet_in(0, syn, Port.HOST, Reason.POLICY_SYN, policy_id=policy_id)
    assert next(x for x in out if isinstance(x, Notify)).event == "all_instances_drained"
    assert not a.sessions and a.metrics["errors.all_instances_drained"] == 1
    a.drain([fw1])  # fw2 back in service
    a.packet_in(1, syn, Port.HOST, Reason.POLICY_SYN, policy_id=policy_id)
    [s] = a.sessions.values()
    assert s.instances == (fw2,)


def test_keys_change_only_on_an_agent_that_authenticates() -> None:
    from dysco.errors import UserError
    from dysco.runtime.core._auth import KeyRing

    ring = KeyRing({1: b"k" * 32, 2: b"j" * 32}, 2)
    with pytest.raises(UserError, match="does not authenticate its messages \\(start it with --keys\\)"):
        Agent(Config(ME)).set_keys(ring)
    a = Agent(Config(ME, keys=KeyRing({1: b"k" * 32}, 1)))
    assert a.set_keys(ring) == [Notify("keys", "current 2, ids 1 2")]
    assert a.config.keys is ring and a.rc.msgs.keys is ring
