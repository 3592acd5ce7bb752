"""Replacing a dead hop (docs/protocol.md §4, "Around a dead hop"; paper §7's open problem for
stateless middleboxes): the anchors on both sides of a middlebox whose host is gone set the new
path up without it.

The ordinary protocol needs the old path: REQUEST_LOCK crosses it hop by hop, the two-path phase
acknowledges and retransmits old data on it, TEARDOWN frees it.  Through a dead hop none of that
arrives.  So, with FAILED (``Agent.reconfigure(..., failed=DEAD)``, ``dysco ctl reconfigure
--replace DEAD NEW --failed``):

1. The left anchor, whose right neighbour on the session is the dead hop, sends REQUEST_LOCK
   with FAILED straight to the right anchor, the hop after it on the session's chain.  The
   message names the session by its five-tuple (``left_session``: every agent of the chain keeps
   it, the dead hop's subsession ports nobody alive knows) and the dead hop (``sub.src``).
2. The right anchor checks that its left neighbour on that session is the dead hop (else
   NOT_NEIGHBOUR), locks and answers ACK_LOCK.  No middle adds a delta: the dead hop's is lost
   with it, so only a middlebox whose deltas are 0 (one that does not change the byte stream's
   length) can be replaced this way; with a non-zero delta the endpoints' sequence numbers would
   disagree on the new path (docs/operations.md).
3. The new path is set up as always (phase 2).  There is no two-path phase: nothing can be
   acknowledged or retransmitted over the dead path, so each anchor, when its side of the new
   path works (the right anchor at the new path's SYN, the left anchor at its SYN-ACK), sends
   everything on the new path at once (phase ``failed_over``, forwarding in software).  What the
   dead hop swallowed, TCP's own retransmission recovers, on the new path.
4. The left anchor sends TEARDOWN with FAILED straight to the right anchor; when it is answered
   (or given up) it completes, and the right anchor completes when it arrives.  Each frees its
   own old-path state locally; the dead hop's state died with it.  A right anchor that never
   sees the TEARDOWN completes by itself after ``LOCK_TIMEOUT``.

A failure before step 3 cancels as always, with CANCEL_LOCK (FAILED) to the right anchor
directly, and the session stays on its (dead) old path.
"""

from __future__ import annotations

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Action, Notify, Port, Send
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._messenger import Pending
from dysco.runtime.core._session import Direction, Session
from dysco.runtime.core._twopath import M32, Anchor, Phase, translate
from dysco.runtime.core._types import ip_str
from dysco.runtime.core.reconf._base import LOCK_TIMEOUT, LOCK_TIMER, Base


