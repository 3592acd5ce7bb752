"""The in-band transport between two messengers with a NAT between them (docs/protocol.md §4a):
addressing, stamps, answers and duplicates; and hostile in-band segments at an agent."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from dysco.runtime.core import Agent, Config
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _inband as ib
from dysco.runtime.core._events import Action, Port, Reason, Send
from dysco.runtime.core._messenger import Messenger
from dysco.runtime.core._types import FiveTuple, ip_int

LEFT, NAT, RIGHT = ip_int("10.0.1.2"), ip_int("10.0.0.2"), ip_int("10.0.0.10")
SUB = FiveTuple(LEFT, RIGHT, 10000, 80)  # the left agent's view
SEEN = FiveTuple(NAT, RIGHT, 61000, 80)  # the right agent's view, behind the NAT
KEYS = auth.KeyRing({1: b"k" * 32}, 1)
NOW = 1_000_000_000_000


def messenger(me: int, keyed: bool = True) -> Messenger:
    m = Messenger(me, Counter())
    if keyed:
        m.keys, m.guard = KEYS, auth.ReplayGuard(me)
    return m


def nat(frame: bytes) -> bytes:
    """What the NAT does to a segment of the subsession: the left end is rewritten."""
    seg = ib.parse(frame)
    t = seg.tuple
    if t == SUB:
        t = SEEN
    elif t == SUB.reversed():
        raise AssertionError("the left agent's own address never leaves the NAT")
    elif t == SEEN.reversed():
        t = SUB.reversed()
    else:
        raise AssertionError(f"not the subsession: {t}")
    return ib.frame(t, seg.leftward, seg.seq, seg.ack, seg.data, seg.relay)


def sent(out: list[Action]) -> bytes:
    (a,) = out
    assert isinstance(a, Send) and a.port is Port.NET
    return a.frame


def lock(msg_id: int = 7) -> cw.Message:
    return cw.Message(cw.Kind.REQUEST_LOCK, msg_id, 3, LEFT, ip_int("10.0.0.100"), SUB)


@pytest.mark.parametrize("keyed", [True, False], ids=["keys", "no-keys"])
def test_a_request_and_its_answer_cross_the_nat(keyed: bool) -> None:
    a, b = messenger(LEFT, keyed), messenger(RIGHT, keyed)
    out: list[Action] = []
    a.request(NOW, RIGHT, lock(), 1, out)
    request = sent(out)
    seg = ib.parse(request)
    assert seg.tuple == SUB and not seg.leftward and not seg.relay
    out = []
    got = b.receive_inband(NOW, nat(request), out)
    assert got is not None and got.pending is None and got.src == NAT
    assert got.msg.sub == SEEN  # the subsession as the right agent sees it
    b.answer(NOW, got.src, replace(got.msg, kind=cw.Kind.ACK_LOCK), out)
    answer = ib.parse(sent(out))
    assert answer.tuple == SEEN.reversed() and answer.leftward
    assert (answer.seq, answer.ack) == (seg.ack, seg.seq)  # the request's numbers, mirrored
    back = a.receive_inband(NOW, nat(sent(out)), [])
    assert back is not None and back.pending is not None and back.msg.kind is cw.Kind.ACK_LOCK
    assert back.msg.sub == SUB and not a.outbox


def test_a_duplicate_request_gets_the_answer_again_with_its_own_numbers() -> None:
    a, b = messenger(LEFT), messenger(RIGHT)
    out: list[Action] = []
    a.request(NOW, RIGHT, lock(), 1, out)
    got = b.receive_inband(NOW, nat(sent(out)), [])
    assert got is not None
    b.answer(NOW, got.src, replace(got.msg, kind=cw.Kind.ACK_LOCK), [])
    out = []
    a.timer(NOW + 10**9, out)  # retransmitted, sealed anew, the other half of an unknown number
    request = sent(out)
    again = ib.parse(request)
    out = []
    assert b.receive_inband(NOW, nat(request), out) is None
    answer = ib.parse(sent(out))
    assert (answer.seq, answer.ack) == (again.ack, again.seq)
    assert b.metrics["control.request_lock"] == 2


def test_leftward_the_stamp_names_the_left_agent_it_learned() -> None:
    """The right agent knows its left neighbour as the NAT; it stamps what it sends left to the
    address the neighbour's authenticated messages named, so the strict receiver check holds."""
    a, b = messenger(LEFT), messenger(RIGHT)
    right = cw.Message(cw.Kind.RIGHT_REQUEST, 9, 0, NAT, ip_int("10.0.0.100"), SEEN)
    out: list[Action] = []
    b.request(NOW, NAT, right, 1, out)  # nothing learned yet: stamped to the NAT's address
    a.receive_inband(NOW, nat(sent(out)), [])
    assert a.metrics["drops.control.misdirected"] == 1
    b.learn_agent(SEEN, LEFT)  # as the subsession's Dysco SYN taught it
    out = []
    b.timer(NOW + 10**9, out)
    seg = ib.parse(sent(out))
    assert seg.tuple == SEEN.reversed() and seg.leftward
    got = a.receive_inband(NOW, nat(sent(out)), [])
    assert got is not None and got.msg.sub == SUB and got.src == RIGHT


