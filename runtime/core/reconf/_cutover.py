"""Phase 4 of a reconfiguration: the two-path phase and the cut-over (paper §3.3, the model's
split cases; the bookkeeping is :class:`dysco.runtime.core._twopath.Anchor`).

Each anchor switches: what its host sent so far is old, later data takes the new path, and a
SWITCH tells the other anchor where the old data ends (a probe asks a silent host for it).
Until the phase ends the anchors route their session's packets themselves, splitting segments
between the two paths.
"""

from __future__ import annotations

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Action, Notify, Port, Send
from dysco.runtime.core._session import Direction, Session
from dysco.runtime.core._twopath import M32, Anchor, PathSide, Phase, translate
from dysco.runtime.core._types import FiveTuple
from dysco.runtime.core.reconf._base import PROBE_ATTEMPTS, PROBE_RTO, PROBE_TIMER, Base


class TwoPathPhase(Base):
    def _switch(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """This anchor switches: what its host sent so far is old, later data takes the new path."""
        a.fix_boundary()
        a.phase = Phase.TWO_PATH
        self._switch_msg(now, s, a, out)

    def _switch_msg(self, now: int, s: Session, a: Anchor, out: list[Action], *, idle: bool = False) -> None:
        """Tell the peer where this host's old-path data ends (``old_sent``).

        A host that sent nothing since the lock (``a.idle``) may still have bytes on the old
        path that a TCP-terminating proxy holds; where they end is the host's ``snd_nxt``, which
        only its next segment shows.  The message waits for that segment, and a probe elicits
        one (:meth:`_probe`); only a host that stays silent through every probe is reported as
        IDLE (``idle``), the peer then waiting for nothing on the old path."""
        if a.host_ack is None and not a.probes:
            self._probe(now, s, a, out)  # the completion test needs the host's acknowledgment too
        value = a.idle_seq if a.idle else a.old_sent
        if value is None and not idle:
            a.switch_waits = True
            return
        a.switch_waits = False
        rid = a.extra["rid"]
        left = self.me if a.left else a.peer
        status = cw.Status.OK if value is not None else cw.Status.IDLE
        msg = cw.Message(cw.Kind.SWITCH, self._id(), rid, left, self.me if not a.left else a.peer,
                         left_session=self._left_view(s) if a.left else FiveTuple(0, 0, 0, 0, 0),
                         value=value or 0, status=status)  # fmt: skip
        self._request(now, a.peer, msg, s.sid, out)

    def _probe(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Ask the host for a segment: a SYN on its established connection is answered with an
        ACK carrying its ``snd_nxt`` and ``rcv_nxt`` whatever its sequence number (RFC 5961
        §4.2, Linux's challenge ACK).  Only an end host is probed: a middlebox application
        would pass the SYN on."""
        a.probes += 1
        end = s.up is None if a.left else s.down is None
        if end and s.macs is not None:
            t = a.in_target
            probe = pk.TcpFrame(*s.macs, t.src, t.dst, t.sport, t.dport, 0, 0, pk.SYN, 0)
            out.append(Send(probe.to_bytes(), Port.HOST))
            self.agent.metrics["reconf.host_probes"] += 1
        self.msgs.wake(now + PROBE_RTO * (1 << (a.probes - 1)), PROBE_TIMER, s.sid)

    def _probe_timer(self, now: int, sid: int, out: list[Action]) -> None:
        a = self.anchors.get(sid)
        s = self.agent.sessions.get(sid)
        if a is None or s is None or a.phase is not Phase.TWO_PATH:
            return
        if a.host_ack is not None and not a.switch_waits:
            return  # the host answered
        if a.probes < PROBE_ATTEMPTS:
            self._probe(now, s, a, out)
        elif a.switch_waits:
            self.agent.metrics["reconf.idle_switch"] += 1
            self._switch_msg(now, s, a, out, idle=True)

    def _host_spoke(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """The host's segment showed its sequence number: the SWITCH that waited for it goes."""
        if a.switch_waits and a.idle_seq is not None:
            self._switch_msg(now, s, a, out)

    def anchor_packet(self, now: int, s: Session, f: pk.TcpFrame, port: Port, out: list[Action]) -> bool:
        a = self.anchors.get(s.sid)
        if a is None:
            return False
        if a.phase is Phase.FAILED_OVER:
            return self.failover_packet(now, s, a, f, port, out)
        if port is Port.HOST:
            if f.five_tuple != a.out_key:
                return False
            for side, g in a.outgoing(f):
                if side is PathSide.OLD:
                    out.append(Send(translate(g, a.old_target, 0, a.old_delta).to_bytes(), Port.NET))
                else:
                    assert a.new_target is not None
                    g = translate(g, a.new_target, 0, a.new_delta, (0, -a.new_ts & M32))
                    out.append(Send(g.to_bytes(), Port.NET))
                    self._new_data(s, a, "sent", len(g.payload), out)
            self._host_spoke(now, s, a, out)
            direction = Direction.FWD if a.left else Direction.REV
        else:
            t = f.five_tuple
            if t == a.new_in_key:
                if f.flags & pk.SYN:
                    if a.left and a.phase is not Phase.LOCKING and f.flags & pk.ACK:
                        self._synack(now, s, a, f, out)
                    return True
                if f.flags & pk.RST:
                    # the other anchor's agent freeing the new path (it closed or gave up); whatever
                    # ends the session reaches this host on the old path
                    self.agent.metrics["reconf.new_path_rst"] += 1
                    return True
            elif t == a.old_in_key:
                if f.flags & pk.RST and not a.left and a.sent_done:
                    # the left anchor may have completed and freed the old path: this is a kernel's
                    # answer to one of our host's stragglers there (a middlebox or the left host no
                    # longer knows the old subsession), not the session's end; a RST of the left
                    # host comes on the new path too (the left anchor is past its switch)
                    self.agent.metrics["reconf.old_path_rst"] += 1
                    return True
            else:
                return False
            a.incoming(f)
            if t == a.new_in_key:
                self._new_data(s, a, "received", len(f.payload), out)
            out.append(Send(a.to_host(f, t == a.new_in_key).to_bytes(), Port.HOST))
            direction = Direction.REV if a.left else Direction.FWD
        self.agent.metrics["reconf.two_path_packets"] += 1
        if f.flags & (pk.FIN | pk.RST):
            self.agent._teardown_seen(now, s, direction, f.flags, out)
        self._check(now, s, a, out)
        return True

    def _new_data(self, s: Session, a: Anchor, how: str, n: int, out: list[Action]) -> None:
        """Once per anchor: the first data segment it sends or receives on the new path."""
        if n and "new_data" not in a.extra:
            a.extra["new_data"] = n
            out.append(Notify("new_path_data", f"{s.session}: rid {a.extra['rid']}: {how} {n} bytes", s.sid))
