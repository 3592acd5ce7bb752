"""Phase 1 of a reconfiguration: locking the segment (paper §3.2; docs/architecture.md).

The left anchor starts (:meth:`LockPhase.start`): its REQUEST_LOCK travels right along the old
path, each agent on the way locking its right subsession (``unlocked -> lock_pending ->
locked``) and adding its middlebox's delta; the right anchor answers ACK_LOCK, which travels back
with the deltas of the other direction, or an agent answers NACK_LOCK.  A request that meets a
pending lock is saved; when the pending one is acked the saved one is nacked, when it is nacked
the saved one goes on: of two overlapping requests exactly one wins.
"""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._events import Action, Notify, Table
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._session import Session
from dysco.runtime.core._splice_translation import compose
from dysco.runtime.core._twopath import M32
from dysco.runtime.core._types import ip_str
from dysco.runtime.core.reconf._base import LOCK_TIMEOUT, LOCK_TIMER, Base, Lock, LockState


class LockPhase(Base):
    def start(
        self,
        now: int,
        s: Session,
        right: int,
        hops: tuple[int, ...],
        out: list[Action],
        failed: int = 0,
        *,
        failover: bool = False,
        rid: int = 0,
    ) -> int:
        """This agent, left anchor of ``s``, replaces the part of the path up to ``right`` with
        ``hops``.  Returns the reconfiguration id (0: refused; a Notify says why).

        ``failed``: that part is one dead hop, this agent's right neighbour
        (:mod:`._failover`): the REQUEST_LOCK goes to ``right`` directly.  ``failover``: that
        part is one hop, which is gone around if it never answers the REQUEST_LOCK.  ``rid``:
        go on with that reconfiguration (a failover; no new ``reconfigure_started``)."""
        if s.fsm.state not in (SessionState.ESTABLISHED, SessionState.HALF_CLOSED) or s.down is None:
            return self._refuse(out, s, "the session is not established on its right side")
        if s.sid in self.locks or s.sid in self.anchors:
            return self._refuse(out, s, "the session is already being reconfigured")
        if len(hops) + 1 > wire.MAX_HOPS:
            return self._refuse(out, s, f"{len(hops)} new middleboxes is too many")
        if failed and (why := self._not_around(s, right, failed)):
            return self._refuse(out, s, why)
        nxt = s.down.tuple.dst
        if failover:
            why = "it is one of the new middleboxes" if nxt in hops else self._not_around(s, right, nxt)
            if why:
                return self._refuse(out, s, f"no failover around {ip_str(nxt)}: {why}")
        again, rid = bool(rid), rid or self._id()
        self.locks[s.sid] = Lock(LockState.PENDING, (self.me, rid), None)
        self.rids[rid] = (s.sid, 0)
        a = self._anchor(s, True, right)
        self.anchors[s.sid] = a
        a.extra["rid"] = rid
        a.hops = hops
        self._punt(s, a, out)
        if failed:
            a.extra["failed"] = failed
            self._request(now, right, self._around(cw.Kind.REQUEST_LOCK, s, a, hops=hops), s.sid, out)
            self.agent.metrics["reconf.around_started"] += 1
            if not again:
                text = f"{s.session}: rid {rid} (around the dead {ip_str(failed)})"
                out.append(Notify("reconfigure_started", text, s.sid))
            return rid
        if failover:
            a.extra["failover"] = nxt
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

    def _request_lock(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        if msg.value & cw.FAILED:
            return self._lock_around(now, src, msg, out)
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
        # the middlebox goes: what it declared it added (Agent.declare_delta) goes into the delta too
        delta_fwd = (msg.delta_fwd + s.delta_up + s.mb_delta[0]) & M32
        fwd = replace(msg, msg_id=self._id(), sub=down.tuple, delta_fwd=delta_fwd)
        if self.mig.marks(s, msg, down.tuple.dst):  # this middlebox's state moves to the new one
            fwd = replace(fwd, value=fwd.value | cw.MIGRATE)
            self.agent.metrics["migrate.marked"] += 1
        if s.sid in self.splices:  # the proxy's translation joins the segment's
            t = self.splices[s.sid][1].fwd
            fwd = replace(fwd, delta_fwd=(fwd.delta_fwd + t.seq) & M32, ts_fwd=(fwd.ts_fwd + t.ts) & M32,
                          ws_fwd=compose(fwd.ws_fwd, t.ws))  # fmt: skip
        self._request(now, down.tuple.dst, fwd, s.sid, out)
        return None

    def _resolved(
        self, now: int, s: Session, lock: Lock, msg: cw.Message, ok: bool, out: list[Action]
    ) -> None:
        saved, lock.saved = lock.saved, None
        if lock.upstream is None:  # the left anchor
            if ok:
                lock.state = LockState.LOCKED
                self._new_path(now, s, msg, out)
            else:
                self._abandon(now, s, self._refused_why(s, msg), out, cancel=msg.status is cw.Status.OK)
        else:
            src, req = lock.upstream
            if ok:
                lock.state = LockState.LOCKED
                rev = (msg.delta_rev + s.delta_down + s.mb_delta[1]) & M32
                ts, ws = msg.ts_rev, msg.ws_rev
                if s.sid in self.splices:
                    t = self.splices[s.sid][1].rev
                    rev, ts, ws = (rev + t.seq) & M32, (ts + t.ts) & M32, compose(ws, t.ws)
                self._reply(now, src, req, cw.Kind.ACK_LOCK, out, right_session=msg.right_session,
                            delta_rev=rev, ts_rev=ts, ws_rev=ws, value=msg.value)  # fmt: skip
            else:
                del self.locks[s.sid]
                self._unlocked(now, s)
                self._reply(now, src, req, cw.Kind.NACK_LOCK, out, status=msg.status)
                self._splice_failed(s, f"the lock was refused ({msg.status.name})", out)
        if saved is not None:
            if ok:
                self._nack(now, saved[0], saved[1], cw.Status.BUSY, out)
            else:
                self._request_lock(now, saved[0], saved[1], out)
