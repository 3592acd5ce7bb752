"""Splice, before phase 1: a TCP-terminating proxy's inbound and outbound sessions joined into
one path through this agent (with the translations :mod:`dysco.runtime.core._splice_translation`
computed), then a rightRequest to delete this hop; when the old path is torn down the proxy's
sockets are dropped in the NIC.
"""

from __future__ import annotations

from dysco.runtime.core._events import Action, Install, Mapping, Notify, Table
from dysco.runtime.core._session import Session
from dysco.runtime.core._splice_translation import Spliced
from dysco.runtime.core.reconf._base import Base


class SplicePhase(Base):
    def splice(self, now: int, s1: Session, s2: Session, t: Spliced, out: list[Action]) -> None:
        """Join a proxy's inbound session ``s1`` and outbound session ``s2`` into one path through
        this agent, then ask the agent on the left to delete this hop (rightRequest)."""
        assert s2.down is not None
        self.splices[s1.sid] = (s2.sid, t)
        self.agent.metrics["splice.started"] += 1
        out.append(Notify("splice_started", f"{s1.session} + {s2.session}", s1.sid))
        if not self.right_request(now, s1, s2.down.tuple.dst, (), out):
            del self.splices[s1.sid]

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