class FailoverPhase(Base):
    # ---- the left anchor -----------------------------------------------------------------------------

    def _not_around(self, s: Session, right: int, dead: int) -> str:
        """Why this agent cannot anchor a reconfiguration around ``dead`` up to ``right`` ('': it can)."""
        assert s.down is not None
        nxt, chain = s.down.tuple.dst, s.chain
        if nxt != dead:
            return f"{ip_str(dead)} is not this agent's right neighbour on the session ({ip_str(nxt)} is)"
        if dead in chain and chain.index(dead) + 1 == len(chain):
            return f"{ip_str(dead)} is the session's right end: nothing can replace it"
        after = chain[chain.index(dead) + 1] if dead in chain else right
        if right != after:
            return f"around {ip_str(dead)} the right anchor is the hop after it, {ip_str(after)}"
        return ""

    def _go_around(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The right neighbour never answered the REQUEST_LOCK (control timeouts), and the edit
        asked for a failover: the reconfiguration goes on around it, under the same rid."""
        dead, rid = a.extra["failover"], a.extra["rid"]
        assert s.down is not None
        cancel = cw.Message(cw.Kind.CANCEL_LOCK, self._id(), rid, self.me, a.peer, s.down.tuple)
        self._fast(s, a, False, out)
        self._forget(s.sid)
        self._request(now, dead, cancel, 0, out)  # in case it only lost our messages
        self.agent.metrics["reconf.failover"] += 1
        text = f"{s.session}: rid {rid}: {ip_str(dead)} did not answer: around it"
        out.append(Notify("reconfigure_failover", text, s.sid))
        if not self.start(now, s, a.peer, a.hops, out, dead, rid=rid):
            self.agent.metrics["reconf.failed"] += 1
            why = f"{s.session}: rid {rid}: {ip_str(dead)} did not answer, and it cannot be gone around"
            out.append(Notify("reconfigure_failed", why, s.sid, True))
            self._delegate_ended(now, rid, False, out)

    def _refused_why(self, s: Session, msg: cw.Message) -> str:
        """The left anchor's reason for giving up after ``msg``, a NACK_LOCK (or its own NACK when
        nobody answered)."""
        failed = msg.value & cw.FAILED
        right, nxt = ip_str(msg.right_anchor), ip_str(msg.sub.dst)
        if msg.status is cw.Status.OK:  # the request was given up, here or by an agent further on
            return f"lock refused: no answer from {right}" if failed else f"lock refused: no answer via {nxt}"
        why = f"lock refused ({msg.status.name})"
        if not failed:
            return why
        if msg.status is cw.Status.NOT_NEIGHBOUR:
            return f"{why}: at {right} the session's left neighbour is not {ip_str(msg.sub.src)}"
        if msg.status is cw.Status.NO_SESSION:
            return f"{why}: {right} does not know the session {self._left_view(s)}"
        return why

    # ---- the right anchor ----------------------------------------------------------------------------

    def _lock_around(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        s = self._session_named(msg.left_session)
        if s is None:
            return self._nack(now, src, msg, cw.Status.NO_SESSION, out)
        if msg.right_anchor != self.me:
            return self._nack(now, src, msg, cw.Status.NOT_ON_PATH, out)
        if s.up is None or s.up.tuple.src != msg.sub.src:
            return self._nack(now, src, msg, cw.Status.NOT_NEIGHBOUR, out)
        a = self.anchors.get(s.sid)
        if (
            a is not None
            and not a.left
            and a.extra.get("failed")
            and (a.peer, a.phase) == (msg.left_anchor, Phase.LOCKING)
            and a.extra["rid"] != msg.rid
        ):
            # the same left anchor asks again: it gave the old rid up, its CANCEL_LOCK is late
            self._fast(s, a, False, out)
            self._forget(s.sid)
            self.agent.metrics["reconf.superseded"] += 1
        if s.fsm.state is SessionState.CLOSING:
            return self._nack(now, src, msg, cw.Status.CLOSING, out)
        if s.sid in self.locks or s.sid in self.anchors:
            return self._nack(now, src, msg, cw.Status.BUSY, out)
        a = self._anchor(s, False, msg.left_anchor)
        a.new_delta = (msg.delta_fwd + a.old_delta) & M32
        a.new_ts, a.new_ws = msg.ts_fwd, msg.ws_fwd
        a.extra["rid"] = msg.rid
        a.extra["failed"] = msg.sub.src
        self._expire_at(now + LOCK_TIMEOUT, s, a)
        self.anchors[s.sid] = a
        self.awaiting[msg.left_session] = s.sid
        self._punt(s, a, out)
        self.agent.metrics["reconf.around_locked"] += 1
        self._reply(now, src, msg, cw.Kind.ACK_LOCK, out, right_session=s.session)
        return None

    def _expire_at(self, when: int, s: Session, a: Anchor) -> None:
        a.extra["lock_until"] = when
        self.msgs.wake(when, LOCK_TIMER, s.sid)

    def _around_session(self, msg: cw.Message) -> Session | None:
        """The session a CANCEL_LOCK or TEARDOWN with FAILED is about, at its right anchor."""
        sid = self.awaiting.get(msg.left_session)
        return self.agent.sessions.get(sid) if sid is not None else None

    # ---- both anchors --------------------------------------------------------------------------------

    def _fail_over(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """This anchor's side of the new path works: everything takes it from now on."""
        a.phase = Phase.FAILED_OVER
        self.agent.metrics["reconf.failed_over"] += 1
        if a.left:
            self._request(now, a.peer, self._around(cw.Kind.TEARDOWN, s, a), s.sid, out)
        else:  # if the TEARDOWN never comes, the right anchor completes by itself
            self._expire_at(now + LOCK_TIMEOUT, s, a)

    def failover_packet(
        self, now: int, s: Session, a: Anchor, f: pk.TcpFrame, port: Port, out: list[Action]
    ) -> bool:
        """A punted packet of a session failed over at this anchor: onto the new path, or from it."""
        assert a.new_target is not None
        if port is Port.HOST:
            if f.five_tuple != a.out_key:
                return False
            g = translate(f, a.new_target, 0, a.new_delta, (0, -a.new_ts & M32))
            out.append(Send(g.to_bytes(), Port.NET))
            direction = Direction.FWD if a.left else Direction.REV
        else:
            t = f.five_tuple
            if t == a.old_in_key:
                self.agent.metrics["reconf.dead_path_packets"] += 1
                return True  # the dead hop is back, or a straggler: its path is not the session's
            if t != a.new_in_key:
                return False
            if f.flags & pk.SYN:
                if a.left and f.flags & pk.ACK:
                    self._synack(now, s, a, f, out)  # a retransmitted SYN-ACK: acknowledge it again
                return True
            out.append(Send(a.to_host(f, True).to_bytes(), Port.HOST))
            direction = Direction.REV if a.left else Direction.FWD
        self.agent.metrics["reconf.failover_packets"] += 1
        if f.flags & (pk.FIN | pk.RST):
            self.agent._teardown_seen(now, s, direction, f.flags, out)
        return True

    def _around_done(self, now: int, p: Pending, out: list[Action]) -> None:
        """The left anchor's TEARDOWN was answered, or given up on (the right anchor then completes
        by itself): the new path is the session's."""
        s = self.agent.sessions.get(p.sid)
        a = self.anchors.get(p.sid)
        if s is None or a is None or not a.left or a.extra["rid"] != p.msg.rid:
            return
        if a.phase is Phase.FAILED_OVER:
            self._complete_left(now, s, a, out)

    def _failover_expired(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The right anchor failed over and no TEARDOWN came: it completes by itself."""
        self.agent.metrics["reconf.around_self_completed"] += 1
        self._complete_right(now, s, a, out)
        self._forget(s.sid)
        self._replay_held(now, s, out)
