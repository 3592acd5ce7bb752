"""rightRequest, before phase 1: an agent asks the agent on its left to start a reconfiguration
as the left anchor (a middlebox leaving, a splice).
"""

from __future__ import annotations

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._events import Action, Notify
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._messenger import Pending
from dysco.runtime.core._session import Session
from dysco.runtime.core._types import ip_str
from dysco.runtime.core.reconf._base import Base


class RightRequestPhase(Base):
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
