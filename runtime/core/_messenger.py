"""Reliable control messaging between agents (docs/protocol.md §4, "Reliability").

:class:`Messenger` is sans-IO like the rest of the agent: it sends requests and retransmits them
with a doubling timeout until an answer with the same ``msg_id`` arrives (or it gives up): the
first timeout toward a peer comes from the round trips measured to it (RFC 6298: smoothed RTT plus
four variations, at least MIN_RTO; FIRST_RTO before any answer), caches
the answers it gave per (sender, ``msg_id``) so a duplicate request is answered again with the
same bytes without being acted on twice, and keeps the timers for both plus the wake-ups of the
reconfiguration (new-path SYN retransmissions, lock timeouts).

Transport (docs/protocol.md §4a): a request that crosses one subsession between this agent and
its neighbour (REQUEST_LOCK, CANCEL_LOCK, TEARDOWN, FIN and RIGHT_REQUEST, whose ``sub`` is that
subsession and whose destination is its other end) travels in band, in a TCP segment on the
subsession's own five-tuple, and its answer comes back the same way; everything else (the
anchors' messages to each other, delegation, state transfer) is a UDP datagram to the control
port.  Requests and answers are keyed by the addresses as this agent sees them either way; the
stamp of a sealed message names the agents themselves, which a NAT in front of the left one
does not change: the left agent's address is learned from its authenticated messages (the
subsession's Dysco SYN, or any in-band message), for what this agent sends it.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from dysco import p4names
from dysco.errors import PeerError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _inband as ib
from dysco.runtime.core._events import Action, Port, Send
from dysco.runtime.core._peers import Peers
from dysco.runtime.core._syn_payload import TagType
from dysco.runtime.core._types import FiveTuple

MS = 1_000_000
FIRST_RTO = 50 * MS
"""The first timeout toward a peer nothing has been measured from yet."""
MIN_RTO = 10 * MS
"""The floor of a measured timeout: an agent's answer comes in milliseconds, but an agent is a
Python process that may be busy for a few (a spurious retransmission costs one datagram: the
receiver answers a duplicate from its cache)."""
MAX_RTO = 1000 * MS
MAX_RTT_PEERS = 4096
"""Peers whose round-trip time is kept; a new one past that evicts the one measured longest ago."""
ATTEMPTS = 10
SEEN_FOR = 10_000 * MS
M32 = 0xFFFFFFFF

_EXPIRE = -1
_WAKE = -2
HOP_BY_HOP = frozenset(
    {cw.Kind.REQUEST_LOCK, cw.Kind.CANCEL_LOCK, cw.Kind.TEARDOWN, cw.Kind.FIN, cw.Kind.RIGHT_REQUEST}
)
"""Requests whose ``sub`` is the one subsession between sender and receiver: in band."""
RELAYED = frozenset({cw.Kind.SWITCH, cw.Kind.DONE})
"""Requests between the two anchors of a reconfiguration: in band on the anchor's old-path
subsession, passed on by the agents between them (ib.RELAY)."""
MAX_RELAYED = 4096
_NONE = FiveTuple(0, 0, 0, 0, 0)
MAX_AGENTS = 65536
"""Subsessions whose left agent's own address is kept (what this agent stamps its messages to)."""


@dataclass(slots=True)
class Pending:
    """A request waiting for its answer."""

    dst: int
    msg: cw.Message
    sid: int
    """The session the request is about at this agent (0: none to act on when it is answered)."""
    at: int
    rto: int = FIRST_RTO
    attempts: int = 1
    sent: int = 0
    """When it was first sent (its answer is a round-trip sample unless it was retransmitted)."""
    via: FiveTuple | None = None
    """In band: the subsession's five-tuple in the direction it travels (None: UDP)."""
    relay: bool = False
    """In band between anchors (passed on by the agents between them)."""


