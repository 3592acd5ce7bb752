"""The sans-IO Dysco agent: session setup along the chain, the software path, teardown.

:class:`Agent` takes events (packets the NIC punted, timers, idle timeouts, refused writes,
policy updates, management commands) and returns actions (:mod:`dysco.runtime.core._events`).
It owns no socket, clock or task: the caller passes ``now`` (ns) and carries out the actions.

The sessions it keeps, their roles and its settings are :mod:`._session`.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from dysco.compiler.passes import AddressStep, Chain
from dysco.errors import PeerError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._alloc import PortPool, PortsExhausted, Selector
from dysco.runtime.core._events import (
    Action,
    Delete,
    Install,
    Mapping,
    Modify,
    Notify,
    Port,
    Reason,
    Send,
    SetTimer,
    Table,
)
from dysco.runtime.core._fsm import (
    SESSION_TRANSITIONS,
    SUBSESSION_TRANSITIONS,
    Machine,
    SessionState,
    SubsessionState,
)
from dysco.runtime.core._peers import Peers
from dysco.runtime.core._session import SECOND, Config, Direction, Role, Session, Subsession
from dysco.runtime.core._splice_translation import compute, side
from dysco.runtime.core._twopath import M32, after, translate
from dysco.runtime.core._types import FiveTuple, ip_int, ip_str, prefixed
from dysco.runtime.core.reconf import Reconfigurer


class Agent:
    def __init__(self, config: Config, chains: Iterable[Chain] = ()) -> None:
        self.config = config
        self.log = prefixed(__name__, config.name, "core")
        self.chains: dict[int, Chain] = {c.id: c for c in chains}
        self.sessions: dict[int, Session] = {}
        self.by_key: dict[tuple[Table, FiveTuple], int] = {}
        self.by_tag: dict[int, int] = {}
        self.pending: dict[FiveTuple, int] = {}
        self.ports = PortPool(config.port_low, config.port_high)
        self.selector = Selector()
        self.metrics: Counter[str] = Counter()
        self._next_sid = 1
        self._next_tag = 1
        self._timers: list[tuple[int, int]] = []
        self._announced: int | None = None
        self._entries = {Table.OUT: 0, Table.IN: 0}
        self.drops: dict[tuple[Table, FiveTuple], Mapping] = {}
        """Drop entries for a spliced proxy's sockets, until they idle out."""
        self.guard = (
            auth.ReplayGuard(config.address, config.replay_window, metrics=self.metrics)
            if config.keys
            else None
        )
        self.peers = Peers(config.peer_cells if config.keys else 0, self.metrics)
        self.rc = Reconfigurer(self)
        self.rc.msgs.keys, self.rc.msgs.guard, self.rc.msgs.peers = config.keys, self.guard, self.peers

    # ---- events ---------------------------------------------------------------------------------

    def packet_in(
        self, now: int, frame: bytes, port: Port, reason: Reason, policy_id: int = 0, session_id: int = 0
    ) -> list[Action]:
        out: list[Action] = []
        self.metrics[f"punts.{reason.value}"] += 1
        if reason is Reason.CONTROL:
            self.rc.control(now, frame, out)
            return self._finish(out)
        try:
            f = pk.parse(frame)
        except pk.MalformedFrame as exc:
            return self._drop(out, "malformed_frame", exc)
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

    def policy_update(self, chains: Iterable[Chain]) -> list[Action]:
        """New chains for new sessions; live sessions keep theirs."""
        self.chains = {c.id: c for c in chains}
        return [Notify("policy_update", f"{len(self.chains)} chains")]

    def prepend_hops(self, session: FiveTuple, hops: Iterable[int]) -> bool:
        """A middlebox application asks for ``hops`` ahead of the rest of the chain for the session
        it was handed with five-tuple ``session`` (before it sends the SYN on)."""
        sid = self.pending.get(session)
        if sid is None:
            return False
        s = self.sessions[sid]
        s.remaining[:0] = list(hops)
        if len(s.remaining) > wire.MAX_HOPS:
            del s.remaining[wire.MAX_HOPS :]
        return True

    # ---- session setup --------------------------------------------------------------------------

    def _policy_syn(self, now: int, f: pk.TcpFrame, policy_id: int, out: list[Action]) -> None:
        s0 = f.five_tuple
        sid = self.by_key.get((Table.OUT, s0))
        if sid is not None:
            self._resend(now, self.sessions[sid], f, out)
            return
        if not f.syn_only:
            self._drop(out, "policy_not_syn", None)
            return
        chain = self.chains.get(policy_id)
        if chain is None:
            self._fail(out, "unknown_policy", f"no chain with id {policy_id}")
            return
        hops: list[int] = []
        instances: list[int] = []
        for step in chain.hops:
            if isinstance(step, AddressStep):
                hops.append(ip_int(step.address))
            else:
                addrs = tuple(ip_int(a) for a in step.instances)
                choice = self.selector.pick(step.type, addrs, step.select, s0)
                hops.append(choice)
                instances.append(choice)
        if not self._agentless(s0.dst):
            hops.append(s0.dst)
        if not hops:
            out.append(Send(f.to_bytes(), Port.NET))
            return
        if len(hops) > wire.MAX_HOPS:
            self._fail(out, "chain_too_long", f"{len(hops)} hops > {wire.MAX_HOPS}")
            return
        if not self._room():
            return self._table_full(out, s0)
        try:
            lport = self.ports.allocate(hops[0])
        except PortsExhausted as exc:
            self._fail(out, "ports_exhausted", f"{s0}: {exc}")
            return
        s = self._new(now, Role.LEFT, s0, tuple(hops), SessionState.SYN_SENT)
        s.instances = tuple(instances)
        s.macs = (f.eth_src, f.eth_dst)
        for a in instances:
            self.selector.acquire(a)
        d = FiveTuple(self.config.address, hops[0], lport, s0.dport)
        s.down = Subsession(d, self._sub_fsm(s, "down"), lport)
        s.syn_out = wire.SynPayload(s0, tuple(hops))
        self._install(s, Mapping(Table.OUT, s0, None, s.sid), Direction.FWD, out)
        if self.config.splice:  # the server's SYN-ACK comes to the agent once
            s.host_syn = side(f, now)
            s.waiting[(Table.IN, d.reversed())] = s0.reversed()
            self._install(s, Mapping(Table.IN, d.reversed(), None, s.sid), Direction.REV, out)
        else:
            self._install(s, Mapping(Table.IN, d.reversed(), s0.reversed(), s.sid), Direction.REV, out)
        self._set_deadline(s, now + self.config.setup_timeout)
        self._send_syn(now, s, f, out)

    def _send_syn(self, now: int, s: Session, f: pk.TcpFrame, out: list[Action]) -> None:
        assert s.down is not None and s.syn_out is not None
        payload = self.seal_syn(now, s.syn_out) + f.payload
        syn = replace(f.with_tuple(s.down.tuple), options=pk.strip_tag(f.options), payload=payload)
        out.append(Send(syn.to_bytes(), Port.NET))
        s.down.fsm.set(SubsessionState.OPEN)

    def _resend(self, now: int, s: Session, f: pk.TcpFrame, out: list[Action]) -> None:
        """A SYN of a session that exists: the host or middlebox retransmitted it."""
        self.metrics["syn.retransmitted"] += 1
        if s.fsm.state in (SessionState.SYN_SENT, SessionState.PENDING):
            # the host (or middlebox) still tries: the setup may take as long as its retries do
            self._set_deadline(s, now + self.config.setup_timeout)
        if s.down is not None and s.syn_out is not None:
            self._send_syn(now, s, f, out)

    @property
    def wall_offset(self) -> int:
        """What to add to the adapter's clock for wall-clock ns (message stamps); 0 in the
        simulation, whose agents share one clock."""
        return self.rc.msgs.wall_offset

    @wall_offset.setter
    def wall_offset(self, value: int) -> None:
        self.rc.msgs.wall_offset = value

    def wall(self, now: int) -> int:
        """``now`` (the adapter's clock) as ns since the Unix epoch, as message stamps carry it."""
        return now + self.wall_offset

    def seal_syn(self, now: int, p: wire.SynPayload) -> bytes:
        """The payload's bytes, sealed for its first hop when the agent has keys."""
        return wire.encode(
            p, self.config.keys, sender=self.config.address, receiver=p.hops[0], now=self.wall(now)
        )

    def _dysco_syn(self, now: int, f: pk.TcpFrame, out: list[Action]) -> None:
        if not f.syn_only:
            self._drop(out, "dysco_syn_not_syn", None)
            return
        try:
            p, rest = wire.decode(f.payload, self.config.keys, self.guard, now=self.wall(now))
        except wire.BadPayload as exc:
            self.metrics[f"drops.bad_payload.{exc.kind}"] += 1
            self.log.debug("dropped a Dysco SYN from %s: %s", ip_str(f.src), exc)
            return
        me = self.config.address
        d = f.five_tuple
        if d.dst != me or p.hops[0] != me or p.family != 4:
            self._drop(out, "not_for_us", None)
            return
        self.peers.verified(f.src, p.tag, out)
        if self.rc.new_path_syn(now, f, p, out):
            return
        sid = self.by_key.get((Table.IN, d))
        if sid is not None:
            old = self.sessions[sid]
            if old.session == p.session:
                self.metrics["syn.retransmitted"] += 1
                if old.fsm.state is SessionState.PENDING:
                    self._set_deadline(old, now + self.config.setup_timeout)
                self._deliver(old, f, rest, out)
                return
            self._close(now, old, "replaced", out)  # the neighbour reused the subsession's port
        remaining = list(p.hops[1:])
        role = Role.MIDDLE if remaining else Role.RIGHT
        clash = self.by_key.get((Table.OUT, p.session.reversed()))
        if clash is not None:
            old = self.sessions[clash]
            same_hop = old.up is not None and old.up.tuple.src == d.src
            if old.session != p.session or not same_hop or self.rc.involved(old.sid):
                self._fail(out, "session_clash", f"{p.session} is already a session at this host")
                return
            # The same previous hop sets the same session up on a new subsession (d is no
            # subsession of ours): it gave the old one up, its setup having outlasted its
            # timeout, and its entries for the old one are gone.  Whether this host saw that
            # setup through (a middle that passed the SYN on, a right end) or not, the old
            # session is stale.  Only an agent of the domain can seal such a SYN, and the
            # replay guard refuses an old one again.  A session in a reconfiguration is live
            # (this is a new path's SYN reaching a middle of the old path): refused.
            self.metrics["sessions.resetup"] += 1
            self._close(now, old, "set up again", out)
        if not self._room():
            return self._table_full(out, p.session)
        state = SessionState.PENDING if role is Role.MIDDLE else SessionState.ESTABLISHED
        s = self._new(now, role, p.session, p.hops, state)
        s.remaining = remaining
        if role is Role.RIGHT:
            s.macs = (f.eth_dst, f.eth_src)
        s.up = Subsession(d, self._sub_fsm(s, "up"))
        s.up.fsm.set(SubsessionState.OPEN)
        self._install(s, Mapping(Table.IN, d, p.session, s.sid), Direction.FWD, out)
        if self.config.splice and role is Role.RIGHT:  # this host's SYN-ACK comes to the agent once
            s.peer_syn = side(f, now)
            s.waiting[(Table.OUT, p.session.reversed())] = d.reversed()
            self._install(s, Mapping(Table.OUT, p.session.reversed(), None, s.sid), Direction.REV, out)
        else:
            self._install(
                s, Mapping(Table.OUT, p.session.reversed(), d.reversed(), s.sid), Direction.REV, out
            )
        if role is Role.MIDDLE:
            s.tag = self._next_tag
            self._next_tag = self._next_tag % 0xFFFFFFFF + 1
            self.by_tag[s.tag] = s.sid
            self.pending[p.session] = s.sid
            self._set_deadline(s, now + self.config.setup_timeout)
        self._deliver(s, f, rest, out)

    def _deliver(self, s: Session, f: pk.TcpFrame, rest: bytes, out: list[Action]) -> None:
        g = replace(f.with_tuple(s.session), payload=rest)
        if s.tag is not None:
            tagged = pk.add_tag(g.options, s.tag)
            if tagged is None:
                self.metrics["syn.untaggable"] += 1  # recognised by its five-tuple instead
            else:
                g = replace(g, options=tagged)
        out.append(Send(g.to_bytes(), Port.HOST))

    def _tagged_syn(self, now: int, f: pk.TcpFrame, out: list[Action]) -> None:
        tag = pk.find_tag(f.options)
        sid = self.by_tag.get(tag) if tag is not None else None
        if sid is None:
            sid = self.pending.get(f.five_tuple)
        if sid is None:
            self._drop(out, "unknown_tag", None)
            return
        s = self.sessions[sid]
        if s.down is not None:
            self._resend(now, s, f, out)
            return
        emitted = f.five_tuple
        if not s.remaining:
            self._fail(out, "no_next_hop", f"{s.session}: the chain ends here")
            return
        nxt = s.remaining[0]
        if (Table.OUT, emitted) in self.by_key:
            self._fail(out, "session_clash", f"{emitted} is already a session at this host")
            self._close(now, s, "clash", out)
            return
        if not self._room():
            self._table_full(out, emitted)
            self._close(now, s, "table_full", out)
            return
        try:
            lport = self.ports.allocate(nxt)
        except PortsExhausted as exc:
            self._fail(out, "ports_exhausted", f"{emitted}: {exc}")
            self._close(now, s, "ports_exhausted", out)
            return
        self.pending.pop(s.session, None)
        s.emitted = emitted
        d2 = FiveTuple(self.config.address, nxt, lport, emitted.dport)
        s.down = Subsession(d2, self._sub_fsm(s, "down"), lport)
        s.syn_out = wire.SynPayload(emitted, tuple(s.remaining))
        self._install(s, Mapping(Table.OUT, emitted, d2, s.sid), Direction.FWD, out)
        self._install(s, Mapping(Table.IN, d2.reversed(), emitted.reversed(), s.sid), Direction.REV, out)
        s.fsm.set(SessionState.ESTABLISHED)
        s.deadline = None
        self._send_syn(now, s, f, out)

    # ---- steady state and teardown ---------------------------------------------------------------

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
        if f.flags & pk.FIN:
            s.fin_ends[(out_port, g.five_tuple)] = (g.seq + g.seg_len()) & M32
        if f.flags & (pk.FIN | pk.RST):
            self._teardown_seen(now, s, direction, f.flags, out, watch=True)

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

    def _teardown_seen(
        self,
        now: int,
        s: Session,
        direction: Direction,
        flags: int,
        out: list[Action],
        *,
        watch: bool = False,
    ) -> None:
        """A FIN or RST of ``direction``.  ``watch``: the agent forwarded it itself, with every
        acknowledgment of an earlier FIN it could have missed already checked (the segment's
        own ack): at CLOSING it waits for the acknowledgments of the FINs it forwarded.  Otherwise
        (a RST copy, a FIN message of a reconfiguration) an earlier FIN's acknowledgment may have
        passed unseen, and the session lingers as after a RST."""
        if flags & pk.RST:
            s.reset = True
        if s.fsm.state is SessionState.CLOSING:
            return
        if flags & pk.RST:
            self.metrics["teardown.rst"] += 1
            new = SessionState.CLOSING
        else:
            s.fins.add(direction)
            new = SessionState.CLOSING if len(s.fins) == 2 else SessionState.HALF_CLOSED
        s.fsm.set(new)
        if new is SessionState.CLOSING:
            self._set_deadline(s, now + self.config.linger)
            if watch and not s.reset:
                self._watch_close(s, out)
            else:
                s.fin_ends.clear()

    def _watch_close(self, s: Session, out: list[Action]) -> None:
        """Both FINs were seen: the session's entries punt from now on, so that the agent sees
        the acknowledgments of the FINs it forwarded and keeps translating retransmissions until
        then (the NIC alone would forward the ACKs unseen, and a lost FIN retransmitted after
        the linger would find no entry).  A reconfiguration that holds the session routes its
        packets itself: there the session lingers as before."""
        targets = {m.target for m, _ in s.mappings.values()}
        for key in [k for k in s.fin_ends if k[1] not in targets]:
            del s.fin_ends[key]  # a FIN forwarded before a reconfiguration moved the session
        if self.rc.involved(s.sid) or not s.fin_ends:
            s.fin_ends.clear()
            return
        for entry, (m, d) in list(s.mappings.items()):
            if not (m.drop or m.punt or m.target is None):
                m2 = replace(m, punt=True)
                s.mappings[entry] = (m2, d)
                out.append(Modify(m2))

    def _close(self, now: int, s: Session, why: str, out: list[Action]) -> None:
        self.rc.session_closed(now, s, out)
        for (table, key), (m, _) in s.mappings.items():
            out.append(Delete(m))
            self._entries[table] -= 1
            self.by_key.pop((table, key), None)
        s.mappings.clear()
        for sub in (s.up, s.down):
            if sub is not None:
                sub.fsm.set(SubsessionState.CLOSED)
                if sub.local_port is not None:
                    self.ports.release(sub.tuple.dst, sub.local_port)
        for a in s.instances:
            self.selector.release(a)
        if s.tag is not None:
            self.by_tag.pop(s.tag, None)
        if self.pending.get(s.session) == s.sid:
            del self.pending[s.session]
        s.fsm.set(SessionState.CLOSED)
        s.deadline = None
        del self.sessions[s.sid]
        self.metrics["sessions.closed"] += 1
        out.append(Notify("session_closed", f"{s.session} ({why})", s.sid))

    # ---- helpers ----------------------------------------------------------------------------------

    def _new(
        self, now: int, role: Role, session: FiveTuple, chain: tuple[int, ...], state: SessionState
    ) -> Session:
        sid = self._next_sid
        while sid in self.sessions or sid == 0:
            sid = sid % 0xFFFFFFFF + 1
        self._next_sid = sid % 0xFFFFFFFF + 1
        fsm = Machine(f"session {sid}", state, SESSION_TRANSITIONS, self.log)
        s = Session(sid, role, session, fsm, now, chain)
        self.sessions[sid] = s
        self.metrics["sessions.created"] += 1
        self.log.debug("session %d %s: %s via %s", sid, role.value, session, [ip_str(a) for a in chain])
        return s

    def _sub_fsm(self, s: Session, side: str) -> Machine[SubsessionState]:
        return Machine(f"session {s.sid} {side}", SubsessionState.OPENING, SUBSESSION_TRANSITIONS, self.log)

    def _install(self, s: Session, m: Mapping, direction: Direction, out: list[Action]) -> None:
        s.mappings[(m.table, m.key)] = (m, direction)
        self.by_key[(m.table, m.key)] = s.sid
        if self.drops.pop((m.table, m.key), None) is not None:
            # a spliced proxy's drop entry still holds the five-tuple (its subsession port was
            # released and reused, or the client reuses its port): the new session takes it over
            self.metrics["splice.drop_taken_over"] += 1
            out.append(Modify(m))
            return
        self._entries[m.table] += 1
        out.append(Install(m))

    def _room(self) -> bool:
        c = self.config
        return len(self.sessions) < c.max_sessions and max(self._entries.values()) + 2 <= c.table_size

    def _table_full(self, out: list[Action], session: FiveTuple) -> None:
        self._fail(out, "table_full", f"{session}: no room for another session; SYN dropped")

    def _agentless(self, addr: int) -> bool:
        a = ipaddress.IPv4Address(addr)
        return any(a in net for net in self.config.agentless)

    def _set_deadline(self, s: Session, at: int) -> None:
        s.deadline = at
        heapq.heappush(self._timers, (at, s.sid))

    def _drop(self, out: list[Action], kind: str, exc: Exception | None) -> list[Action]:
        self.metrics[f"drops.{kind}"] += 1
        if exc is not None:
            self.log.info("dropped a packet (%s): %s", kind, exc)
        return out

    def _fail(self, out: list[Action], kind: str, message: str) -> None:
        """A SYN that cannot be set up is dropped (fail closed) and reported."""
        self.metrics[f"errors.{kind}"] += 1
        self.log.warning("%s: %s", kind, message)
        out.append(Notify(kind, message, 0, True))

    def _finish(self, out: list[Action]) -> list[Action]:
        while self._timers:
            at, sid = self._timers[0]
            s = self.sessions.get(sid)
            if s is not None and s.deadline == at:
                break
            heapq.heappop(self._timers)
        nxt = self._timers[0][0] if self._timers else None
        rc = self.rc.next_deadline()
        if rc is not None and (nxt is None or rc < nxt):
            nxt = rc
        if nxt is not None and nxt != self._announced:
            self._announced = nxt
            out.append(SetTimer(nxt))
        return out

    # ---- management --------------------------------------------------------------------------------

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

    # ---- reconfiguration ---------------------------------------------------------------------------

    def reconfigure(self, now: int, sid: int, right: int, hops: Iterable[int]) -> list[Action]:
        """Replace the part of session ``sid``'s path from this agent to ``right`` (an agent on
        the path to the right) by ``hops`` (new middleboxes; none: delete what is between)."""
        out: list[Action] = []
        s = self.sessions.get(sid)
        if s is None:
            out.append(Notify("reconfigure_refused", f"no session {sid}", sid, True))
        else:
            self.rc.start(now, s, right, tuple(hops), out)
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

    # ---- splice --------------------------------------------------------------------------------------

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
