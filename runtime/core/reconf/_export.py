"""Phase 3 of a reconfiguration, only when one stateful middlebox is replaced by another: the
anchors' side of state migration (the middleboxes' side is :mod:`._migrate`).

The new path is up but nobody switches: the left anchor asks the old middlebox's agent to export
its state to the new one (STATE_EXPORT) and switches when that succeeded, or cancels.
"""

from __future__ import annotations

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core._events import Action, Notify
from dysco.runtime.core._messenger import Pending
from dysco.runtime.core._session import Session
from dysco.runtime.core._twopath import Anchor, Phase
from dysco.runtime.core._types import ip_str
from dysco.runtime.core.reconf._base import Base


class StateExportPhase(Base):
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
