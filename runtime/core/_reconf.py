"""Reconfiguration of live sessions (paper §3, DESIGN.md §4): locking, deltas, the new path,
the two-path phase at both anchors, completion and cancel.

:class:`Reconfigurer` is part of the sans-IO agent: the agent hands it control datagrams,
punted packets of sessions it anchors, new-path SYNs and timers; it returns actions through
the same ``out`` list.  Control messages (:mod:`dysco.runtime.core._control_messages`) go through a
:class:`~dysco.runtime.core._messenger.Messenger`: requests are retransmitted with backoff until
answered, and answers are cached per (sender, msg_id), so a duplicate is answered again
without acting twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._alloc import PortsExhausted
from dysco.runtime.core._events import Action, Delete, Install, Mapping, Modify, Notify, Port, Send, Table
from dysco.runtime.core._fsm import SessionState, SubsessionState
from dysco.runtime.core._messenger import ATTEMPTS, FIRST_RTO, MAX_RTO, MS, Messenger, Pending
from dysco.runtime.core._migrate import Migrations
from dysco.runtime.core._splice_translation import Spliced, compose
from dysco.runtime.core._twopath import M32, Anchor, PathSide, Phase, translate
from dysco.runtime.core._types import FiveTuple, ip_str

if TYPE_CHECKING:
    from dysco.runtime.core._agent import Agent, Direction, Session, Subsession

MAC = b"\x02\0\0\0\0\x0a"
SECOND = 1000 * MS
SYN_TIMER = 1
"""Wake-up: retransmit the new-path SYN (or give the new path up)."""
LOCK_TIMER = 2
"""Wake-up: the right anchor's lock expires if the new path has not reached it."""
PROBE_TIMER = 3
"""Wake-up: probe the host again, or stop waiting for its answer."""
PROBE_RTO = 600 * MS
"""The first probe's timeout: Linux answers at most one SYN or out-of-window segment per
connection every 500 ms (``net.ipv4.tcp_invalid_ratelimit``), so a probe sent sooner is ignored."""
PROBE_ATTEMPTS = 3
"""Probes before an anchor whose host stays silent switches without knowing where its host's
data ends (SWITCH with status IDLE; docs/protocol.md §4)."""
LOCK_TIMEOUT = 30 * SECOND
"""How long a right anchor stays locked without the new path's SYN (docs/protocol.md §4): longer
than the left anchor takes to get its ackLock and give its SYN up."""


class LockState(enum.Enum):
    UNLOCKED = "unlocked"
    PENDING = "lock_pending"
    LOCKED = "locked"


@dataclass(slots=True)
class Lock:
    """The lock of a session's right subsession, kept by the agent on its left."""

    state: LockState
    rid: tuple[int, int]
    upstream: tuple[int, cw.Message] | None
    """Who asked (address, request) — None at the left anchor."""
    saved: tuple[int, cw.Message] | None = None


