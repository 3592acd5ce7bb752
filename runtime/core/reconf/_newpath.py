"""Phase 2 of a reconfiguration: the new path (paper §3.3).

Once locked, the left anchor sends a SYN carrying the new path's address list (retransmitted
until the SYN-ACK comes, sealed anew each time); the new middleboxes' agents set the path up as
for a new session, and the right anchor answers the SYN with a SYN-ACK of its own making.  The
SYN-ACK at the left anchor starts phase 3 (a state export) or phase 4 (the switch).
"""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._alloc import PortsExhausted
from dysco.runtime.core._events import Action, Mapping, Port, Send, Table
from dysco.runtime.core._messenger import ATTEMPTS, FIRST_RTO, MAX_RTO
from dysco.runtime.core._session import Direction, Session
from dysco.runtime.core._twopath import M32, Anchor, Phase
from dysco.runtime.core._types import FiveTuple
from dysco.runtime.core.reconf._base import MAC, SYN_TIMER, Base


class NewPathPhase(Base):
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
        self.agent._install(s, Mapping(Table.IN, new.reversed(), None, s.sid), Direction.REV, out)
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
            self.agent._install(s, Mapping(Table.IN, d, None, s.sid), Direction.FWD, out)
            seq = ((a.sent_so_far() or 1) - 1) & M32  # the boundary, if it switches now
            synack = pk.TcpFrame(MAC, MAC, d.dst, d.src, d.dport, d.sport, seq, (f.seq + 1) & M32,
                                 pk.SYN | pk.ACK, 65535, b"\x02\x04\x05\xb4")  # fmt: skip
            a.synack = synack.to_bytes()
            if a.extra.get("migrate"):  # the switch waits for the left anchor's SWITCH
                a.phase = Phase.MIGRATING
            elif a.extra.get("failed"):  # around a dead hop: no two paths
                self._fail_over(now, s, a, out)
            else:
                self._switch(now, s, a, out)
        elif a.new_in_key != d:
            return True  # a SYN of another new path for the same reconfiguration: ignore
        self.agent.metrics["reconf.new_path_syn"] += 1
        out.append(Send(a.synack, Port.NET))
        return True

    def _synack(self, now: int, s: Session, a: Anchor, f: pk.TcpFrame, out: list[Action]) -> None:
        assert a.new_target is not None
        if a.phase is Phase.NEW_PATH:
            self.agent.metrics["reconf.new_path_up"] += 1
            if a.extra.get("migrate"):
                self._export(now, s, a, out)
            elif a.extra.get("failed"):
                self._fail_over(now, s, a, out)
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
