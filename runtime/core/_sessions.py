"""The agent's sessions and how they end: the first layer of :class:`dysco.runtime.core.Agent`.

:class:`Sessions` holds what the agent keeps (its sessions and their indexes by NIC entry, tag and
pending five-tuple; the entries it installed per table; ports, middlebox instances, deadlines;
the reconfigurations, :mod:`.reconf`, which see it through
:class:`~dysco.runtime.core.reconf.AgentView`), the helpers that change it (a new session, an
entry installed, a deadline set, a SYN failed closed) and the end of a session: a FIN or RST
seen per direction, the wait for the FINs' acknowledgments, and :meth:`Sessions._close`, which
frees everything a session held.  Session setup is the next layer (:mod:`._setup`), the events
the last (:mod:`._agent`).
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from dysco.compiler.passes import Chain
from dysco.compiler.software import SoftwareClassifier
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _note as note
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._alloc import PortPool, Selector
from dysco.runtime.core._events import (
    Action,
    Delete,
    Install,
    Mapping,
    Modify,
    Notify,
    Port,
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
from dysco.runtime.core._neighbours import Neighbours
from dysco.runtime.core._peers import Peers
from dysco.runtime.core._session import Config, Direction, Role, Session
from dysco.runtime.core._types import FiveTuple, ip_str, prefixed
from dysco.runtime.core.reconf import LOCK_TIMEOUT, Reconfigurer

RST_HOLD = LOCK_TIMEOUT
"""How long a middle of a reconfiguration keeps a session a RST closed, waiting for the lock's end."""


class Sessions:
    """What the agent keeps, the helpers that change it, and the end of a session."""

    def __init__(
        self, config: Config, chains: Iterable[Chain] = (), software: SoftwareClassifier | None = None
    ) -> None:
        self.config = config
        self.software = software
        """Classifies the SYNs a "software" classifier entry punts (None: they fail closed)."""
        self.log = prefixed("dysco.runtime.core", config.name, "core")
        self.chains: dict[int, Chain] = {c.id: c for c in chains}
        self.sessions: dict[int, Session] = {}
        self.by_key: dict[tuple[Table, FiveTuple], int] = {}
        self.by_tag: dict[int, int] = {}
        self.pending: dict[FiveTuple, int] = {}
        self.ports = PortPool(config.port_low, config.port_high)
        self.selector = Selector()
        self.neighbours = Neighbours()
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
        if new is SessionState.CLOSING and s.reset and self.rc.middle_locked(s.sid):
            # a middle of a reconfiguration: a RST on the old path may be a kernel's answer to a
            # straggler there, sent after the left anchor freed its end (the anchors take the
            # session's own end on the new path); the TEARDOWN or CANCEL_LOCK still to come ends
            # the old path here, so the session waits for it rather than for the linger
            self.metrics["reconf.middle_rst_held"] += 1
            self._set_deadline(s, now + RST_HOLD)
        elif new is SessionState.CLOSING:
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

    def _noted(self, a: Install | Modify, notes: dict[int, bytes]) -> Install | Modify:
        """``a`` with its session's note (:mod:`._note`), as the session is at the end of this
        event (the same bytes on every entry of the session)."""
        sid = a.mapping.session_id
        if sid not in notes:
            s = self.sessions.get(sid)
            notes[sid] = note.encode(s) if s is not None else b""
        return type(a)(replace(a.mapping, note=notes[sid]))

    def _finish(self, out: list[Action]) -> list[Action]:
        notes: dict[int, bytes] = {}
        for i, a in enumerate(out):
            if isinstance(a, Install | Modify):
                out[i] = self._noted(a, notes)
            elif isinstance(a, Send) and a.port is Port.NET:
                framed = self.neighbours.address(a.frame)
                if framed is not a.frame:
                    out[i] = replace(a, frame=framed)
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
