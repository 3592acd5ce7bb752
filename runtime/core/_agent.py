"""The sans-IO Dysco agent at one host: the events it takes, the software path, management.

:class:`Agent` takes events (packets the NIC punted, timers, idle timeouts, refused writes,
policy updates, management commands) and returns actions (:mod:`dysco.runtime.core._events`).
It owns no socket, clock or task: the caller passes ``now`` (ns) and carries out the actions.

It is built in layers, each a module, in order: :mod:`._sessions` (what the agent keeps and how
a session ends), :mod:`._setup` (session setup along the chain), and this one (the events, the
software path of punted packets, management, and the triggers of reconfigurations and splices,
which :mod:`.reconf` carries out).  The sessions it keeps, their roles and its settings are
:mod:`._session`.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from dysco.compiler.passes import Chain, TypeStep
from dysco.compiler.software import SoftwareClassifier
from dysco.errors import PeerError, UserError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._events import Action, Delete, Mapping, Modify, Notify, Port, Reason, Send, Table
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._session import SECOND, Role, Session
from dysco.runtime.core._setup import Setup
from dysco.runtime.core._splice_translation import compute, side
from dysco.runtime.core._twopath import M32, after, translate
from dysco.runtime.core._types import FiveTuple, ip_int, ip_str

MAX_DELTA = (1 << 31) - 1
"""A declared delta's magnitude at most (sequence numbers are mod 2**32)."""