class Reconfigurer:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.me = agent.config.address
        self.locks: dict[int, Lock] = {}
        self.anchors: dict[int, Anchor] = {}
        self.awaiting: dict[FiveTuple, int] = {}
        """Right anchor: the left anchor's view of the session -> session id (new-path SYN)."""
        self.rids: dict[int, tuple[int, int]] = {}
        self.splices: dict[int, tuple[int, Spliced]] = {}
        """A spliced proxy's inbound session id -> its outbound session id and the translations:
        reconfiguration messages cross from the one to the other here."""
        self.held: dict[int, tuple[int, cw.Message]] = {}
        """Right anchor done, waiting for the TEARDOWN: a REQUEST_LOCK that came on the new path."""
        self.msgs = Messenger(self.me, agent.metrics)
        self.mig = Migrations(self)
        """State migration's middlebox side (the adapter sets ``mig.enabled`` when it has a hook)."""

    # ---- bookkeeping ------------------------------------------------------------------------------

    def _id(self) -> int:
        return self.msgs.new_id()

    def _request(self, now: int, dst: int, msg: cw.Message, sid: int, out: list[Action]) -> None:
        self.msgs.request(now, dst, msg, sid, out)

    def _answer(self, now: int, dst: int, msg: cw.Message, out: list[Action]) -> None:
        self.msgs.answer(now, dst, msg, out)

    def next_deadline(self) -> int | None:
        return self.msgs.next_deadline()

    def involved(self, sid: int) -> bool:
        """Whether session ``sid`` is locked or anchored by a reconfiguration here."""
        return sid in self.locks or sid in self.anchors

    def empty(self) -> bool:
        busy = self.locks or self.anchors or self.awaiting or self.rids or self.held or self.splices
        return not busy and self.msgs.empty() and self.mig.empty()

    def timer(self, now: int, out: list[Action]) -> None:
        expired = self.msgs.timer(now, out)
        for what, sid in expired.woken:
            if what == SYN_TIMER:
                self._syn_timer(now, sid, out)
            elif what == LOCK_TIMER:
                self._lock_timer(now, sid, out)
            elif what == PROBE_TIMER:
                self._probe_timer(now, sid, out)
        for p in expired.gave_up:
            self._gave_up(now, p, out)

    # ---- triggers ---------------------------------------------------------------------------------

    def start(self, now: int, s: Session, right: int, hops: tuple[int, ...], out: list[Action]) -> int:
        """This agent, left anchor of ``s``, replaces the part of the path up to ``right`` with
        ``hops``.  Returns the reconfiguration id (0: refused; a Notify says why)."""
        if s.fsm.state not in (SessionState.ESTABLISHED, SessionState.HALF_CLOSED) or s.down is None:
            return self._refuse(out, s, "the session is not established on its right side")
        if s.sid in self.locks or s.sid in self.anchors:
            return self._refuse(out, s, "the session is already being reconfigured")
        if len(hops) + 1 > wire.MAX_HOPS:
            return self._refuse(out, s, f"{len(hops)} new middleboxes is too many")
        rid = self._id()
        self.locks[s.sid] = Lock(LockState.PENDING, (self.me, rid), None)
        self.rids[rid] = (s.sid, 0)
        a = self._anchor(s, True, right)
        self.anchors[s.sid] = a
        a.extra["rid"] = rid
        a.hops = hops
        self._punt(s, a, out)
        msg = cw.Message(
            cw.Kind.REQUEST_LOCK, self._id(), rid, self.me, right, s.down.tuple, self._left_view(s),
            hops=hops,
        )  # fmt: skip
        self._request(now, s.down.tuple.dst, msg, s.sid, out)
        out.append(Notify("reconfigure_started", f"{s.session}: rid {rid}", s.sid))
        return rid

    def _refuse(self, out: list[Action], s: Session, why: str) -> int:
        self.agent.metrics["reconf.refused"] += 1
        out.append(Notify("reconfigure_refused", f"{s.session}: {why}", s.sid, True))
        return 0

    def _left_view(self, s: Session) -> FiveTuple:
        return s.emitted if s.emitted is not None else s.session

    def _anchor(self, s: Session, left: bool, peer: int) -> Anchor:
        sub = s.down if left else s.up
        assert sub is not None
        in_key = sub.tuple.reversed() if left else sub.tuple
        old_in, _ = s.mappings[(Table.IN, in_key)]
        # the host's (or middlebox application's) packets toward this side; a middle agent has two
        out_target = sub.tuple if left else sub.tuple.reversed()
        out_key = next(
            k for (t, k), (m, _) in s.mappings.items() if t is Table.OUT and m.target == out_target
        )
        old_out, _ = s.mappings[(Table.OUT, out_key)]
        assert old_in.target is not None and old_out.target is not None
        return Anchor(left, peer, out_key, old_out.target, old_in.target, in_key, old_in.seq_delta)

    def _punt(self, s: Session, a: Anchor, out: list[Action]) -> None:
        for table, key in ((Table.OUT, a.out_key), (Table.IN, a.old_in_key)):
            _m, d = s.mappings[(table, key)]
            m2 = Mapping(table, key, None, s.sid)
            s.mappings[(table, key)] = (m2, d)
            out.append(Modify(m2))

    def _fast(self, s: Session, a: Anchor, new: bool, out: list[Action]) -> None:
        """The session's entries back to the fast path: on the new path (with its deltas) or the old."""
        target = a.new_target if new else a.old_target
        delta = a.new_delta if new else a.old_delta
        ecr = -a.new_ts & M32 if new else 0
        assert target is not None
        for table, key, m in (
            (Table.OUT, a.out_key, Mapping(Table.OUT, a.out_key, target, s.sid, 0, delta, ts_ecr_delta=ecr)),
            (Table.IN, a.old_in_key, Mapping(Table.IN, a.old_in_key, a.in_target, s.sid, a.old_delta, 0)),
        ):
            if (table, key) in s.mappings:
                s.mappings[(table, key)] = (m, s.mappings[(table, key)][1])
                out.append(Modify(m))
        if a.new_in_key is not None and (Table.IN, a.new_in_key) in s.mappings:
            m = Mapping(Table.IN, a.new_in_key, a.in_target, s.sid, a.new_delta, 0, a.new_ts, 0, a.new_ws)
            s.mappings[(Table.IN, a.new_in_key)] = (m, s.mappings[(Table.IN, a.new_in_key)][1])
            out.append(Modify(m))

    # ---- control datagrams ----------------------------------------------------------------------------

    def control(self, now: int, frame: bytes, out: list[Action]) -> None:
        r = self.msgs.receive(now, frame, out)
        if r is None:
            return
        if r.pending is None:
            self._on_request(now, r.src, r.msg, out)
        else:
            self._on_answer(now, r.src, r.pending, r.msg, out)

    def _session_by_up(self, sub: FiveTuple) -> Session | None:
        sid = self.agent.by_key.get((Table.IN, sub))
        return self.agent.sessions.get(sid) if sid is not None else None

    def _session_by_down(self, sub: FiveTuple) -> Session | None:
        sid = self.agent.by_key.get((Table.IN, sub.reversed()))
        return self.agent.sessions.get(sid) if sid is not None else None

    def _reply(
        self, now: int, src: int, req: cw.Message, kind: cw.Kind, out: list[Action], **kw: object
    ) -> None:
        self._answer(now, src, replace(req, kind=kind, **kw), out)  # type: ignore[arg-type]

    def _on_request(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        k = cw.Kind
        if msg.kind is k.REQUEST_LOCK:
            self._request_lock(now, src, msg, out)
        elif msg.kind is k.CANCEL_LOCK or msg.kind is k.TEARDOWN:
            ans = k.ACK_CANCEL if msg.kind is k.CANCEL_LOCK else k.ACK_TEARDOWN
            self._reply(now, src, msg, ans, out)
            s = self._session_by_up(msg.sub)
            if s is not None:
                self._release(now, s, msg, out)
        elif msg.kind is k.SWITCH:
            self._reply(now, src, msg, k.ACK_SWITCH, out)
            sid = (
                self.rids.get(msg.rid, (0, 0))[0]
                if msg.left_anchor == self.me
                else self.awaiting.get(msg.left_session, 0)
            )
            a = self.anchors.get(sid)
            if a is not None and not a.left and a.phase is Phase.MIGRATING:
                self._switch(now, self.agent.sessions[sid], a, out)  # the state is in place
            if a is not None and not a.rcvd_known:
                a.learn_peer(msg.value, msg.status is cw.Status.IDLE)
                self._check(now, self.agent.sessions[sid], a, out)
        elif msg.kind is k.DONE:
            self._reply(now, src, msg, k.ACK_DONE, out)
            sid = self.rids.get(msg.rid, (0, 0))[0]
            a = self.anchors.get(sid)
            if a is not None:
                a.peer_done = True
                self._check(now, self.agent.sessions[sid], a, out)
        elif msg.kind is k.FIN:
            self._reply(now, src, msg, k.ACK_FIN, out)
            self._fin_msg(now, msg, out)
        elif msg.kind is k.RIGHT_REQUEST:
            self._right_request_in(now, src, msg, out)
        else:
            self.mig.request(now, src, msg, out)

    # ---- splice ----------------------------------------------------------------------------------

    def splice(self, now: int, s1: Session, s2: Session, t: Spliced, out: list[Action]) -> None:
        """Join a proxy's inbound session ``s1`` and outbound session ``s2`` into one path through
        this agent, then ask the agent on the left to delete this hop (rightRequest)."""
        assert s2.down is not None
        self.splices[s1.sid] = (s2.sid, t)
        self.agent.metrics["splice.started"] += 1
        out.append(Notify("splice_started", f"{s1.session} + {s2.session}", s1.sid))
        if not self.right_request(now, s1, s2.down.tuple.dst, (), out):
            del self.splices[s1.sid]

    def _down(self, s: Session) -> Subsession | None:
        """The subsession to the right of ``s`` at this agent: a spliced proxy's outbound one."""
        if s.down is not None or s.sid not in self.splices:
            return s.down
        s2 = self.agent.sessions.get(self.splices[s.sid][0])
        return s2.down if s2 is not None else None

    def _splice_failed(self, s: Session | None, why: str, out: list[Action]) -> None:
        """The reconfiguration that was to remove this proxy did not happen: both sessions go on
        through it (the proxy may splice again)."""
        if s is not None and self.splices.pop(s.sid, None) is not None:
            self.agent.metrics["splice.failed"] += 1
            out.append(Notify("splice_failed", f"{s.session}: {why}", s.sid, True))

    def _spliced_away(self, now: int, s1: Session, out: list[Action]) -> None:
        """The old path through this proxy is torn down: free both sessions, then drop whatever
        the proxy's kernel still sends on its two sockets (and stragglers of the old subsessions)."""
        sid2, _t = self.splices.pop(s1.sid)
        s2 = self.agent.sessions.get(sid2)
        keys = [(Table.OUT, s1.session.reversed())]
        if s1.up is not None:
            keys.append((Table.IN, s1.up.tuple))
        if s2 is not None:
            keys.append((Table.OUT, s2.session))
            if s2.down is not None:
                keys.append((Table.IN, s2.down.tuple.reversed()))
        self.agent._close(now, s1, "spliced", out)
        if s2 is not None:
            self.agent._close(now, s2, "spliced", out)
        for table, key in keys:
            if (table, key) in self.agent.by_key or (table, key) in self.agent.drops:
                continue
            m = Mapping(table, key, None, 0, drop=True)
            self.agent.drops[(table, key)] = m
            self.agent._entries[table] += 1
            out.append(Install(m))
        self.agent.metrics["splice.completed"] += 1
        out.append(Notify("spliced", f"{s1.session}: the proxy is out of the path", s1.sid))

    # ---- rightRequest ------------------------------------------------------------------------------

    def right_request(
        self, now: int, s: Session, right: int, hops: tuple[int, ...], out: list[Action]
    ) -> bool:
        """Ask the agent on this agent's left (``s.up``) to replace the part of the path from it to
        ``right`` by ``hops``: it becomes the left anchor.  False if refused here (a Notify says why)."""
        why = ""
        if s.up is None:
            why = "no agent on the left of this one"
        elif s.fsm.state not in (SessionState.ESTABLISHED, SessionState.HALF_CLOSED):
            why = f"the session is not established ({s.fsm.state.name})"
        elif len(hops) + 1 > wire.MAX_HOPS:
            why = f"{len(hops)} new middleboxes is too many"
        if why or s.up is None:
            self.agent.metrics["reconf.right_request_refused"] += 1
            out.append(Notify("right_request_refused", f"{s.session}: {why}", s.sid, True))
            return False
        sub = s.up.tuple
        a = self.anchors.get(s.sid)
        if a is not None and not a.left and a.sent_done and a.new_in_key is not None:
            sub = a.new_in_key  # our side is done, the TEARDOWN is on its way: the new path is ours
        left = sub.src
        msg = cw.Message(cw.Kind.RIGHT_REQUEST, self._id(), 0, left, right, sub, hops=hops)
        self._request(now, left, msg, s.sid, out)
        self.agent.metrics["reconf.right_request_sent"] += 1
        out.append(Notify("right_request_sent", f"{s.session}: to {ip_str(left)}", s.sid))
        return True

    def _right_request_in(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        """The agent on our right asks us to start a reconfiguration as its left anchor."""
        s = self._session_by_down(msg.sub)
        if s is None or msg.sub.dst != src:
            self._reply(now, src, msg, cw.Kind.ACK_RIGHT, out, status=cw.Status.NO_SESSION)
            return
        rid = self.start(now, s, msg.right_anchor, msg.hops, out)
        closing = s.fsm.state is SessionState.CLOSING
        status = cw.Status.OK if rid else cw.Status.CLOSING if closing else cw.Status.BUSY
        self._reply(now, src, msg, cw.Kind.ACK_RIGHT, out, rid=rid, status=status)

    def _right_answered(
        self, s: Session | None, p: Pending, msg: cw.Message | None, out: list[Action]
    ) -> None:
        sid = p.sid
        name = s.session if s is not None else f"session {sid}"
        if msg is None or msg.status is not cw.Status.OK:
            self._splice_failed(s, "the agent on the left did not start the reconfiguration", out)
        if msg is None:
            out.append(Notify("right_request_failed", f"{name}: {ip_str(p.dst)} did not answer", sid, True))
        elif msg.status is cw.Status.OK:
            out.append(
                Notify("right_request_accepted", f"{name}: {ip_str(p.dst)} started rid {msg.rid}", sid)
            )
        else:
            why = f"{ip_str(p.dst)} refused ({msg.status.name})"
            out.append(Notify("right_request_refused", f"{name}: {why}", sid, True))

    def _request_lock(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        s = self._session_by_up(msg.sub)
        if s is None:
            return self._nack(now, src, msg, cw.Status.NO_SESSION, out)
        a = self.anchors.get(s.sid)
        lock = self.locks.get(s.sid)
        renewed = a is not None and not a.left and msg.left_anchor == a.peer and msg.rid != a.extra["rid"]
        if a is not None and renewed and msg.sub == a.old_in_key:
            # the same left anchor asks again on the old path: it gave the old rid up (it runs one
            # reconfiguration per session at a time) and its CANCEL_LOCK is still on its way
            self._fast(s, a, False, out)
            if a.new_in_key is not None:
                self._drop_mapping(s, Table.IN, a.new_in_key, out)
            self._forget(s.sid)
            self.agent.metrics["reconf.superseded"] += 1
            a = None
        old_rid = lock is not None and lock.rid[0] == msg.left_anchor and lock.rid[1] != msg.rid
        if lock is not None and lock.upstream is not None and lock.saved is None and old_rid:
            # the same at a middle: the old lock goes, and a CANCEL_LOCK after it to the right
            self._cancel_down(now, s, lock.upstream[1], out)
            del self.locks[s.sid]
            self.msgs.forget(s.sid)
            self.agent.metrics["reconf.superseded"] += 1
        if a is not None and not a.left and a.sent_done and msg.sub == a.new_in_key:
            if renewed:
                # from the same left anchor, for a new rid: it has completed (it acted on our
                # DONE) and its TEARDOWN is still on its way along the old path
                self._complete_right(now, s, a, out)
                self._forget(s.sid)
                self._replay_held(now, s, out)
            elif s.sid not in self.held:
                # another agent on the new path asks before our side completed: it waits for the
                # TEARDOWN (or the session's end), then it is acted on
                self.held[s.sid] = (src, msg)
                self.agent.metrics["reconf.held"] += 1
                return None
            else:
                return self._nack(now, src, msg, cw.Status.BUSY, out)
        lock = self.locks.get(s.sid)
        if lock is not None and lock.state is LockState.PENDING and lock.saved is None:
            lock.saved = (src, msg)
            self.agent.metrics["reconf.saved"] += 1
            return None
        if s.fsm.state is SessionState.CLOSING:
            return self._nack(now, src, msg, cw.Status.CLOSING, out)
        if lock is not None or s.sid in self.anchors:
            return self._nack(now, src, msg, cw.Status.BUSY, out)
        if msg.right_anchor == self.me:
            a = self._anchor(s, False, msg.left_anchor)
            a.new_delta = (msg.delta_fwd + a.old_delta) & M32
            a.new_ts, a.new_ws = msg.ts_fwd, msg.ws_fwd
            a.extra["rid"] = msg.rid
            a.extra["migrate"] = msg.value & cw.MIGRATE
            a.extra["lock_until"] = now + LOCK_TIMEOUT
            self.msgs.wake(now + LOCK_TIMEOUT, LOCK_TIMER, s.sid)
            self.anchors[s.sid] = a
            self.awaiting[msg.left_session] = s.sid
            self._punt(s, a, out)
            self._reply(now, src, msg, cw.Kind.ACK_LOCK, out, right_session=s.session)
            return None
        down = self._down(s)
        if down is None:
            return self._nack(now, src, msg, cw.Status.NOT_ON_PATH, out)
        self.locks[s.sid] = Lock(LockState.PENDING, (msg.left_anchor, msg.rid), (src, msg))
        fwd = replace(msg, msg_id=self._id(), sub=down.tuple, delta_fwd=(msg.delta_fwd + s.delta_up) & M32)
        if self.mig.marks(s, msg, down.tuple.dst):  # this middlebox's state moves to the new one
            fwd = replace(fwd, value=fwd.value | cw.MIGRATE)
            self.agent.metrics["migrate.marked"] += 1
        if s.sid in self.splices:  # the proxy's translation joins the segment's
            t = self.splices[s.sid][1].fwd
            fwd = replace(fwd, delta_fwd=(fwd.delta_fwd + t.seq) & M32, ts_fwd=(fwd.ts_fwd + t.ts) & M32,
                          ws_fwd=compose(fwd.ws_fwd, t.ws))  # fmt: skip
        self._request(now, down.tuple.dst, fwd, s.sid, out)
        return None

    def _nack(self, now: int, src: int, msg: cw.Message, status: cw.Status, out: list[Action]) -> None:
        self.agent.metrics["reconf.nacked"] += 1
        self._reply(now, src, msg, cw.Kind.NACK_LOCK, out, status=status)

    def _on_answer(self, now: int, src: int, p: Pending, msg: cw.Message, out: list[Action]) -> None:
        if p.msg.kind is cw.Kind.RIGHT_REQUEST:
            return self._right_answered(self.agent.sessions.get(p.sid), p, msg, out)
        if p.msg.kind is cw.Kind.STATE_EXPORT:
            return self._state_answered(now, p, msg, out)
        self._teardown_done(p)
        if p.msg.kind is not cw.Kind.REQUEST_LOCK:
            return  # acks of cancel, teardown, switch, done: nothing more to do
        s = self.agent.sessions.get(p.sid)
        lock = self.locks.get(p.sid)
        if s is None or lock is None or lock.rid != (p.msg.left_anchor, p.msg.rid):
            return
        self._resolved(now, s, lock, msg, msg.kind is cw.Kind.ACK_LOCK, out)

    def _resolved(
        self, now: int, s: Session, lock: Lock, msg: cw.Message, ok: bool, out: list[Action]
    ) -> None:
        saved, lock.saved = lock.saved, None
        if lock.upstream is None:  # the left anchor
            if ok:
                lock.state = LockState.LOCKED
                self._new_path(now, s, msg, out)
            else:
                self._abandon(
                    now, s, f"lock refused ({msg.status.name})", out, cancel=msg.status is cw.Status.OK
                )
        else:
            src, req = lock.upstream
            if ok:
                lock.state = LockState.LOCKED
                rev = (msg.delta_rev + s.delta_down) & M32
                ts, ws = msg.ts_rev, msg.ws_rev
                if s.sid in self.splices:
                    t = self.splices[s.sid][1].rev
                    rev, ts, ws = (rev + t.seq) & M32, (ts + t.ts) & M32, compose(ws, t.ws)
                self._reply(now, src, req, cw.Kind.ACK_LOCK, out, right_session=msg.right_session,
                            delta_rev=rev, ts_rev=ts, ws_rev=ws, value=msg.value)  # fmt: skip
            else:
                del self.locks[s.sid]
                self._reply(now, src, req, cw.Kind.NACK_LOCK, out, status=msg.status)
                self._splice_failed(s, f"the lock was refused ({msg.status.name})", out)
        if saved is not None:
            if ok:
                self._nack(now, saved[0], saved[1], cw.Status.BUSY, out)
            else:
                self._request_lock(now, saved[0], saved[1], out)

    def _teardown_done(self, p: Pending) -> None:
        """Our own TEARDOWN was answered (or given up): its subsession's port may be reused."""
        sub = p.msg.sub
        if p.msg.kind is cw.Kind.TEARDOWN and p.msg.left_anchor == self.me and sub.src == self.me:
            self.agent.ports.release(sub.dst, sub.sport)

    def _gave_up(self, now: int, p: Pending, out: list[Action]) -> None:
        self._teardown_done(p)
        if p.msg.kind is cw.Kind.STATE_EXPORT:
            self._state_answered(now, p, None, out)
        if p.msg.kind is cw.Kind.RIGHT_REQUEST:
            self._right_answered(self.agent.sessions.get(p.sid), p, None, out)
        if p.msg.kind is cw.Kind.REQUEST_LOCK:
            s = self.agent.sessions.get(p.sid)
            lock = self.locks.get(p.sid)
            if s is not None and lock is not None:
                fail = replace(p.msg, kind=cw.Kind.NACK_LOCK, status=cw.Status.OK)
                if lock.upstream is not None:
                    self._cancel_down(now, s, p.msg, out)
                self._resolved(now, s, lock, fail, False, out)

    # ---- the new path -----------------------------------------------------------------------------

    def _new_path(self, now: int, s: Session, msg: cw.Message, out: list[Action]) -> None:
        a = self.anchors[s.sid]
        a.new_delta = (msg.delta_rev + a.old_delta) & M32
        a.new_ts, a.new_ws = msg.ts_rev, msg.ws_rev
        a.extra["migrate"] = msg.value & cw.MIGRATE if len(a.hops) == 1 else 0
        hops = (*a.hops, msg.right_anchor)
        try:
            lport = self.agent.ports.allocate(hops[0])
        except PortsExhausted:
            self._abandon(now, s, "no port for the new path", out, cancel=True)
            return
        view = self._left_view(s)
        new = FiveTuple(self.me, hops[0], lport, view.dport)
        a.new_target = new
        a.new_in_key = new.reversed()
        a.extra["lport"] = lport
        a.extra["first"] = hops[0]
        self.agent._install(s, Mapping(Table.IN, new.reversed(), None, s.sid), _rev(), out)
        # the host's data keeps taking the old path until the SYN-ACK: the boundary is fixed then
        a.phase = Phase.NEW_PATH
        seq = ((a.sent_so_far() or 1) - 1) & M32
        payload = self.agent.seal_syn(now, wire.SynPayload(view, hops))
        syn = pk.TcpFrame(MAC, MAC, new.src, new.dst, new.sport, new.dport, seq, 0, pk.SYN, 65535,
                          b"\x02\x04\x05\xb4", payload)  # fmt: skip
        a.syn = syn.to_bytes()
        a.extra["right"] = msg.right_anchor
        a.extra["syn_rto"] = FIRST_RTO
        a.extra["syn_tries"] = 1
        out.append(Send(a.syn, Port.NET))
        self.msgs.wake(now + FIRST_RTO, SYN_TIMER, s.sid)

    def _switch(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """This anchor switches: what its host sent so far is old, later data takes the new path."""
        a.fix_boundary()
        a.phase = Phase.TWO_PATH
        self._switch_msg(now, s, a, out)

    # ---- state migration: the anchors' side (the middleboxes' is in _migrate) ------------------------

    def _export(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The new path is up: the old middlebox exports its state to the new one before anyone
        switches (everything stays on the old path meanwhile)."""
        assert s.down is not None and a.new_target is not None
        a.phase = Phase.MIGRATING
        old, new = s.down.tuple.dst, a.hops[0]
        msg = cw.Message(cw.Kind.STATE_EXPORT, self._id(), a.extra["rid"], self.me, a.peer, s.down.tuple,
                         a.new_target, hops=(new,), value=cw.EXPORT)  # fmt: skip
        self._request(now, old, msg, s.sid, out)
        self.agent.metrics["migrate.started"] += 1
        out.append(Notify("state_migration_started", f"{s.session}: {ip_str(old)} -> {ip_str(new)}", s.sid))

    def _state_answered(self, now: int, p: Pending, msg: cw.Message | None, out: list[Action]) -> None:
        if p.msg.value == cw.TRANSFER:
            return self.mig.relayed(now, p.msg.msg_id, msg, out)
        s = self.agent.sessions.get(p.sid)
        a = self.anchors.get(p.sid)
        if s is None or a is None or a.phase is not Phase.MIGRATING or a.extra["rid"] != p.msg.rid:
            return None
        if msg is not None and msg.status is cw.Status.OK:
            self.agent.metrics["migrate.completed"] += 1
            out.append(Notify("state_migrated", f"{s.session}: rid {a.extra['rid']}", s.sid))
            self._switch(now, s, a, out)
            return None
        if msg is None:
            why, status = f"{ip_str(p.dst)} did not answer the state export", "timeout"
        else:
            text = msg.state.decode("utf-8", "replace")
            why, status = f"{msg.status.name}: {text}", msg.status.name.lower()
        self.agent.metrics["migrate.failed"] += 1
        self.agent.metrics[f"migrate.failed.{status}"] += 1
        self._abandon(now, s, f"the state migration failed ({why})", out, cancel=True)
        return None

    def _switch_msg(self, now: int, s: Session, a: Anchor, out: list[Action], *, idle: bool = False) -> None:
        """Tell the peer where this host's old-path data ends (``old_sent``).

        A host that sent nothing since the lock (``a.idle``) may still have bytes on the old
        path that a TCP-terminating proxy holds; where they end is the host's ``snd_nxt``, which
        only its next segment shows.  The message waits for that segment, and a probe elicits
        one (:meth:`_probe`); only a host that stays silent through every probe is reported as
        IDLE (``idle``), the peer then waiting for nothing on the old path."""
        if a.host_ack is None and not a.probes:
            self._probe(now, s, a, out)  # the completion test needs the host's acknowledgment too
        value = a.idle_seq if a.idle else a.old_sent
        if value is None and not idle:
            a.switch_waits = True
            return
        a.switch_waits = False
        rid = a.extra["rid"]
        left = self.me if a.left else a.peer
        status = cw.Status.OK if value is not None else cw.Status.IDLE
        msg = cw.Message(cw.Kind.SWITCH, self._id(), rid, left, self.me if not a.left else a.peer,
                         left_session=self._left_view(s) if a.left else FiveTuple(0, 0, 0, 0, 0),
                         value=value or 0, status=status)  # fmt: skip
        self._request(now, a.peer, msg, s.sid, out)

    def _probe(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Ask the host for a segment: a SYN on its established connection is answered with an
        ACK carrying its ``snd_nxt`` and ``rcv_nxt`` whatever its sequence number (RFC 5961
        §4.2, Linux's challenge ACK).  Only an end host is probed: a middlebox application
        would pass the SYN on."""
        a.probes += 1
        end = s.up is None if a.left else s.down is None
        if end and s.macs is not None:
            t = a.in_target
            probe = pk.TcpFrame(*s.macs, t.src, t.dst, t.sport, t.dport, 0, 0, pk.SYN, 0)
            out.append(Send(probe.to_bytes(), Port.HOST))
            self.agent.metrics["reconf.host_probes"] += 1
        self.msgs.wake(now + PROBE_RTO * (1 << (a.probes - 1)), PROBE_TIMER, s.sid)

    def _probe_timer(self, now: int, sid: int, out: list[Action]) -> None:
        a = self.anchors.get(sid)
        s = self.agent.sessions.get(sid)
        if a is None or s is None or a.phase is not Phase.TWO_PATH:
            return
        if a.host_ack is not None and not a.switch_waits:
            return  # the host answered
        if a.probes < PROBE_ATTEMPTS:
            self._probe(now, s, a, out)
        elif a.switch_waits:
            self.agent.metrics["reconf.idle_switch"] += 1
            self._switch_msg(now, s, a, out, idle=True)

    def _host_spoke(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The host's segment showed its sequence number: the SWITCH that waited for it goes."""
        if a.switch_waits and a.idle_seq is not None:
            self._switch_msg(now, s, a, out)

    def _syn_timer(self, now: int, sid: int, out: list[Action]) -> None:
        a = self.anchors.get(sid)
        s = self.agent.sessions.get(sid)
        if a is None or s is None or a.phase is not Phase.NEW_PATH:
            return
        if a.extra["syn_tries"] >= ATTEMPTS:
            self.agent.metrics["reconf.new_path_failed"] += 1
            self._abandon(now, s, "the new path could not be set up", out, cancel=True)
            return
        a.extra["syn_tries"] += 1
        a.extra["syn_rto"] = min(a.extra["syn_rto"] * 2, MAX_RTO)
        # sealed anew: the receiver refuses the same bytes again as a replay
        p = wire.SynPayload(self._left_view(s), (*a.hops, a.extra["right"]))
        a.syn = replace(pk.parse(a.syn), payload=self.agent.seal_syn(now, p)).to_bytes()
        out.append(Send(a.syn, Port.NET))
        self.msgs.wake(now + a.extra["syn_rto"], SYN_TIMER, sid)

    def new_path_syn(self, now: int, f: pk.TcpFrame, p: wire.SynPayload, out: list[Action]) -> bool:
        """A Dysco SYN for this host: True if it is the new path of a reconfiguration we anchor."""
        sid = self.awaiting.get(p.session)
        a = self.anchors.get(sid) if sid is not None and len(p.hops) == 1 else None
        if a is None or sid is None or a.left:
            return False
        s = self.agent.sessions[sid]
        d = f.five_tuple
        if a.new_in_key is None:
            a.new_in_key = d
            a.new_target = d.reversed()
            self.agent._install(s, Mapping(Table.IN, d, None, s.sid), _rev(fwd=True), out)
            seq = ((a.sent_so_far() or 1) - 1) & M32  # the boundary, if it switches now
            synack = pk.TcpFrame(MAC, MAC, d.dst, d.src, d.dport, d.sport, seq, (f.seq + 1) & M32,
                                 pk.SYN | pk.ACK, 65535, b"\x02\x04\x05\xb4")  # fmt: skip
            a.synack = synack.to_bytes()
            if a.extra.get("migrate"):  # the switch waits for the left anchor's SWITCH
                a.phase = Phase.MIGRATING
            else:
                self._switch(now, s, a, out)
        elif a.new_in_key != d:
            return True  # a SYN of another new path for the same reconfiguration: ignore
        self.agent.metrics["reconf.new_path_syn"] += 1
        out.append(Send(a.synack, Port.NET))
        return True

    # ---- packets of an anchored session ------------------------------------------------------------

    def anchor_packet(self, now: int, s: Session, f: pk.TcpFrame, port: Port, out: list[Action]) -> bool:
        a = self.anchors.get(s.sid)
        if a is None:
            return False
        from dysco.runtime.core._agent import Direction as D

        if port is Port.HOST:
            if f.five_tuple != a.out_key:
                return False
            for side, g in a.outgoing(f):
                if side is PathSide.OLD:
                    out.append(Send(translate(g, a.old_target, 0, a.old_delta).to_bytes(), Port.NET))
                else:
                    assert a.new_target is not None
                    g = translate(g, a.new_target, 0, a.new_delta, (0, -a.new_ts & M32))
                    out.append(Send(g.to_bytes(), Port.NET))
                    self._new_data(s, a, "sent", len(g.payload), out)
            self._host_spoke(now, s, a, out)
            direction = D.FWD if a.left else D.REV
        else:
            t = f.five_tuple
            if t == a.new_in_key:
                if f.flags & pk.SYN:
                    if a.left and a.phase is not Phase.LOCKING and f.flags & pk.ACK:
                        self._synack(now, s, a, f, out)
                    return True
                if f.flags & pk.RST:
                    # the other anchor's agent freeing the new path (it closed or gave up); whatever
                    # ends the session reaches this host on the old path
                    self.agent.metrics["reconf.new_path_rst"] += 1
                    return True
            elif t == a.old_in_key:
                if f.flags & pk.RST and not a.left and a.sent_done:
                    # the left anchor may have completed and freed the old path: this is a kernel's
                    # answer to one of our host's stragglers there (a middlebox or the left host no
                    # longer knows the old subsession), not the session's end; a RST of the left
                    # host comes on the new path too (the left anchor is past its switch)
                    self.agent.metrics["reconf.old_path_rst"] += 1
                    return True
            else:
                return False
            a.incoming(f)
            if t == a.new_in_key:
                self._new_data(s, a, "received", len(f.payload), out)
            out.append(Send(a.to_host(f, t == a.new_in_key).to_bytes(), Port.HOST))
            direction = D.REV if a.left else D.FWD
        self.agent.metrics["reconf.two_path_packets"] += 1
        if f.flags & (pk.FIN | pk.RST):
            self.agent._teardown_seen(now, s, direction, f.flags, out)
        self._check(now, s, a, out)
        return True

    def _new_data(self, s: Session, a: Anchor, how: str, n: int, out: list[Action]) -> None:
        """Once per anchor: the first data segment it sends or receives on the new path."""
        if n and "new_data" not in a.extra:
            a.extra["new_data"] = n
            out.append(Notify("new_path_data", f"{s.session}: rid {a.extra['rid']}: {how} {n} bytes", s.sid))

    def _synack(self, now: int, s: Session, a: Anchor, f: pk.TcpFrame, out: list[Action]) -> None:
        assert a.new_target is not None
        if a.phase is Phase.NEW_PATH:
            self.agent.metrics["reconf.new_path_up"] += 1
            if a.extra.get("migrate"):
                self._export(now, s, a, out)
            else:
                self._switch(now, s, a, out)
        if a.host_ack is None:
            return  # nothing to acknowledge with yet: the new path's agents see the host's next segment
        # the handshake's ACK acknowledges what the host acknowledged: if it reaches the other host
        # (the other anchor completed first) it is a duplicate ACK, never an ACK of unsent bytes
        t = a.new_target
        seq = a.old_sent if a.old_sent is not None else (pk.parse(a.syn).seq + 1) & M32
        ack = (a.host_ack - a.new_delta) & M32
        out.append(
            Send(pk.TcpFrame(MAC, MAC, t.src, t.dst, t.sport, t.dport, seq, ack, pk.ACK).to_bytes(), Port.NET)
        )

    def _check(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        if not a.out_done():
            return
        if not a.left:
            if not a.sent_done:
                a.sent_done = True
                msg = cw.Message(cw.Kind.DONE, self._id(), a.extra["rid"], a.peer, self.me)
                self._request(now, a.peer, msg, s.sid, out)
            return
        if not a.peer_done:
            return
        # both anchors are done: the left anchor frees the old path
        old_down = s.down
        assert old_down is not None and a.new_target is not None
        self._fast(s, a, True, out)
        self._fin_on_new_path(now, s, a, out)
        msg = cw.Message(cw.Kind.TEARDOWN, self._id(), a.extra["rid"], self.me, a.peer, old_down.tuple)
        self._request(now, old_down.tuple.dst, msg, 0, out)
        self._drop_mapping(s, Table.IN, a.old_in_key, out)
        old_down.fsm.set(SubsessionState.CLOSED)
        # the old subsession's port is reused only once the TEARDOWN freed it downstream: a late
        # TEARDOWN must not meet a new subsession with the same five-tuple
        from dysco.runtime.core._agent import Subsession

        new = Subsession(a.new_target, self.agent._sub_fsm(s, "down"), a.extra["lport"])
        new.fsm.set(SubsessionState.OPEN)
        s.down = new
        s.delta_down = a.new_delta
        self._forget(s.sid)
        self.agent.metrics["reconf.completed"] += 1
        out.append(Notify("reconfigured", f"{s.session}: rid {a.extra['rid']}", s.sid))

    def _fin_on_new_path(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The host's FIN went on the old path (during the phase or before it): the new path's
        agents learn it from a FIN message, retransmitted hop by hop until acknowledged."""
        from dysco.runtime.core._agent import Direction as D

        if (D.FWD if a.left else D.REV) not in s.fins or a.new_target is None:
            return
        sub = a.new_target if a.left else a.new_target.reversed()
        nxt = sub.dst if a.left else sub.src
        if nxt == a.peer:
            return  # no new middlebox: nobody to tell
        left, right = (self.me, a.peer) if a.left else (a.peer, self.me)
        msg = cw.Message(cw.Kind.FIN, self._id(), a.extra["rid"], left, right, sub, value=0 if a.left else 1)
        self.agent.metrics["reconf.fin_sent"] += 1
        self._request(now, nxt, msg, 0, out)

    def _fin_msg(self, now: int, msg: cw.Message, out: list[Action]) -> None:
        """A FIN message reached this agent of a new path: that direction has ended; pass it on."""
        from dysco.runtime.core._agent import Direction as D

        fwd = msg.value == 0
        s = self._session_by_up(msg.sub) if fwd else self._session_by_down(msg.sub)
        if s is None:
            self.agent.metrics["reconf.fin_unknown"] += 1
            return
        self.agent._teardown_seen(now, s, D.FWD if fwd else D.REV, pk.FIN, out)
        sub = s.down if fwd else s.up
        if sub is None:
            return
        nxt = sub.tuple.dst if fwd else sub.tuple.src
        if nxt != (msg.right_anchor if fwd else msg.left_anchor) and nxt != self.me:
            self._request(now, nxt, replace(msg, msg_id=self._id(), sub=sub.tuple), 0, out)

    def _drop_mapping(self, s: Session, table: Table, key: FiveTuple, out: list[Action]) -> None:
        entry = s.mappings.pop((table, key), None)
        if entry is not None:
            out.append(Delete(entry[0]))
            self.agent._entries[table] -= 1
            self.agent.by_key.pop((table, key), None)

    def _forget(self, sid: int) -> None:
        a = self.anchors.pop(sid, None)
        self.locks.pop(sid, None)
        if a is not None:
            self.rids.pop(a.extra.get("rid", -1), None)
        for view in [v for v, i in self.awaiting.items() if i == sid]:
            del self.awaiting[view]
        self.msgs.forget(sid)

    # ---- release: teardown of the old path, cancel, abandon -----------------------------------------

    def _release(self, now: int, s: Session, msg: cw.Message, out: list[Action]) -> None:
        """CANCEL_LOCK or TEARDOWN reached the agent on the right of ``msg.sub``."""
        key = (msg.left_anchor, msg.rid)
        a = self.anchors.get(s.sid)
        if (
            a is not None
            and msg.right_anchor == self.me
            and (msg.left_anchor, msg.rid) == (a.peer, a.extra["rid"])
        ):
            if msg.kind is cw.Kind.TEARDOWN:
                self._complete_right(now, s, a, out)
            else:
                self._fast(s, a, False, out)
                if a.new_in_key is not None:
                    self._drop_mapping(s, Table.IN, a.new_in_key, out)
                self.agent.metrics["reconf.cancelled"] += 1
            self._forget(s.sid)
            self._replay_held(now, s, out)
            return
        lock = self.locks.get(s.sid)
        if lock is None or lock.rid != key:
            return
        if msg.kind is cw.Kind.TEARDOWN:
            self._cancel_down(now, s, msg, out)
            if s.sid in self.splices:
                self._spliced_away(now, s, out)
            else:
                self.agent._close(now, s, "reconfigured away", out)
            return
        self._cancel_down(now, s, msg, out)
        del self.locks[s.sid]
        self.msgs.forget(s.sid)
        self._splice_failed(s, "the reconfiguration was cancelled", out)

    def _lock_timer(self, now: int, sid: int, out: list[Action]) -> None:
        a = self.anchors.get(sid)
        s = self.agent.sessions.get(sid)
        if a is None or s is None or a.left or a.phase not in (Phase.LOCKING, Phase.MIGRATING):
            return
        if a.extra.get("lock_until", now + 1) > now:
            return  # an earlier reconfiguration's timer
        # the left anchor never set the new path up and its CANCEL_LOCK did not come: unlock
        self._fast(s, a, False, out)
        self._forget(sid)
        self.agent.metrics["reconf.lock_expired"] += 1
        out.append(Notify("lock_expired", f"{s.session}: rid {a.extra['rid']} from {ip_str(a.peer)}", sid))
        self._replay_held(now, s, out)

    def _replay_held(self, now: int, s: Session, out: list[Action]) -> None:
        """This agent's part of a reconfiguration ended: act on the request that waited for it."""
        held = self.held.pop(s.sid, None)
        if held is not None:
            self._request_lock(now, held[0], held[1], out)

    def _complete_right(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The right anchor's end of a completed reconfiguration: the new path is the session's."""
        from dysco.runtime.core._agent import Subsession

        self._fast(s, a, True, out)
        self._fin_on_new_path(now, s, a, out)
        self._drop_mapping(s, Table.IN, a.old_in_key, out)
        assert a.new_target is not None
        up = Subsession(a.new_target.reversed(), self.agent._sub_fsm(s, "up"))
        up.fsm.set(SubsessionState.OPEN)
        s.up = up
        s.delta_up = a.new_delta
        self.agent.metrics["reconf.completed"] += 1
        out.append(Notify("reconfigured", f"{s.session}: rid {a.extra['rid']} (right anchor)", s.sid))

    def _cancel_down(self, now: int, s: Session, msg: cw.Message, out: list[Action]) -> None:
        down = self._down(s)
        if down is not None:
            kind = cw.Kind.TEARDOWN if msg.kind is cw.Kind.TEARDOWN else cw.Kind.CANCEL_LOCK
            fwd = replace(msg, kind=kind, msg_id=self._id(), sub=down.tuple)
            self._request(now, down.tuple.dst, fwd, 0, out)

    def _abandon(self, now: int, s: Session, why: str, out: list[Action], cancel: bool) -> None:
        """The left anchor gives up: the session stays on the old path."""
        a = self.anchors.get(s.sid)
        rid = a.extra["rid"] if a is not None else 0
        if a is not None:
            self._fast(s, a, False, out)
            if a.new_in_key is not None:
                self._rst_new_path(a, out)
                self._drop_mapping(s, Table.IN, a.new_in_key, out)
                self.agent.ports.release(a.extra["first"], a.extra["lport"])
            if cancel and s.down is not None:
                msg = cw.Message(
                    cw.Kind.CANCEL_LOCK, self._id(), a.extra["rid"], self.me, a.peer, s.down.tuple
                )
                self._forget(s.sid)
                self._request(now, s.down.tuple.dst, msg, 0, out)
        self._forget(s.sid)
        self.agent.metrics["reconf.failed"] += 1
        out.append(Notify("reconfigure_failed", f"{s.session}: rid {rid}: {why}", s.sid, True))

    def _rst_new_path(self, a: Anchor, out: list[Action]) -> None:
        """The new path's agents tear their state down (their NICs see a RST)."""
        if a.new_target is not None:
            out.append(Send(a.frame(pk.RST, a.old_sent or 0, 0), Port.NET))

    def session_closed(self, now: int, s: Session, out: list[Action]) -> None:
        for sid1 in [k for k, (sid2, _) in self.splices.items() if s.sid in (k, sid2)]:
            del self.splices[sid1]
        held = self.held.pop(s.sid, None)
        if held is not None:
            self._nack(now, held[0], held[1], cw.Status.CLOSING, out)
        a = self.anchors.get(s.sid)
        if a is not None and a.new_in_key is not None:
            self._rst_new_path(a, out)
        if a is not None and a.left and a.new_in_key is not None and "lport" in a.extra:
            self.agent.ports.release(a.extra["first"], a.extra["lport"])
        if a is not None and a.left:
            self.agent.metrics["reconf.failed"] += 1
            why = f"rid {a.extra['rid']}: the session closed first"
            out.append(Notify("reconfigure_failed", f"{s.session}: {why}", s.sid, True))
        self._forget(s.sid)


def _rev(fwd: bool = False) -> Direction:
    from dysco.runtime.core._agent import Direction as D

    return D.FWD if fwd else D.REV
