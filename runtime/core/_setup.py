"""Session setup along the chain (paper §2.3): the second layer of :class:`dysco.runtime.core.Agent`.

The left end classifies the host's SYN (a policy SYN), picks the chain's middlebox instances,
opens the first subsession and sends the SYN on with the Dysco payload; every later agent takes
the payload off (a Dysco SYN), installs its mappings and hands the SYN to its host, tagged when
a middlebox application will send it on; a middle agent recognises it coming back out (a tagged
SYN) and opens the next subsession.  Retransmitted SYNs go the same way again.
"""

from __future__ import annotations

from dataclasses import replace

from dysco.compiler.evaluate import Syn
from dysco.compiler.passes import AddressStep
from dysco.compiler.software import is_software
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._alloc import AllDrained, PortsExhausted
from dysco.runtime.core._events import Action, Mapping, Port, Send, Table
from dysco.runtime.core._fsm import SessionState, SubsessionState
from dysco.runtime.core._session import Direction, Role, Session, Subsession
from dysco.runtime.core._sessions import Sessions
from dysco.runtime.core._splice_translation import side
from dysco.runtime.core._types import FiveTuple, ip_int, ip_str


class Setup(Sessions):
    """Session setup: policy SYNs at the left end, Dysco SYNs and tagged SYNs further on."""

    def _policy_syn(self, now: int, f: pk.TcpFrame, policy_id: int, out: list[Action]) -> None:
        s0 = f.five_tuple
        sid = self.by_key.get((Table.OUT, s0))
        if sid is not None:
            self._resend(now, self.sessions[sid], f, out)
            return
        if not f.syn_only:
            self._drop(out, "policy_not_syn", None)
            return
        if is_software(policy_id):  # the NIC could not decide it
            if self.software is None:
                self._fail(out, "no_software_classifier", f"policy id {policy_id:#x}: classify in software")
                return
            found = self.software.classify_punt(Syn(s0.src, s0.dst, s0.sport, s0.dport), policy_id)
            if found is None:  # no policy holds: on untouched, as a bypass entry sends it
                out.append(Send(f.to_bytes(), Port.NET))
                return
            policy_id = found
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
                try:
                    choice = self.selector.pick(step.type, addrs, step.select, s0)
                except AllDrained as exc:  # refused: the host's SYN retries until one is back
                    self._fail(out, "all_instances_drained", f"{s0}: {exc}")
                    return
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
        out.append(Send(syn.to_bytes(), Port.NET, early=True))
        s.down.fsm.set(SubsessionState.OPEN)

    def _resend(self, now: int, s: Session, f: pk.TcpFrame, out: list[Action]) -> None:
        """A SYN of a session that exists: the host or middlebox retransmitted it."""
        self.metrics["syn.retransmitted"] += 1
        if s.fsm.state in (SessionState.SYN_SENT, SessionState.PENDING):
            # the host (or middlebox) still tries: the setup may take as long as its retries do
            self._set_deadline(s, now + self.config.setup_timeout)
        if s.down is not None and s.syn_out is not None:
            self._send_syn(now, s, f, out)

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
        if p.tag.type == wire.TagType.HMAC_SHA256:  # the left agent's own address, whatever a NAT made of it
            self.rc.msgs.learn_agent(d, auth.Stamp.unpack(p.tag.value).sender)
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
        # early: should the host answer before the entries are in, the NIC punts its SYN-ACK
        # (an expectation the packet-out leaves, where the NIC can) and the agent translates it
        out.append(Send(g.to_bytes(), Port.HOST, early=True))

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