class Agent(Setup):
    """The sans-IO agent at one host.  Its layers, in order: what it keeps and how a session
    ends (:class:`~dysco.runtime.core._sessions.Sessions`), session setup
    (:class:`~dysco.runtime.core._setup.Setup`), then here the events it takes, the software
    path of punted packets, management and the triggers of reconfigurations and splices."""

    def packet_in(
        self, now: int, frame: bytes, port: Port, reason: Reason, policy_id: int = 0, session_id: int = 0
    ) -> list[Action]:
        out: list[Action] = []
        self.metrics[f"punts.{reason.value}"] += 1
        self.neighbours.learn(frame, port)
        if reason is Reason.CONTROL or reason is Reason.INBAND:
            self.rc.control(now, frame, out, inband=reason is Reason.INBAND)
            return self._finish(out)
        try:
            f = pk.parse(frame)
        except pk.MalformedFrame as exc:
            return self._drop(out, "malformed_frame", exc)
        # where the subsession's sequence numbers are: what in-band segments on it carry
        self.rc.msgs.book.saw(f.five_tuple, f.seq, f.ack if f.flags & pk.ACK else None)
        try:
            if reason is Reason.POLICY_SYN:
                self._policy_syn(now, f, policy_id, out)
            elif reason is Reason.DYSCO_SYN:
                self._dysco_syn(now, f, out)
            elif reason is Reason.TAGGED_SYN:
                self._tagged_syn(now, f, out)
            elif reason is Reason.TEARDOWN:
                self._teardown_copy(now, f, port, session_id, out)
            elif reason in (Reason.SESSION_PUNT, Reason.UNSUPPORTED):
                self._session_packet(now, f, port, out)
            elif reason is Reason.SETUP_MISS:
                self._setup_miss(now, frame, f, port, out)
            else:
                self._drop(out, f"reason_{reason.value}", None)
        except PeerError as exc:
            self._drop(out, "malformed_frame", exc)
        return self._finish(out)

    def timer(self, now: int) -> list[Action]:
        out: list[Action] = []
        self._announced = None
        self.rc.timer(now, out)
        while self._timers and self._timers[0][0] <= now:
            at, sid = heapq.heappop(self._timers)
            s = self.sessions.get(sid)
            if s is None or s.deadline != at:
                continue
            state = s.fsm.state
            if state is SessionState.CLOSING and s.fin_ends and not s.reset:
                if s.active + self.config.fin_wait > now:
                    # a FIN is not acknowledged yet: its sender retransmits it through this agent
                    self._set_deadline(s, s.active + self.config.fin_wait)
                    continue
                self.metrics["teardown.fin_unacknowledged"] += 1
            elif state is SessionState.CLOSING and s.active + self.config.linger > now:
                # packets still cross it (retransmissions, a two-path phase): linger from the last one
                self._set_deadline(s, s.active + self.config.linger)
                continue
            if state in (SessionState.PENDING, SessionState.SYN_SENT):
                self.metrics["errors.setup_timeout"] += 1
                out.append(Notify("setup_timeout", f"session {s.session} not set up in time", sid, True))
            self._close(now, s, "timeout" if state is not SessionState.CLOSING else "closed", out)
        return self._finish(out)

    def idle_timeout(self, now: int, table: Table, key: FiveTuple) -> list[Action]:
        out: list[Action] = []
        dropped = self.drops.pop((table, key), None)
        if dropped is not None:  # a spliced proxy's socket fell silent
            self._entries[table] -= 1
            out.append(Delete(dropped))
            return self._finish(out)
        sid = self.by_key.get((table, key))
        if sid is not None:
            self.metrics["sessions.idle"] += 1
            self._close(now, self.sessions[sid], "idle", out)
        else:  # an entry of no session this core holds (one an agent before a restart wrote): gone
            self.metrics["entries.orphans_removed"] += 1
            out.append(Delete(Mapping(table, key, None, 0)))
        return self._finish(out)

    def write_failed(self, now: int, mapping: Mapping, code: str, message: str) -> list[Action]:
        """The NIC refused ``mapping``: the session fails closed."""
        out: list[Action] = []
        self.metrics[f"errors.write.{code}"] += 1
        s = self.sessions.get(mapping.session_id)
        out.append(Notify("write_failed", f"{mapping.table.value} {mapping.key}: {code} {message}", 0, True))
        if s is not None:
            self._close(now, s, "write_failed", out)
        return self._finish(out)

    def policy_update(
        self, chains: Iterable[Chain], software: SoftwareClassifier | None = None
    ) -> list[Action]:
        """New chains, and the evaluator for software punts, for new sessions; live sessions
        keep theirs."""
        self.chains = {c.id: c for c in chains}
        self.software = software
        return [Notify("policy_update", f"{len(self.chains)} chains")]

    def set_keys(self, keys: auth.KeyRing) -> list[Action]:
        """A new key ring (a rotation, docs/security.md): its current key signs from now on, all
        of its keys verify.  Only for an agent that authenticates (started with keys)."""
        if self.guard is None:
            raise UserError("this agent does not authenticate its messages (start it with --keys)")
        self.config = replace(self.config, keys=keys)
        self.rc.msgs.keys = keys
        return [Notify("keys", f"current {keys.current}, ids {' '.join(map(str, sorted(keys.keys)))}")]

    def drain(self, instances: Iterable[int]) -> list[Action]:
        """Leave ``instances`` (all of them drained, the ones before that are not back) out of
        the choice of middlebox instances for new sessions; live sessions keep theirs."""
        self.selector.drained = frozenset(instances)
        return [Notify("drain", " ".join(ip_str(a) for a in sorted(self.selector.drained)) or "none")]

    def drained_types(self) -> dict[str, tuple[int, ...]]:
        """The middlebox types of the chains in force whose every instance is drained (their
        chains' new sessions are refused), with those instances."""
        found: dict[str, tuple[int, ...]] = {}
        for chain in self.chains.values():
            for step in chain.hops:
                if isinstance(step, TypeStep):
                    addrs = tuple(ip_int(a) for a in step.instances)
                    if addrs and all(a in self.selector.drained for a in addrs):
                        found[step.type] = addrs
        return found

    def drain_target(self, instance: int, path: Iterable[int]) -> int | None:
        """Where a session through the drained ``instance`` (its hops ``path``) goes: another
        instance of a middlebox type of the chains in force that has ``instance``, not drained
        and not on the path, the least loaded; None when there is none."""
        others: list[int] = []
        for chain in self.chains.values():
            for step in chain.hops:
                if isinstance(step, TypeStep):
                    addrs = [ip_int(a) for a in step.instances]
                    if instance in addrs:
                        others += [a for a in addrs if a != instance and a not in others]
        return self.selector.replacement(tuple(others), frozenset(path) | {instance})

    def prepend_hops(self, session: FiveTuple, hops: Iterable[int]) -> list[Action]:
        """A middlebox application chooses next hops for the session it was handed with
        five-tuple ``session`` (the SYN it got, tagged): ``hops`` go ahead of the rest of the
        chain.  It must ask before it sends the SYN on: the agent opens the next subsession when
        the SYN comes back out.  Notifies ``hops_added`` (the chain from here on) or
        ``hops_refused`` (why)."""
        new = list(hops)
        sid = self.pending.get(session)
        s = self.sessions.get(sid) if sid is not None else None
        why = ""
        if s is None:
            why = (
                f"no session {session} being set up through a middlebox here "
                "(not a Dysco session, not a middle of its chain, or its SYN already went on)"
            )
        elif self.config.address in new:
            why = f"{ip_str(self.config.address)} is this agent: a hop cannot be the middlebox itself"
        elif len(new) + len(s.remaining) > wire.MAX_HOPS:
            why = f"{len(new)} hops ahead of {len(s.remaining)} would make more than {wire.MAX_HOPS}"
        if why or s is None:
            self.metrics["setup.hops_refused"] += 1
            return self._finish([Notify("hops_refused", why, sid or 0, True)])
        s.remaining[:0] = new
        me = s.chain.index(self.config.address) if self.config.address in s.chain else -1
        s.chain = (*s.chain[: me + 1], *s.remaining)
        out: list[Action] = [Modify(m) for m, _ in s.mappings.values()]  # their note carries the chain
        self.metrics["setup.hops_added"] += 1
        chain = ", ".join(ip_str(a) for a in s.remaining)
        out.append(Notify("hops_added", f"{s.session}: on through {chain}", s.sid))
        return self._finish(out)

    def declare_delta(self, inbound: FiveTuple, fwd: int, rev: int) -> list[Action]:
        """The middlebox application on this host declares what it did to the length of the
        session's stream that reached it as ``inbound`` (the connection as it sees it, peer to
        local: the session's five-tuple at a middle): ``fwd`` bytes added to the stream from the
        left (client) so far, ``rev`` to the stream from the right (negative: removed).  They
        replace what it declared before.  When the middlebox leaves the session (a rightRequest,
        a reconfiguration that deletes or replaces it, a splice) the anchors take them into the
        sequence numbers they translate.  Notifies ``delta_declared`` or ``delta_refused``."""
        sid = self.by_key.get((Table.OUT, inbound.reversed()))
        s = self.sessions.get(sid) if sid is not None else None
        why = ""
        if s is None or s.role is Role.LEFT:
            why = f"no session {inbound} reaching a middlebox or proxy on this host"
        elif any(abs(d) > MAX_DELTA for d in (fwd, rev)):
            why = f"deltas {fwd}, {rev}: each must be of magnitude below 2**31"
        elif self._in_reconfiguration(s.sid):
            why = f"{s.session} is already being reconfigured: declare the delta before the removal starts"
        if why or s is None:
            self.metrics["delta.refused"] += 1
            return self._finish([Notify("delta_refused", why, sid or 0, True)])
        s.mb_delta = (fwd, rev)
        self.metrics["delta.declared"] += 1
        text = f"{s.session}: {fwd:+d} left to right, {rev:+d} back"
        return self._finish([Notify("delta_declared", text, s.sid)])

    def _in_reconfiguration(self, sid: int) -> bool:
        """Session ``sid`` is locked, anchored, spliced or has a request of ours on its way."""
        rc = self.rc
        busy = sid in rc.locks or sid in rc.anchors or sid in rc.splices
        return busy or any(p.sid == sid for p in rc.msgs.outbox.values())

    def _session_packet(self, now: int, f: pk.TcpFrame, port: Port, out: list[Action]) -> None:
        """A packet of a session the fast path did not translate: do it in software."""
        table = Table.OUT if port is Port.HOST else Table.IN
        sid = self.by_key.get((table, f.five_tuple))
        if sid is None:
            self._drop(out, "unknown_session", None)
            return
        s = self.sessions[sid]
        s.active = now
        if self.rc.anchor_packet(now, s, f, port, out):
            return
        m, direction = s.mappings[(table, f.five_tuple)]
        target = m.target
        waited = s.waiting.pop((table, f.five_tuple), None)
        if waited is not None:  # the handshake's SYN-ACK (Config.splice): seen once, then fast
            if f.flags & pk.SYN and f.flags & pk.ACK:
                if table is Table.OUT:
                    s.host_syn = side(f, now)
                else:
                    s.peer_syn = side(f, now)
            m = replace(m, target=waited)
            s.mappings[(table, f.five_tuple)] = (m, direction)
            out.append(Modify(m))
            target = waited
        if target is None:  # the left end's SYN_SENT entry
            if f.syn_only:
                self._resend(now, s, f, out)
                return
            assert s.down is not None
            target = s.down.tuple
            if s.fsm.state is SessionState.SYN_SENT:
                s.fsm.set(SessionState.ESTABLISHED)
                s.deadline = None
                m2 = replace(m, target=target)
                s.mappings[(table, f.five_tuple)] = (m2, direction)
                out.append(Modify(m2))
        self.metrics["software.translated"] += 1
        g = translate(f, target, m.seq_delta, m.ack_delta, (m.ts_val_delta, m.ts_ecr_delta), m.ws)
        out_port = Port.NET if port is Port.HOST else Port.HOST
        out.append(Send(g.to_bytes(), out_port))
        self._fin_acknowledged(now, s, f, port)
        if f.flags & pk.FIN and (s.fsm.state is not SessionState.CLOSING or s.fin_ends):
            # noted for the watch of a closing session's FINs; a session that closed without it
            # (a RST, or FINs a reconfiguration carried) lingers, and its entries do not show
            # this agent the acknowledgment of a FIN retransmitted now
            s.fin_ends[(out_port, g.five_tuple)] = (g.seq + g.seg_len()) & M32
        if f.flags & (pk.FIN | pk.RST):
            self._teardown_seen(now, s, direction, f.flags, out, watch=True)

    def _setup_miss(self, now: int, frame: bytes, f: pk.TcpFrame, port: Port, out: list[Action]) -> None:
        """A SYN-ACK that no entry translated: from the network, the answer to a SYN this agent
        sent on before its entries' writes were answered; from the host, the answer to a SYN it
        handed to the host so (the adapter gives the core this punt after the writes).  Translated
        here once; else a packet the NIC would have passed on untouched, so it goes on."""
        host = port is Port.HOST
        if (Table.OUT if host else Table.IN, f.five_tuple) in self.by_key:
            self.metrics["software.setup_miss_host" if host else "software.setup_miss"] += 1
            self._session_packet(now, f, port, out)
        else:
            self.metrics["software.setup_miss_host_passed" if host else "software.setup_miss_passed"] += 1
            out.append(Send(frame, Port.HOST if port is Port.NET else Port.NET))

    def _fin_acknowledged(self, now: int, s: Session, f: pk.TcpFrame, port: Port) -> None:
        """``f`` came in by ``port``: it acknowledges a FIN that left by that port with the
        reversed five-tuple when its ack is at or past the FIN's end."""
        if not s.fin_ends or not f.flags & pk.ACK:
            return
        key = (port, f.five_tuple.reversed())
        end = s.fin_ends.get(key)
        if end is None or after(end, f.ack):
            return
        del s.fin_ends[key]
        if not s.fin_ends and s.fsm.state is SessionState.CLOSING:
            self._set_deadline(s, now + self.config.linger)

    def _teardown_copy(
        self, now: int, f: pk.TcpFrame, port: Port, session_id: int, out: list[Action]
    ) -> None:
        table = Table.OUT if port is Port.HOST else Table.IN
        s = self.sessions.get(session_id)
        entry = s.mappings.get((table, f.five_tuple)) if s is not None else None
        if s is None or entry is None:
            self.metrics["teardown.unknown"] += 1
            return
        s.active = now
        self._teardown_seen(now, s, entry[1], f.flags, out)

    def status(self, now: int) -> dict[str, object]:
        states = Counter(s.fsm.state.value for s in self.sessions.values())
        return {
            "name": self.config.name,
            "address": ip_str(self.config.address),
            "sessions": len(self.sessions),
            "states": dict(states),
            "entries": {t.value: n for t, n in self._entries.items()},
            "ports_in_use": self.ports.in_use(),
            "chains": len(self.chains),
            "metrics": dict(sorted(self.metrics.items())),
        }

    def session_list(self, now: int) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for s in self.sessions.values():
            subs = [
                {"side": side, "five_tuple": sub.tuple.as_json(), "state": sub.fsm.state.value}
                for side, sub in (("left", s.up), ("right", s.down))
                if sub is not None
            ]
            rows.append(
                {
                    "id": s.sid,
                    "role": s.role.value,
                    "five_tuple": s.session.as_json(),
                    "chain": [ip_str(a) for a in s.chain],
                    "subsessions": subs,
                    "state": s.fsm.state.value,
                    "age_s": round((now - s.created) / SECOND, 3),
                }
            )
            anchor = self.rc.anchors.get(s.sid)
            if anchor is not None:
                rows[-1]["reconfiguration"] = anchor.describe()
        return rows

    def empty(self) -> bool:
        """No session, no map entry, no port: what a test checks after everything ended."""
        return not (
            self.sessions
            or self.by_key
            or self.by_tag
            or self.pending
            or self.ports.in_use()
            or any(self._entries.values())
            or self.selector.load
            or self.drops
            or not self.rc.empty()
        )

    def reconfigure(
        self, now: int, sid: int, right: int, hops: Iterable[int], *, failed: int = 0, failover: bool = False
    ) -> list[Action]:
        """Replace the part of session ``sid``'s path from this agent to ``right`` (an agent on
        the path to the right) by ``hops`` (new middleboxes; none: delete what is between).

        ``failed``: that part is one dead hop (its host is gone), this agent's right neighbour,
        and ``right`` the hop after it: the anchors set the new path up without it
        (:mod:`dysco.runtime.core.reconf._failover`).  ``failover``: that part is this agent's
        right neighbour, and if it never answers the lock request (control timeouts) the
        reconfiguration goes around it as with ``failed`` (``reconfigure_failover``)."""
        out: list[Action] = []
        s = self.sessions.get(sid)
        if s is None:
            out.append(Notify("reconfigure_refused", f"no session {sid}", sid, True))
        else:
            self.rc.start(now, s, right, tuple(hops), out, failed, failover=failover)
        return self._finish(out)

    def delegate_reconfiguration(
        self,
        now: int,
        sid: int,
        left: int,
        right: int,
        hops: Iterable[int],
        *,
        failed: int = 0,
        failover: bool = False,
    ) -> list[Action]:
        """Ask ``left``, an agent of session ``sid`` to the right of this one, to replace the part
        of the path from it to ``right`` by ``hops`` as its left anchor (an edit further along the
        chain; see :mod:`dysco.runtime.core.reconf._delegate`).  Notifies as :meth:`reconfigure`
        does: ``reconfigure_started`` (or ``_refused``), then ``reconfigured`` or
        ``reconfigure_failed``, under this agent's rid for it.  ``failed``: as for
        :meth:`reconfigure`, the dead hop right of ``left``; ``failover`` too."""
        out: list[Action] = []
        s = self.sessions.get(sid)
        if s is None:
            out.append(Notify("reconfigure_refused", f"no session {sid}", sid, True))
        else:
            self.rc.delegate(now, s, left, right, tuple(hops), out, failed, failover=failover)
        return self._finish(out)

    def request_reconfiguration(self, now: int, sid: int, right: int, hops: Iterable[int]) -> list[Action]:
        """rightRequest: ask the agent on this agent's left on session ``sid`` to replace the part
        of the path from it to ``right`` (this agent, or one on its right) by ``hops``; that agent
        becomes the left anchor.  Notifies ``right_request_sent`` (or ``_refused``), then
        ``right_request_accepted`` with the left anchor's rid, ``_refused`` or ``_failed``."""
        out: list[Action] = []
        s = self.sessions.get(sid)
        if s is None:
            out.append(Notify("right_request_refused", f"no session {sid}", sid, True))
        else:
            self.rc.right_request(now, s, right, tuple(hops), out)
        return self._finish(out)

    def request_removal(self, now: int, sid: int) -> list[Action]:
        """A middlebox asks to be deleted from session ``sid``: the agent on its left reconnects
        the session directly to the agent on its right (a rightRequest with no new hops)."""
        s = self.sessions.get(sid)
        if s is None or s.role is not Role.MIDDLE or s.down is None:
            what = "no session" if s is None else f"a {s.role.value} agent of"
            note = Notify(
                "right_request_refused", f"{what} session {sid}: only a middlebox can leave", sid, True
            )
            return self._finish([note])
        return self.request_reconfiguration(now, sid, s.down.tuple.dst, ())

    def splice(
        self, now: int, inbound: FiveTuple, outbound: FiveTuple, fwd_bytes: int = 0, rev_bytes: int = 0
    ) -> list[Action]:
        """A TCP-terminating proxy on this host hands over its two sockets: remove the proxy from
        the path so that the client's and the server's anchors carry the bytes between them.

        ``inbound``: the accepted socket as the proxy sees it, peer to local (client address and
        port -> this host's address and the listening port); it must be a Dysco session whose
        right end is this agent.  ``outbound``: the connected socket, local to peer (this host's
        address and port -> the server's); it must be a Dysco session this agent opened (the
        proxy's policy).  ``fwd_bytes``: bytes the proxy added to the client's stream (written
        to ``outbound`` minus read from ``inbound``; 0 for a relay), ``rev_bytes`` the same the
        other way.  The rest comes from the handshakes this agent watched (``Config.splice``):
        initial sequence numbers, window scale, SACK permitted and timestamps of both sessions.

        The agent asks the agent on the client's side to reconfigure the path up to the agent on
        the server's side with no middlebox (a rightRequest); the proxy keeps relaying until its
        sockets fall silent (the two-path phase drains the bytes already on the old path).  When
        the old path is torn down this agent reports ``spliced`` and installs drop entries for
        the four five-tuples of the two sockets, so whatever the proxy's kernel still sends (FIN,
        RST, retransmissions) never leaves the NIC; they go when they idle out.  Notifies
        ``splice_started`` (with ``splice_warning`` for a difference that cannot be translated) or
        ``splice_refused``; the reconfiguration's outcome is the left anchor's
        (``right_request_accepted`` / ``_refused`` / ``_failed`` here)."""
        out: list[Action] = []
        s1 = self.sessions.get(self.by_key.get((Table.OUT, inbound.reversed()), 0))
        s2 = self.sessions.get(self.by_key.get((Table.OUT, outbound), 0))
        why = ""
        if s1 is None or s1.role is not Role.RIGHT or s1.up is None:
            why = f"the inbound socket {inbound} is not a Dysco session ending at this agent"
        elif s2 is None or s2.role is not Role.LEFT or s2.down is None:
            why = f"the outbound socket {outbound} is not a Dysco session this agent opened"
        elif None in (s1.peer_syn, s1.host_syn, s2.host_syn, s2.peer_syn):
            why = "the handshakes were not watched (start the agent with splice enabled)"
        elif any(x.fsm.state not in (SessionState.ESTABLISHED, SessionState.HALF_CLOSED) for x in (s1, s2)):
            why = "both sessions must be established"
        elif s1.sid in self.rc.splices or s1.sid in self.rc.anchors or s1.sid in self.rc.locks:
            why = "the inbound session is already being spliced or reconfigured"
        if why or s1 is None or s2 is None:
            self.metrics["splice.refused"] += 1
            out.append(Notify("splice_refused", why, 0, True))
            return self._finish(out)
        assert s1.peer_syn and s1.host_syn and s2.host_syn and s2.peer_syn
        t = compute(s1.peer_syn, s1.host_syn, s2.host_syn, s2.peer_syn, fwd_bytes, rev_bytes)
        for w in t.warnings:
            out.append(Notify("splice_warning", f"{s1.session} + {s2.session}: {w}", s1.sid))
        self.rc.splice(now, s1, s2, t, out)
        return self._finish(out)


def hook_done(agent: Agent, now: int, call_id: int, state: bytes, error: str) -> list[Action]:
    """The event an adapter feeds the core when a state hook's call
    (:class:`~dysco.runtime.core._statehook.HookCall`) finished (``error`` empty: it succeeded,
    ``state`` is an export's result)."""
    out: list[Action] = []
    agent.rc.mig.done(now, call_id, state, error, out)
    return agent._finish(out)
