"""Delegation, before phase 1: an agent of a session asks another agent of it, further right, to
anchor an edit as its left anchor, and hears the outcome.

An edit's left anchor must be the hop right in front of the part that changes: a left anchor
further left would set up a new path through the middleboxes that stay, which hold the
session on the old path already (the same five-tuple twice at their hosts).  So an operator may
ask any agent of the session (the client's, usually) for any edit: that agent sends DELEGATE to
the hop in front of the edit (``left_anchor``), which starts the reconfiguration as if asked
locally, answers ACK_DELEGATE (``status`` OK with its ``rid``, or why not) and, when it ends,
sends OUTCOME (``status`` OK or FAILED) back.  The requester's notifications are those of a
reconfiguration it anchored itself (``reconfigure_started``, ``reconfigured`` or
``reconfigure_failed``, under its own rid), so whoever asked it cannot tell the difference.

The session is named by its five-tuple as the requester knows it (``left_session``); a NAT
between the two agents would hide it, and the delegate answers NO_SESSION.
"""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._events import Action, Modify, Notify
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._messenger import Pending
from dysco.runtime.core._session import Session
from dysco.runtime.core._types import ip_str
from dysco.runtime.core.reconf._base import Base, Delegated

MAX_DELEGATED = 4096
"""Delegations an agent keeps track of at once, either side (requests it sent, edits it anchors
for another agent); beyond, new ones are refused."""


class DelegatePhase(Base):
    def delegate(
        self,
        now: int,
        s: Session,
        left: int,
        right: int,
        hops: tuple[int, ...],
        out: list[Action],
        failed: int = 0,
        *,
        failover: bool = False,
    ) -> int:
        """Ask ``left`` (an agent of ``s`` to the right of this one) to replace the part of the path
        from it to ``right`` by ``hops`` (around the dead hop ``failed``, if not 0).  Returns this
        agent's rid for it (0: refused here).  ``failover``: ``left`` goes around its right
        neighbour if that never answers."""
        why = ""
        if s.fsm.state not in (SessionState.ESTABLISHED, SessionState.HALF_CLOSED):
            why = f"the session is not established ({s.fsm.state.name})"
        elif left in (self.me, right) or left not in s.chain:
            why = f"{ip_str(left)} is not an agent of the session to the right of this one"
        elif len(hops) + 1 > wire.MAX_HOPS:
            why = f"{len(hops)} new middleboxes is too many"
        elif len(self.delegated) >= MAX_DELEGATED:
            why = "too many delegated reconfigurations under way"
        if why:
            self.agent.metrics["reconf.delegate_refused"] += 1
            out.append(Notify("reconfigure_refused", f"{s.session}: {why}", s.sid, True))
            return 0
        rid = self._id()
        self.delegated[rid] = Delegated(s.sid, left, right, hops)
        msg = cw.Message(cw.Kind.DELEGATE, self._id(), rid, left, right, left_session=s.session, hops=hops)
        if failed:  # the dead hop goes with it (the delegate checks it is its right neighbour)
            msg = replace(msg, sub=cw.around(failed, right), value=cw.FAILED)
        elif failover:
            msg = replace(msg, value=cw.FAILOVER)
        self._request(now, left, msg, s.sid, out)
        self.agent.metrics["reconf.delegate_sent"] += 1
        out.append(
            Notify("reconfigure_started", f"{s.session}: rid {rid} (delegated to {ip_str(left)})", s.sid)
        )
        return rid

    def _delegate_in(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        """An agent on our left asks us to anchor an edit."""
        s = self._session_named(msg.left_session)
        status = cw.Status.OK
        rid = 0
        if s is None:
            status = cw.Status.NO_SESSION
        elif msg.left_anchor != self.me:
            status = cw.Status.NOT_ON_PATH
        elif len(self.delegates) >= MAX_DELEGATED:
            status = cw.Status.BUSY
        else:
            failed = msg.sub.src if msg.value & cw.FAILED else 0
            rid = self.start(
                now, s, msg.right_anchor, msg.hops, out, failed, failover=bool(msg.value & cw.FAILOVER)
            )
            if rid:
                self.delegates[rid] = (src, msg.rid)
            else:
                status = cw.Status.CLOSING if s.fsm.state is SessionState.CLOSING else cw.Status.BUSY
        self.agent.metrics[f"reconf.delegate_in.{status.name.lower()}"] += 1
        self._reply(now, src, msg, cw.Kind.ACK_DELEGATE, out, status=status, value=rid)

    def _delegate_answered(self, p: Pending, msg: cw.Message | None, out: list[Action]) -> None:
        """The delegate's answer (None: it never answered)."""
        rid = p.msg.rid
        if msg is not None and msg.status is cw.Status.OK:
            self.agent.metrics["reconf.delegate_accepted"] += 1
            return  # its OUTCOME follows
        d = self.delegated.pop(rid, None)
        if d is None:
            return
        sid = d.sid
        who = ip_str(p.dst)
        why = f"{who} did not answer" if msg is None else f"{who} refused ({msg.status.name})"
        self.agent.metrics["reconf.delegate_failed"] += 1
        s = self.agent.sessions.get(sid)
        name = s.session if s is not None else f"session {sid}"
        out.append(Notify("reconfigure_failed", f"{name}: rid {rid}: {why}", sid, True))

    def _delegate_ended(self, now: int, rid: int, ok: bool, out: list[Action]) -> None:
        """A reconfiguration this agent anchored ended: tell the agent that asked for it."""
        asked = self.delegates.pop(rid, None)
        if asked is None:
            return
        src, their_rid = asked
        status = cw.Status.OK if ok else cw.Status.FAILED
        msg = cw.Message(cw.Kind.OUTCOME, self._id(), their_rid, self.me, src, value=rid, status=status)
        self._request(now, src, msg, 0, out)

    def _outcome_in(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        """The delegate says how the edit we asked for ended."""
        self._reply(now, src, msg, cw.Kind.ACK_OUTCOME, out)
        d = self.delegated.pop(msg.rid, None)
        if d is None:
            return  # a duplicate, or the session closed meanwhile
        sid = d.sid
        s = self.agent.sessions.get(sid)
        name = s.session if s is not None else f"session {sid}"
        where = f"at {ip_str(src)} (its rid {msg.value})"
        if msg.status is cw.Status.OK:
            if s is not None and d.left in s.chain and d.right in s.chain:
                c = s.chain  # the part up to the delegate, its new hops, the rest from the right anchor on
                s.chain = c[: c.index(d.left) + 1] + d.hops + c[c.index(d.right) :]
                for m, _ in s.mappings.values():  # the entries' notes carry the chain (adoption)
                    out.append(Modify(m))
            self.agent.metrics["reconf.delegate_done"] += 1
            out.append(Notify("reconfigured", f"{name}: rid {msg.rid} {where}", sid))
        else:
            self.agent.metrics["reconf.delegate_failed"] += 1
            out.append(Notify("reconfigure_failed", f"{name}: rid {msg.rid} {where} failed", sid, True))

    def _delegations_closed(self, s: Session, out: list[Action]) -> None:
        """Session ``s`` closed here: the edits asked for it are no longer waited for."""
        for rid in [r for r, d in self.delegated.items() if d.sid == s.sid]:
            del self.delegated[rid]
            why = f"rid {rid}: the session closed first"
            out.append(Notify("reconfigure_failed", f"{s.session}: {why}", s.sid, True))
