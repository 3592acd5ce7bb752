"""The reconfiguration of live sessions at one agent (paper §3; docs/architecture.md): the
phases in order, and the dispatch of control datagrams, answers and timers to them.

:class:`Reconfigurer` is part of the sans-IO agent: the agent hands it control datagrams,
punted packets of sessions it anchors, new-path SYNs and timers; it returns actions through
the same ``out`` list.  Control messages (:mod:`dysco.runtime.core._control_messages`) go
through a :class:`~dysco.runtime.core._messenger.Messenger`: requests are retransmitted with
backoff until answered, and answers are cached per (sender, msg_id), so a duplicate is answered
again without acting twice.
"""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core._events import Action
from dysco.runtime.core._messenger import Pending
from dysco.runtime.core._twopath import Phase
from dysco.runtime.core.reconf._base import LOCK_TIMER, PROBE_TIMER, SYN_TIMER
from dysco.runtime.core.reconf._complete import CompletionPhase
from dysco.runtime.core.reconf._cutover import TwoPathPhase
from dysco.runtime.core.reconf._delegate import DelegatePhase
from dysco.runtime.core.reconf._export import StateExportPhase
from dysco.runtime.core.reconf._failover import FailoverPhase
from dysco.runtime.core.reconf._lock import LockPhase
from dysco.runtime.core.reconf._newpath import NewPathPhase
from dysco.runtime.core.reconf._release import ReleasePhase
from dysco.runtime.core.reconf._right import RightRequestPhase
from dysco.runtime.core.reconf._splice import SplicePhase


class Reconfigurer(
    # The phases of a reconfiguration, one module each, in the order a successful one goes
    # through them.  Before it, optionally: an agent on the right asks the agent on its left
    # to start (rightRequest), a proxy here having joined its two sessions first (splice), or
    # an agent on the left asks the hop in front of an edit to anchor it (delegation).
    DelegatePhase,
    RightRequestPhase,
    SplicePhase,
    # 1. requestLock right along the old path, ackLock (or nackLock) back
    LockPhase,
    # 2. the new path's SYN / SYN-ACK / ACK, from the left anchor
    NewPathPhase,
    # 3. only when a stateful middlebox is replaced: its state moves to the new one
    StateExportPhase,
    # 4. each anchor switches: old bytes on the old path, new ones on the new (two paths);
    #    around a dead hop instead, everything takes the new path at once (failover)
    TwoPathPhase,
    FailoverPhase,
    # 5. both anchors drained: the left anchor sends TEARDOWN down the old path
    CompletionPhase,
    # at any point: cancelLock, the left anchor giving up, a lock expiring, the session closing
    ReleasePhase,
):
    """The reconfigurations at one agent: one object, its phases in the modules named above."""

    # ---- dispatch ------------------------------------------------------------------------------

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

    def control(self, now: int, frame: bytes, out: list[Action], inband: bool = False) -> None:
        """A control message from the NIC: a UDP datagram, or an in-band segment (``inband``)."""
        r = self.msgs.receive_inband(now, frame, out) if inband else self.msgs.receive(now, frame, out)
        if r is None:
            return
        if r.pending is None:
            self._on_request(now, r.src, r.msg, out)
        else:
            self._on_answer(now, r.src, r.pending, r.msg, out)

    def _on_request(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        k = cw.Kind
        if msg.kind is k.REQUEST_LOCK:
            self._request_lock(now, src, msg, out)
        elif msg.kind is k.CANCEL_LOCK or msg.kind is k.TEARDOWN:
            ans = k.ACK_CANCEL if msg.kind is k.CANCEL_LOCK else k.ACK_TEARDOWN
            self._reply(now, src, msg, ans, out)
            s = self._around_session(msg) if msg.value & cw.FAILED else self._session_by_up(msg.sub)
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
        elif msg.kind is k.DELEGATE:
            self._delegate_in(now, src, msg, out)
        elif msg.kind is k.OUTCOME:
            self._outcome_in(now, src, msg, out)
        else:
            self.mig.request(now, src, msg, out)

    def _on_answer(self, now: int, src: int, p: Pending, msg: cw.Message, out: list[Action]) -> None:
        if p.msg.kind is cw.Kind.RIGHT_REQUEST:
            return self._right_answered(self.agent.sessions.get(p.sid), p, msg, out)
        if p.msg.kind is cw.Kind.DELEGATE:
            return self._delegate_answered(p, msg, out)
        if p.msg.kind is cw.Kind.STATE_EXPORT:
            return self._state_answered(now, p, msg, out)
        self._teardown_done(p)
        if p.msg.kind is cw.Kind.TEARDOWN and p.msg.value & cw.FAILED:
            return self._around_done(now, p, out)
        if p.msg.kind is not cw.Kind.REQUEST_LOCK:
            return  # acks of cancel, teardown, switch, done: nothing more to do
        s = self.agent.sessions.get(p.sid)
        lock = self.locks.get(p.sid)
        if s is None or lock is None or lock.rid != (p.msg.left_anchor, p.msg.rid):
            return
        self._resolved(now, s, lock, msg, msg.kind is cw.Kind.ACK_LOCK, out)

    def _gave_up(self, now: int, p: Pending, out: list[Action]) -> None:
        self._teardown_done(p)
        if p.msg.kind is cw.Kind.TEARDOWN and p.msg.value & cw.FAILED:
            self._around_done(now, p, out)
        if p.msg.kind is cw.Kind.STATE_EXPORT:
            self._state_answered(now, p, None, out)
        if p.msg.kind is cw.Kind.RIGHT_REQUEST:
            self._right_answered(self.agent.sessions.get(p.sid), p, None, out)
        if p.msg.kind is cw.Kind.DELEGATE:
            self._delegate_answered(p, None, out)
        if p.msg.kind is cw.Kind.OUTCOME:
            self.agent.metrics["reconf.outcome_unanswered"] += 1
        if p.msg.kind is cw.Kind.REQUEST_LOCK:
            s = self.agent.sessions.get(p.sid)
            lock = self.locks.get(p.sid)
            a = self.anchors.get(p.sid)
            if s is not None and lock is not None and a is not None and a.extra.get("failover") == p.dst:
                return self._go_around(now, s, a, out)  # the right neighbour is gone, presumably
            if s is not None and lock is not None:
                fail = replace(p.msg, kind=cw.Kind.NACK_LOCK, status=cw.Status.OK)
                if lock.upstream is not None:
                    self._cancel_down(now, s, p.msg, out)
                self._resolved(now, s, lock, fail, False, out)