def test_an_authenticated_request_from_the_left_teaches_the_left_agents_address() -> None:
    a, b = messenger(LEFT), messenger(RIGHT)
    out: list[Action] = []
    a.request(NOW, RIGHT, lock(), 1, out)
    b.receive_inband(NOW, nat(sent(out)), [])
    assert b.agents == {SEEN: LEFT}


def test_what_is_not_hop_by_hop_goes_by_udp() -> None:
    a = messenger(LEFT)
    out: list[Action] = []
    a.request(NOW, RIGHT, cw.Message(cw.Kind.DELEGATE, 1, 1, RIGHT, ip_int("10.0.0.100")), 1, out)
    a.request(NOW, ip_int("10.0.0.99"), lock(2), 1, out)  # not the subsession's other end
    for frame in (x.frame for x in out if isinstance(x, Send)):
        cw.parse_udp(frame, 9797)


def test_a_message_for_another_subsession_is_refused() -> None:
    a, b = messenger(LEFT, False), messenger(RIGHT, False)
    out: list[Action] = []
    a.request(NOW, RIGHT, replace(lock(), sub=replace(SUB, dport=81)), 1, out)
    seg = ib.parse(sent(out))
    forged = ib.frame(SEEN, False, seg.seq, seg.ack, seg.data)
    assert b.receive_inband(NOW, forged, []) is None
    assert b.metrics["drops.control.inband_mismatch"] == 1


# ---- hostile segments at an agent -----------------------------------------------------------------


def _agent(keyed: bool) -> Agent:
    return Agent(Config(address=RIGHT, name="mb", keys=KEYS if keyed else None))


@pytest.mark.parametrize(
    ("frame", "keyed", "counter"),
    [
        (b"\x00" * 10, False, "drops.control.truncated"),
        (ib.frame(SEEN, False, 1, 2, b"DYSR"), False, "drops.control.truncated"),
        (ib.frame(SEEN, False, 1, 2, cw.encode(lock())), True, "drops.control.missing_tag"),
        (ib.frame(FiveTuple(NAT, ip_int("10.0.0.11"), 1, 80), False, 1, 2, cw.encode(lock())), False,
         "drops.control.not_for_us"),
        (ib.frame(SEEN, False, 1, 2, cw.encode(replace(lock(), sub=replace(SUB, dst=NAT)))), False,
         "drops.control.inband_mismatch"),
        (ib.frame(SEEN, False, 1, 2, b"x" * 40)[:-1] + b"\xff", False, "drops.control.garbled"),
    ],
    ids=["short", "cut-message", "unsealed", "not-for-us", "mismatch", "garbage"],
)  # fmt: skip
def test_a_bad_segment_is_dropped_and_counted(frame: bytes, keyed: bool, counter: str) -> None:
    agent = _agent(keyed)
    out = agent.packet_in(NOW, frame, Port.NET, Reason.INBAND)
    assert agent.metrics[counter] == 1, dict(agent.metrics)
    assert not [a for a in out if isinstance(a, Send)]  # nothing to the host, nothing answered
    assert agent.empty()


def test_a_relayed_message_with_nowhere_to_go_is_counted() -> None:
    agent = _agent(False)
    msg = cw.Message(cw.Kind.SWITCH, 1, 1, LEFT, ip_int("10.0.0.100"))
    out = agent.packet_in(
        NOW, ib.frame(SEEN, False, 1, 2, cw.encode(msg), relay=True), Port.NET, Reason.INBAND
    )
    assert agent.metrics["control.relay_unrouted"] == 1 and not out


def test_a_relayed_message_gives_no_peer_cell_to_the_far_anchor() -> None:
    """The NIC meters by the packet's source: the agent that passed the message on, not the
    anchor that sealed it, so that anchor gets no cell for it."""
    from dysco.runtime.core._peers import Peers

    far = ip_int("10.0.0.100")
    left = messenger(LEFT)
    left.peers = Peers(4, left.metrics)
    msg = cw.Message(cw.Kind.SWITCH, 5, 1, LEFT, far)
    data = cw.encode(msg, KEYS, sender=far, receiver=LEFT, now=NOW)
    out: list[Action] = []
    frame = ib.frame(SUB.reversed(), True, 1, 2, data, relay=True)
    got = left.receive_inband(NOW, frame, out)
    assert got is not None and got.src == far and got.msg.kind is cw.Kind.SWITCH
    assert len(left.peers) == 0 and not out
