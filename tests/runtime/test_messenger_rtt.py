"""Retransmission timeouts of control requests from the measured round trip (RFC 6298 style,
with a floor), per peer; an answer to a retransmitted request is no sample (Karn's rule)."""

from __future__ import annotations

from collections import Counter

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core._events import Action, Send
from dysco.runtime.core._messenger import FIRST_RTO, MIN_RTO, MS, Messenger, Rtt
from dysco.runtime.core._types import ip_int

A, B, C = ip_int("10.0.1.2"), ip_int("10.0.2.2"), ip_int("10.0.3.2")


def pair() -> tuple[Messenger, Messenger]:
    return Messenger(A, Counter()), Messenger(B, Counter())


def sent(out: list[Action]) -> list[bytes]:
    return [a.frame for a in out if isinstance(a, Send)]


def exchange(a: Messenger, b: Messenger, at: int, rtt: int) -> None:
    """A request from ``a`` at ``at``, answered by ``b``, the answer back at ``at + rtt``."""
    out: list[Action] = []
    msg = cw.Message(cw.Kind.REQUEST_LOCK, a.new_id(), 1, A, B)
    a.request(at, B, msg, 1, out)
    got = b.receive(at + rtt // 2, sent(out)[0], [])
    assert got is not None and got.pending is None
    back: list[Action] = []
    b.answer(at + rtt // 2, A, cw.Message(cw.Kind.ACK_LOCK, msg.msg_id, 1, A, B), back)
    answered = a.receive(at + rtt, sent(back)[0], [])
    assert answered is not None and answered.pending is not None


def retransmits_at(a: Messenger, start: int) -> int:
    """When a request sent at ``start`` (to B, unanswered) is first sent again, to the ms."""
    out: list[Action] = []
    a.request(start, B, cw.Message(cw.Kind.CANCEL_LOCK, a.new_id(), 2, A, B), 2, out)
    t = start
    while True:
        t += MS
        again: list[Action] = []
        a.timer(t, again)
        if sent(again):
            return t - start


def test_before_any_answer_the_first_timeout_is_the_default() -> None:
    a, _ = pair()
    assert a.rto_for(B) == FIRST_RTO
    assert retransmits_at(a, 0) == FIRST_RTO


def test_measured_round_trips_set_the_timeout_with_a_floor() -> None:
    a, b = pair()
    exchange(a, b, 0, 40 * MS)
    assert a.rtt[B] == Rtt(40 * MS, 20 * MS)
    assert a.rto_for(B) == 120 * MS  # srtt + 4 rttvar
    for i in range(30):  # a steady 2 ms: the estimate converges, the floor holds
        exchange(a, b, (i + 1) * 100 * MS, 2 * MS)
    assert a.rtt[B].srtt < 3 * MS
    assert a.rto_for(B) == MIN_RTO
    assert retransmits_at(a, 10_000 * MS) == MIN_RTO
    assert a.rto_for(C) == FIRST_RTO  # per peer
    assert a.metrics["control.rtt_samples"] == 31


def test_an_answer_to_a_retransmitted_request_is_no_sample() -> None:
    a, b = pair()
    out: list[Action] = []
    msg = cw.Message(cw.Kind.REQUEST_LOCK, a.new_id(), 1, A, B)
    a.request(0, B, msg, 1, out)
    again: list[Action] = []
    a.timer(FIRST_RTO, again)  # lost: sent again
    assert sent(again)
    back: list[Action] = []
    b.answer(FIRST_RTO + MS, A, cw.Message(cw.Kind.ACK_LOCK, msg.msg_id, 1, A, B), back)
    assert a.receive(FIRST_RTO + 2 * MS, sent(back)[0], []) is not None
    assert B not in a.rtt and a.metrics["control.rtt_samples"] == 0
