"""Release, at any point of a reconfiguration: the old path's locks freed by TEARDOWN or
CANCEL_LOCK, the left anchor giving up (the session goes on over the old path), a right anchor's
lock expiring, the session closing in the middle.
"""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Action, Notify, Port, Send, Table
from dysco.runtime.core._session import Session
from dysco.runtime.core._twopath import Anchor, Phase
from dysco.runtime.core._types import ip_str
from dysco.runtime.core.reconf._base import Base


class ReleasePhase(Base):
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
        self._unlocked(now, s)
        self.msgs.forget(s.sid)
        self._splice_failed(s, "the reconfiguration was cancelled", out)

    def _lock_timer(self, now: int, sid: int, out: list[Action]) -> None:
        a = self.anchors.get(sid)
        s = self.agent.sessions.get(sid)
        expiring = (Phase.LOCKING, Phase.MIGRATING, Phase.FAILED_OVER)
        if a is None or s is None or a.left or a.phase not in expiring:
            return
        if a.extra.get("lock_until", now + 1) > now:
            return  # an earlier reconfiguration's timer
        if a.phase is Phase.FAILED_OVER:
            return self._failover_expired(now, s, a, out)
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
                if a.extra.get("failed"):  # around a dead hop: to the right anchor directly
                    msg, dst = self._around(cw.Kind.CANCEL_LOCK, s, a), a.peer
                else:
                    msg = cw.Message(
                        cw.Kind.CANCEL_LOCK, self._id(), a.extra["rid"], self.me, a.peer, s.down.tuple
                    )
                    dst = s.down.tuple.dst
                self._forget(s.sid)
                self._request(now, dst, msg, 0, out)
        self._forget(s.sid)
        self.agent.metrics["reconf.failed"] += 1
        out.append(Notify("reconfigure_failed", f"{s.session}: rid {rid}: {why}", s.sid, True))
        self._delegate_ended(now, rid, False, out)

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
        if a is not None and a.new_in_key is not None and a.phase is not Phase.FAILED_OVER:
            self._rst_new_path(a, out)  # (failed over, the new path is the session's: it closed too)
        if a is not None and a.left and a.new_in_key is not None and "lport" in a.extra:
            self.agent.ports.release(a.extra["first"], a.extra["lport"])
        if a is not None and a.left and a.phase is Phase.FAILED_OVER:
            # around a dead hop the session had moved: it ended on the new path
            self.agent.metrics["reconf.completed"] += 1
            text = f"{s.session}: rid {a.extra['rid']} (the session ended on the new path)"
            out.append(Notify("reconfigured", text, s.sid))
            self._delegate_ended(now, a.extra["rid"], True, out)
        elif a is not None and a.left:
            self.agent.metrics["reconf.failed"] += 1
            why = f"rid {a.extra['rid']}: the session closed first"
            out.append(Notify("reconfigure_failed", f"{s.session}: {why}", s.sid, True))
            self._delegate_ended(now, a.extra["rid"], False, out)
        self._delegations_closed(s, out)
        self._forget(s.sid)
