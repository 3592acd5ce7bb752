"""Phase 5 of a reconfiguration: completion.

An anchor whose old path is drained (everything old sent and acknowledged, the peer's boundary
reached) says DONE; when both are, the left anchor moves the session onto the new path in the
fast path and sends TEARDOWN along the old path, which frees it agent by agent.  A FIN the host
sent on the old path is told to the new path's agents by a FIN message.
"""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Action, Install, Modify, Notify, Table
from dysco.runtime.core._fsm import SubsessionState
from dysco.runtime.core._messenger import Pending
from dysco.runtime.core._session import Direction, Session, Subsession
from dysco.runtime.core._twopath import Anchor
from dysco.runtime.core.reconf._base import Base


class CompletionPhase(Base):
    def _check(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        if not a.out_done():
            return
        if not a.left:
            if not a.sent_done:
                a.sent_done = True
                msg = cw.Message(cw.Kind.DONE, self._id(), a.extra["rid"], a.peer, self.me)
                self._request(now, a.peer, msg, s.sid, out)
            return
        if a.peer_done:  # both anchors are done
            self._complete_left(now, s, a, out)

    def _complete_left(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The left anchor frees the old path (TEARDOWN along it; around a dead hop only its own
        end of it, the TEARDOWN having gone to the right anchor) and moves onto the new one."""
        old_down = s.down
        assert old_down is not None and a.new_target is not None
        self._fast(s, a, True, out)
        self._fin_on_new_path(now, s, a, out)
        if a.extra.get("failed"):
            self.agent.ports.release(old_down.tuple.dst, old_down.tuple.sport)  # nobody alive holds it
        else:
            msg = cw.Message(cw.Kind.TEARDOWN, self._id(), a.extra["rid"], self.me, a.peer, old_down.tuple)
            self._request(now, old_down.tuple.dst, msg, 0, out)
        self._drop_mapping(s, Table.IN, a.old_in_key, out)
        old_down.fsm.set(SubsessionState.CLOSED)
        # the old subsession's port is reused only once the TEARDOWN freed it downstream: a late
        # TEARDOWN must not meet a new subsession with the same five-tuple
        new = Subsession(a.new_target, self.agent._sub_fsm(s, "down"), a.extra["lport"])
        new.fsm.set(SubsessionState.OPEN)
        s.down = new
        s.delta_down = a.new_delta
        if a.peer in s.chain:  # the hops up to the right anchor are the new ones (and the note says so)
            s.chain = (*a.hops, *s.chain[s.chain.index(a.peer) :])
            gone = [x for x in s.instances if x not in s.chain]  # no longer through them: not their load
            s.instances = tuple(x for x in s.instances if x in s.chain)
            for x in gone:
                self.agent.selector.release(x)
            # every entry's note carries the chain: a middle left anchor's entries toward its left
            # were not rewritten above, and an adoption refuses a session whose notes differ
            touched = {(x.mapping.table, x.mapping.key) for x in out if isinstance(x, Install | Modify)}
            for key, (m, _) in s.mappings.items():
                if key not in touched:
                    out.append(Modify(m))
        self._forget(s.sid)
        self.agent.metrics["reconf.completed"] += 1
        out.append(Notify("reconfigured", f"{s.session}: rid {a.extra['rid']}", s.sid))
        self._delegate_ended(now, a.extra["rid"], True, out)

    def _complete_right(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The right anchor's end of a completed reconfiguration: the new path is the session's."""
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

    def _fin_on_new_path(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The host's FIN went on the old path (during the phase or before it): the new path's
        agents learn it from a FIN message, retransmitted hop by hop until acknowledged."""
        if (Direction.FWD if a.left else Direction.REV) not in s.fins or a.new_target is None:
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
        fwd = msg.value == 0
        s = self._session_by_up(msg.sub) if fwd else self._session_by_down(msg.sub)
        if s is None:
            self.agent.metrics["reconf.fin_unknown"] += 1
            return
        self.agent._teardown_seen(now, s, Direction.FWD if fwd else Direction.REV, pk.FIN, out)
        sub = s.down if fwd else s.up
        if sub is None:
            return
        nxt = sub.tuple.dst if fwd else sub.tuple.src
        if nxt != (msg.right_anchor if fwd else msg.left_anchor) and nxt != self.me:
            self._request(now, nxt, replace(msg, msg_id=self._id(), sub=sub.tuple), 0, out)

    def _teardown_done(self, p: Pending) -> None:
        """Our own TEARDOWN was answered (or given up): its subsession's port may be reused."""
        sub = p.msg.sub
        if p.msg.kind is cw.Kind.TEARDOWN and p.msg.left_anchor == self.me and sub.src == self.me:
            self.agent.ports.release(sub.dst, sub.sport)
