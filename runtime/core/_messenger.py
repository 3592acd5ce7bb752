"""Reliable control messaging between agents (docs/protocol.md §4, "Reliability").

:class:`Messenger` is sans-IO like the rest of the agent: it sends requests and retransmits them
with a doubling timeout until an answer with the same ``msg_id`` arrives (or it gives up): the
first timeout toward a peer comes from the round trips measured to it (RFC 6298: smoothed RTT plus
four variations, at least MIN_RTO; FIRST_RTO before any answer), caches
the answers it gave per (sender, ``msg_id``) so a duplicate request is answered again with the
same bytes without being acted on twice, and keeps the timers for both plus the wake-ups of the
reconfiguration (new-path SYN retransmissions, lock timeouts).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

from dysco import p4names
from dysco.errors import PeerError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core._events import Action, Port, Send
from dysco.runtime.core._peers import Peers

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

    def request(self, now: int, dst: int, msg: cw.Message, sid: int, out: list[Action]) -> None:
        """Send ``msg`` to ``dst`` and retransmit it until it is answered."""
        rto = self.rto_for(dst)
        p = Pending(dst, msg, sid, now + rto, rto, sent=now)
        self.outbox[(dst, msg.msg_id)] = p
        self._push(p.at, (0, dst, msg.msg_id))
        out.append(Send(self.frame(now, dst, msg), Port.NET))

    def answer(self, now: int, dst: int, msg: cw.Message, out: list[Action]) -> None:
        """Send the answer ``msg`` and remember it for duplicates of the request."""
        data = self.frame(now, dst, msg)
        self.seen[(dst, msg.msg_id)] = (now + SEEN_FOR, data)
        self._push(now + SEEN_FOR, (_EXPIRE, 0, 0))
        out.append(Send(data, Port.NET))

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
        if self.peers is not None:
            self.peers.verified(src, msg.tag, out)
        self.metrics[f"control.{msg.kind.name.lower()}"] += 1
        if msg.kind in cw.ANSWERS:
            cached = self.seen.get((src, msg.msg_id))
            if cached is not None:
                if cached[1] is not None:
                    out.append(Send(cached[1], Port.NET))
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
            out.append(Send(self.frame(now, p.dst, p.msg), Port.NET))
        return Expired(gave_up, woken)