@dataclass(slots=True)
class Rtt:
    """Smoothed round-trip time and its variation toward one peer (RFC 6298, section 2)."""

    srtt: int
    rttvar: int

    @classmethod
    def first(cls, sample: int) -> Rtt:
        return cls(sample, sample // 2)

    def update(self, sample: int) -> None:
        self.rttvar = (3 * self.rttvar + abs(self.srtt - sample)) // 4
        self.srtt = (7 * self.srtt + sample) // 8

    def rto(self) -> int:
        return min(max(self.srtt + 4 * self.rttvar, MIN_RTO), MAX_RTO)


@dataclass(frozen=True, slots=True)
class Received:
    """A control datagram for this agent that needs acting on."""

    src: int
    msg: cw.Message
    pending: Pending | None
    """For an answer: the request it answers (None for a request)."""


@dataclass(slots=True)
class Back:
    """How to answer a request that came in band: on ``via`` (its five-tuple reversed), stamped
    to ``agent``, with the request's numbers mirrored."""

    via: FiveTuple
    leftward: bool
    agent: int
    seq: int
    ack: int
    relay: bool = False
    sealed: bytes | None = None
    """The answer's message bytes, once given (sent again for a duplicate request)."""


@dataclass(frozen=True, slots=True)
class Expired:
    """What the timers produced: requests given up on, and the wake-ups that came due."""

    gave_up: list[Pending]
    woken: list[tuple[int, int]]
    """(what, session id) pairs registered with :meth:`Messenger.wake`."""


class Messenger:
    def __init__(self, me: int, metrics: Counter[str]) -> None:
        self.me = me
        self.metrics = metrics
        self.outbox: dict[tuple[int, int], Pending] = {}
        self.seen: dict[tuple[int, int], tuple[int, bytes | None]] = {}
        self._timers: list[tuple[int, int, tuple[int, int, int]]] = []
        self._n = 0
        self._next_id = 1
        self.keys: auth.KeyRing | None = None
        """Seal what is sent and verify what is received (set by the agent from its config)."""
        self.guard: auth.ReplayGuard | None = None
        self.peers: Peers | None = None
        """Told of every sender whose message authenticated (set by the agent)."""
        self.wall_offset = 0
        """Added to ``now`` for message stamps (ns since the Unix epoch)."""
        self.rtt: dict[int, Rtt] = {}
        """Per peer address, from the answers to requests sent once (Karn's rule)."""
        self.book = ib.SeqBook()
        """The numbers in-band segments carry, per direction of a subsession."""
        self.back: dict[tuple[int, int], Back] = {}
        """(sender, msg_id) of a request that came in band -> how to answer it."""
        self.route: Callable[[int, int], FiveTuple | None] = lambda sid, dst: None
        """(session id, the other anchor) -> this anchor's old-path subsession toward it, in the
        direction of travel (set by the reconfiguration; None: UDP)."""
        self.onward: Callable[[FiveTuple, bool], FiveTuple | None] = lambda t, leftward: None
        """At an agent between the anchors: the five-tuple an anchor's message that arrived on
        ``t`` goes on by (None: no session, dropped)."""
        self._relayed: dict[FiveTuple, int] = {}
        """Copies passed on per five-tuple (each tries the next combination of halves)."""
        self.agents: dict[FiveTuple, int] = {}
        """A subsession (left to right, as this agent sees it) -> its left agent's own address,
        when a NAT shows it under another (learned from its authenticated messages)."""

    def rto_for(self, dst: int) -> int:
        """The first retransmission timeout of a request to ``dst``."""
        r = self.rtt.get(dst)
        return FIRST_RTO if r is None else r.rto()

    def _measured(self, peer: int, sample: int) -> None:
        r = self.rtt.pop(peer, None)  # re-inserted: the dict's order is the order of measuring
        if r is None:
            r = Rtt.first(sample)
            if len(self.rtt) >= MAX_RTT_PEERS:
                del self.rtt[next(iter(self.rtt))]
        else:
            r.update(sample)
        self.rtt[peer] = r
        self.metrics["control.rtt_samples"] += 1

    def new_id(self) -> int:
        self._next_id = self._next_id % M32 + 1
        return self._next_id

    def start_ids_at(self, first: int) -> None:
        """Number the next messages from ``first`` on (an agent that replaces a predecessor whose
        ids its peers may still have cached)."""
        self._next_id = (first - 1) % M32

    def _push(self, at: int, key: tuple[int, int, int]) -> None:
        self._n += 1
        heapq.heappush(self._timers, (at, self._n, key))

    def frame(self, now: int, dst: int, msg: cw.Message) -> bytes:
        """The datagram for ``msg``, sealed at ``now`` when there are keys (a retransmission is
        sealed anew: a repeat of the same bytes would be refused as a replay)."""
        data = cw.encode(msg, self.keys, sender=self.me, receiver=dst, now=now + self.wall_offset)
        return cw.udp_frame(self.me, dst, p4names.CONTROL_UDP_PORT, data)

    def _via(self, dst: int, msg: cw.Message) -> FiveTuple | None:
        """The five-tuple a request to ``dst`` travels on in band (None: by UDP)."""
        sub = msg.sub
        if msg.kind not in HOP_BY_HOP or sub == _NONE:
            return None
        if dst == sub.dst and sub.src == self.me:
            return sub
        if dst == sub.src and sub.dst == self.me:
            return sub.reversed()
        return None

    def learn_agent(self, sub: FiveTuple, agent: int) -> None:
        """``agent`` authenticated a message that reached this agent on ``sub`` (left to right,
        as this agent sees it), from its left: what this agent sends back is stamped to it."""
        if agent == sub.src:
            self.agents.pop(sub, None)
            return
        self.agents.pop(sub, None)
        if len(self.agents) >= MAX_AGENTS:
            del self.agents[next(iter(self.agents))]
        self.agents[sub] = agent

    def _inband(self, now: int, p: Pending) -> bytes:
        assert p.via is not None
        if p.relay:
            left, agent = p.dst == p.msg.left_anchor, p.dst
        else:
            left = p.via.src != p.msg.sub.src
            agent = self.agents.get(p.msg.sub, p.dst) if left else p.dst
        data = cw.encode(p.msg, self.keys, sender=self.me, receiver=agent, now=now + self.wall_offset)
        seq, ack = self.book.numbers(p.via, p.attempts)
        self.metrics["control.inband_sent"] += 1
        return ib.frame(p.via, left, seq, ack, data, p.relay)

    def _send(self, now: int, p: Pending, out: list[Action]) -> None:
        data = self.frame(now, p.dst, p.msg) if p.via is None else self._inband(now, p)
        out.append(Send(data, Port.NET))

    def request(self, now: int, dst: int, msg: cw.Message, sid: int, out: list[Action]) -> None:
        """Send ``msg`` to ``dst`` and retransmit it until it is answered."""
        rto = self.rto_for(dst)
        via, relay = self._via(dst, msg), False
        if via is None and msg.kind in RELAYED and sid:
            via = self.route(sid, dst)
            relay = via is not None
        p = Pending(dst, msg, sid, now + rto, rto, sent=now, via=via, relay=relay)
        self.outbox[(dst, msg.msg_id)] = p
        self._push(p.at, (0, dst, msg.msg_id))
        self._send(now, p, out)

    def answer(self, now: int, dst: int, msg: cw.Message, out: list[Action]) -> None:
        """Send the answer ``msg`` and remember it for duplicates of the request (in band if the
        request came in band)."""
        b = self.back.get((dst, msg.msg_id))
        if b is None:
            data = self.frame(now, dst, msg)
        else:
            b.sealed = cw.encode(msg, self.keys, sender=self.me, receiver=b.agent, now=now + self.wall_offset)
            data = self._answer_frame(b)
        self.seen[(dst, msg.msg_id)] = (now + SEEN_FOR, data)
        self._push(now + SEEN_FOR, (_EXPIRE, 0, 0))
        out.append(Send(data, Port.NET))

    def _answer_frame(self, b: Back) -> bytes:
        assert b.sealed is not None
        self.metrics["control.inband_sent"] += 1
        return ib.frame(b.via, b.leftward, b.seq, b.ack, b.sealed, b.relay)

    def wake(self, at: int, what: int, sid: int) -> None:
        """Have :meth:`timer` report ``(what, sid)`` at ``at``."""
        self._push(at, (_WAKE, what, sid))

    def forget(self, sid: int) -> None:
        """Stop retransmitting the requests about session ``sid``'s reconfiguration (a
        RIGHT_REQUEST or DELEGATE is about the next one: it stays until answered)."""
        keep = (cw.Kind.RIGHT_REQUEST, cw.Kind.DELEGATE)
        for key in [k for k, p in self.outbox.items() if p.sid == sid and p.msg.kind not in keep]:
            del self.outbox[key]

    def next_deadline(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def empty(self) -> bool:
        return not (self.outbox or self.seen)

    def receive(self, now: int, frame: bytes, out: list[Action]) -> Received | None:
        """A control datagram from the NIC: what to act on (None: garbled, duplicate or stale)."""
        try:
            src, dst, data = cw.parse_udp(frame, p4names.CONTROL_UDP_PORT)
            msg = cw.decode(data, self.keys, self.guard, now=now + self.wall_offset)
        except PeerError as exc:
            self.metrics[f"drops.control.{getattr(exc, 'kind', 'garbled')}"] += 1
            return None
        if dst != self.me:
            self.metrics["drops.control.not_for_us"] += 1
            return None
        return self._accept(now, src, msg, None, out)

    def receive_inband(self, now: int, frame: bytes, out: list[Action]) -> Received | None:
        """An in-band segment from the NIC (reason INBAND): the message it carries, with ``sub``
        the subsession as this agent sees it (None: garbled, duplicate, stale, passed on, or not
        ours)."""
        wall = now + self.wall_offset
        try:
            seg = ib.parse(frame)
            if seg.tuple.dst != self.me:
                self.metrics["drops.control.not_for_us"] += 1
                return None
            if seg.relay:
                msg = cw.decode(seg.data, self.keys, None, now=wall)  # the MAC, before passing it on
                if (msg.left_anchor if seg.leftward else msg.right_anchor) != self.me:
                    self._pass_on(seg, out)
                    return None
            msg = cw.decode(seg.data, self.keys, self.guard, now=wall)
        except PeerError as exc:
            self.metrics[f"drops.control.{getattr(exc, 'kind', 'garbled')}"] += 1
            return None
        mine = seg.tuple.reversed() if seg.leftward else seg.tuple  # left to right, as seen here
        if msg.sub != _NONE and not seg.relay:
            if (msg.sub.dst, msg.sub.dport, msg.sub.proto) != (mine.dst, mine.dport, mine.proto):
                # a NAT in front of the left agent changes the left end only: anything else is
                # a message for another subsession
                self.metrics["drops.control.inband_mismatch"] += 1
                return None
            msg = replace(msg, sub=mine)
        self.metrics["control.inband_received"] += 1
        self.book.passed(seg)
        # who sent it: the neighbour as this agent sees it, or for an anchor's message the other
        # anchor (which the agents between passed it on from)
        src = seg.tuple.src
        if seg.relay:
            src = msg.right_anchor if seg.leftward else msg.left_anchor
        agent = src
        if msg.tag.type == TagType.HMAC_SHA256:
            agent = auth.Stamp.unpack(msg.tag.value).sender
            if not seg.leftward and not seg.relay:
                self.learn_agent(mine, agent)
        if msg.kind in cw.ANSWERS:
            key = (src, msg.msg_id)
            b = self.back.get(key)
            if b is None:
                back = seg.tuple.reversed()
                b = self.back[key] = Back(back, not seg.leftward, agent, seg.ack, seg.seq, seg.relay)
            else:  # a retransmission: its numbers got through, the answer mirrors them
                b.seq, b.ack = seg.ack, seg.seq
        return self._accept(now, src, msg, seg, out)

    def _pass_on(self, seg: ib.Segment, out: list[Action]) -> None:
        """An anchor's message for an agent further along: on by this agent's next subsession."""
        via = self.onward(seg.tuple, seg.leftward)
        if via is None:
            self.metrics["control.relay_unrouted"] += 1  # a straggler after the old path went, or a forgery
            return
        self.book.passed(seg)
        n = self._relayed.pop(via, 0) + 1
        if len(self._relayed) >= MAX_RELAYED:
            del self._relayed[next(iter(self._relayed))]
        self._relayed[via] = n
        seq, ack = self.book.numbers(via, n)
        self.metrics["control.relayed"] += 1
        out.append(Send(ib.frame(via, seg.leftward, seq, ack, seg.data, True), Port.NET))

    def _accept(
        self, now: int, src: int, msg: cw.Message, seg: ib.Segment | None, out: list[Action]
    ) -> Received | None:
        if self.peers is not None:  # a cell for the packet's own source, if the stamp names it
            self.peers.verified(seg.tuple.src if seg is not None else src, msg.tag, out)
        self.metrics[f"control.{msg.kind.name.lower()}"] += 1
        if msg.kind in cw.ANSWERS:
            cached = self.seen.get((src, msg.msg_id))
            if cached is not None:
                if cached[1] is not None:  # answered: again (in band with this copy's numbers)
                    b = self.back.get((src, msg.msg_id)) if seg is not None else None
                    again = self._answer_frame(b) if b is not None and b.sealed else cached[1]
                    out.append(Send(again, Port.NET))
                return None
            self.seen[(src, msg.msg_id)] = (now + SEEN_FOR, None)
            self._push(now + SEEN_FOR, (_EXPIRE, 0, 0))
            return Received(src, msg, None)
        p = self.outbox.pop((src, msg.msg_id), None)
        if p is None:
            self.metrics["control.duplicate_answer"] += 1
            return None
        if p.attempts == 1 and now >= p.sent:  # an answer to a retransmitted request is ambiguous
            self._measured(src, now - p.sent)
        return Received(src, msg, p)

    def timer(self, now: int, out: list[Action]) -> Expired:
        """Retransmit what is due, forget old answers; report abandoned requests and wake-ups."""
        gave_up: list[Pending] = []
        woken: list[tuple[int, int]] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, (kind, a, b) = heapq.heappop(self._timers)
            if kind == _EXPIRE:
                for k in [k for k, (exp, _) in self.seen.items() if exp <= now]:
                    del self.seen[k]
                    self.back.pop(k, None)
                continue
            if kind == _WAKE:
                woken.append((a, b))
                continue
            p = self.outbox.get((a, b))
            if p is None or p.at > now:
                continue
            if p.attempts >= ATTEMPTS:
                del self.outbox[(a, b)]
                self.metrics[f"reconf.gave_up.{p.msg.kind.name.lower()}"] += 1
                gave_up.append(p)
                continue
            p.attempts += 1
            p.rto = min(p.rto * 2, MAX_RTO)
            p.at = now + p.rto
            self._push(p.at, (0, a, b))
            self.metrics["reconf.retransmitted"] += 1
            self._send(now, p, out)
        return Expired(gave_up, woken)
