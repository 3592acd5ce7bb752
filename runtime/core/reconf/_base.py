"""What every phase of a reconfiguration shares: its state at one agent, the helpers over a
session's entries, and the narrow view of the agent it works for (:class:`AgentView`).

The phases themselves are mixins of :class:`Base`, one module each; their order is written
down once, in :class:`dysco.runtime.core.reconf.Reconfigurer`'s list of bases.  A phase that
hands over to another calls it through the methods declared abstract here, so no phase module
imports another.
"""

from __future__ import annotations

import abc
import enum
from collections import Counter
from dataclasses import dataclass, replace
from typing import Protocol

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._alloc import PortPool, Selector
from dysco.runtime.core._events import Action, Delete, Mapping, Modify, Port, Table
from dysco.runtime.core._fsm import Machine, SessionState, SubsessionState
from dysco.runtime.core._messenger import MS, Messenger, Pending
from dysco.runtime.core._neighbours import UNADDRESSED
from dysco.runtime.core._session import Config, Direction, Session, Subsession
from dysco.runtime.core._splice_translation import Spliced
from dysco.runtime.core._twopath import M32, Anchor
from dysco.runtime.core._types import FiveTuple
from dysco.runtime.core.reconf._migrate import Migrations

MAC = UNADDRESSED  # the MACs are filled in as the frame leaves (see _neighbours)
SECOND = 1000 * MS
SYN_TIMER = 1
"""Wake-up: retransmit the new-path SYN (or give the new path up)."""
LOCK_TIMER = 2
"""Wake-up: the right anchor's lock expires if the new path has not reached it."""
PROBE_TIMER = 3
"""Wake-up: probe the host again, or stop waiting for its answer."""
PROBE_RTO = 600 * MS
"""The first probe's timeout: Linux answers at most one SYN or out-of-window segment per
connection every 500 ms (``net.ipv4.tcp_invalid_ratelimit``), so a probe sent sooner is ignored."""
PROBE_ATTEMPTS = 3
"""Probes before an anchor whose host stays silent switches without knowing where its host's
data ends (SWITCH with status IDLE; docs/protocol.md §4)."""
LOCK_TIMEOUT = 30 * SECOND
"""How long a right anchor stays locked without the new path's SYN (docs/protocol.md §4): longer
than the left anchor takes to get its ackLock and give its SYN up."""


class LockState(enum.Enum):
    UNLOCKED = "unlocked"
    PENDING = "lock_pending"
    LOCKED = "locked"


@dataclass(slots=True)
class Lock:
    """The lock of a session's right subsession, kept by the agent on its left."""

    state: LockState
    rid: tuple[int, int]
    upstream: tuple[int, cw.Message] | None
    """Who asked (address, request) — None at the left anchor."""
    saved: tuple[int, cw.Message] | None = None


class AgentView(Protocol):
    """What a reconfiguration needs of the agent whose sessions it changes (the agent,
    :class:`dysco.runtime.core.Agent`, is one): its sessions and their indexes, its ports and
    counters, and the few operations on a session's entries it shares with session setup and
    teardown."""

    config: Config
    metrics: Counter[str]
    sessions: dict[int, Session]
    by_key: dict[tuple[Table, FiveTuple], int]
    drops: dict[tuple[Table, FiveTuple], Mapping]
    ports: PortPool
    selector: Selector
    _entries: dict[Table, int]

    def seal_syn(self, now: int, p: wire.SynPayload) -> bytes: ...

    def _install(self, s: Session, m: Mapping, direction: Direction, out: list[Action]) -> None: ...

    def _close(self, now: int, s: Session, why: str, out: list[Action]) -> None: ...

    def _teardown_seen(
        self, now: int, s: Session, direction: Direction, flags: int, out: list[Action]
    ) -> None: ...

    def _sub_fsm(self, s: Session, side: str) -> Machine[SubsessionState]: ...

    def _set_deadline(self, s: Session, at: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Delegated:
    """An edit this agent asked another agent to anchor."""

    sid: int
    left: int
    right: int
    hops: tuple[int, ...]


class Base(abc.ABC):
    """The reconfigurations at one agent: locks, anchors and what links them, and the helpers
    every phase uses."""

    def __init__(self, agent: AgentView) -> None:
        self.agent = agent
        self.me = agent.config.address
        self.locks: dict[int, Lock] = {}
        self.anchors: dict[int, Anchor] = {}
        self.awaiting: dict[FiveTuple, int] = {}
        """Right anchor: the left anchor's view of the session -> session id (new-path SYN)."""
        self.rids: dict[int, tuple[int, int]] = {}
        self.splices: dict[int, tuple[int, Spliced]] = {}
        """A spliced proxy's inbound session id -> its outbound session id and the translations:
        reconfiguration messages cross from the one to the other here."""
        self.delegated: dict[int, Delegated] = {}
        """Edits this agent asked another agent to anchor, by its rid for the request."""
        self.delegates: dict[int, tuple[int, int]] = {}
        """Edits this agent anchors for another: its rid -> (that agent, that agent's rid)."""
        self.held: dict[int, tuple[int, cw.Message]] = {}
        """Right anchor done, waiting for the TEARDOWN: a REQUEST_LOCK that came on the new path."""
        self.msgs = Messenger(self.me, agent.metrics)
        self.msgs.route = self._route
        self.msgs.onward = self._onward
        self.mig = Migrations(self)
        """State migration's middlebox side (the adapter sets ``mig.enabled`` when it has a hook)."""

    def _id(self) -> int:
        return self.msgs.new_id()

    def _request(self, now: int, dst: int, msg: cw.Message, sid: int, out: list[Action]) -> None:
        self.msgs.request(now, dst, msg, sid, out)

    def _answer(self, now: int, dst: int, msg: cw.Message, out: list[Action]) -> None:
        self.msgs.answer(now, dst, msg, out)

    def next_deadline(self) -> int | None:
        return self.msgs.next_deadline()

    def involved(self, sid: int) -> bool:
        """Whether session ``sid`` is locked or anchored by a reconfiguration here."""
        return sid in self.locks or sid in self.anchors

    def _unlocked(self, now: int, s: Session) -> None:
        """A middle's lock ended without a TEARDOWN: a session a RST closed while it held
        (:meth:`middle_locked`) lingers from now, as after any RST."""
        if s.reset and s.fsm.state is SessionState.CLOSING:
            self.agent._set_deadline(s, now + self.agent.config.linger)

    def middle_locked(self, sid: int) -> bool:
        """Whether session ``sid`` (or the other half of its splice) is locked here by a
        reconfiguration this agent does not anchor: the old path through it ends with that
        reconfiguration's TEARDOWN or CANCEL_LOCK."""
        sids = {sid} | {a for a, (b, _) in self.splices.items() if b == sid}
        if sid in self.splices:
            sids.add(self.splices[sid][0])
        return any(x in self.locks and x not in self.anchors for x in sids)

    def empty(self) -> bool:
        busy = (
            self.locks or self.anchors or self.awaiting or self.rids or self.held or self.splices
            or self.delegated or self.delegates
        )  # fmt: skip
        return not busy and self.msgs.empty() and self.mig.empty()

    def _left_view(self, s: Session) -> FiveTuple:
        return s.emitted if s.emitted is not None else s.session

    def _anchor(self, s: Session, left: bool, peer: int) -> Anchor:
        sub = s.down if left else s.up
        assert sub is not None
        in_key = sub.tuple.reversed() if left else sub.tuple
        old_in, _ = s.mappings[(Table.IN, in_key)]
        # the host's (or middlebox application's) packets toward this side; a middle agent has two
        out_target = sub.tuple if left else sub.tuple.reversed()
        out_key = next(
            k for (t, k), (m, _) in s.mappings.items() if t is Table.OUT and m.target == out_target
        )
        old_out, _ = s.mappings[(Table.OUT, out_key)]
        assert old_in.target is not None and old_out.target is not None
        return Anchor(left, peer, out_key, old_out.target, old_in.target, in_key, old_in.seq_delta)

    def _punt(self, s: Session, a: Anchor, out: list[Action]) -> None:
        for table, key in ((Table.OUT, a.out_key), (Table.IN, a.old_in_key)):
            _m, d = s.mappings[(table, key)]
            m2 = Mapping(table, key, None, s.sid)
            s.mappings[(table, key)] = (m2, d)
            out.append(Modify(m2))

    def _fast(self, s: Session, a: Anchor, new: bool, out: list[Action]) -> None:
        """The session's entries back to the fast path: on the new path (with its deltas) or the old."""
        target = a.new_target if new else a.old_target
        delta = a.new_delta if new else a.old_delta
        ecr = -a.new_ts & M32 if new else 0
        assert target is not None
        for table, key, m in (
            (Table.OUT, a.out_key, Mapping(Table.OUT, a.out_key, target, s.sid, 0, delta, ts_ecr_delta=ecr)),
            (Table.IN, a.old_in_key, Mapping(Table.IN, a.old_in_key, a.in_target, s.sid, a.old_delta, 0)),
        ):
            if (table, key) in s.mappings:
                s.mappings[(table, key)] = (m, s.mappings[(table, key)][1])
                out.append(Modify(m))
        if a.new_in_key is not None and (Table.IN, a.new_in_key) in s.mappings:
            m = Mapping(Table.IN, a.new_in_key, a.in_target, s.sid, a.new_delta, 0, a.new_ts, 0, a.new_ws)
            s.mappings[(Table.IN, a.new_in_key)] = (m, s.mappings[(Table.IN, a.new_in_key)][1])
            out.append(Modify(m))

    def _route(self, sid: int, peer: int) -> FiveTuple | None:
        """An anchor's old-path subsession toward the other anchor ``peer``, in the direction of
        travel: SWITCH and DONE go in band along the old path (docs/protocol.md §4a)."""
        a = self.anchors.get(sid)
        if a is None or a.peer != peer or sid not in self.agent.sessions:
            return None
        return a.old_in_key.reversed()

    def _onward(self, arrived: FiveTuple, leftward: bool) -> FiveTuple | None:
        """An anchor's message that arrived on ``arrived`` goes on by this agent's subsession on
        the other side of the session (a spliced proxy's other session's)."""
        if not leftward:
            s = self._session_by_up(arrived)
            down = self._down(s) if s is not None else None
            return down.tuple if down is not None else None
        s = self._session_by_down(arrived.reversed())
        if s is not None and s.up is None:  # a spliced proxy's outbound session: its inbound one
            inbound = next((i for i, (o, _t) in self.splices.items() if o == s.sid), None)
            s = self.agent.sessions.get(inbound) if inbound is not None else None
        return s.up.tuple.reversed() if s is not None and s.up is not None else None

    def _session_by_up(self, sub: FiveTuple) -> Session | None:
        sid = self.agent.by_key.get((Table.IN, sub))
        return self.agent.sessions.get(sid) if sid is not None else None

    def _session_by_down(self, sub: FiveTuple) -> Session | None:
        sid = self.agent.by_key.get((Table.IN, sub.reversed()))
        return self.agent.sessions.get(sid) if sid is not None else None

    def _session_named(self, session: FiveTuple) -> Session | None:
        """The session with this five-tuple here: a middle or right agent's reverse entry is
        keyed by it reversed, the left end's forward entry by it."""
        for key in ((Table.OUT, session.reversed()), (Table.OUT, session)):
            sid = self.agent.by_key.get(key)
            if sid is not None:
                s = self.agent.sessions[sid]
                if s.session == session:
                    return s
        return None

    def _around(self, kind: cw.Kind, s: Session, a: Anchor, **kw: object) -> cw.Message:
        """A message of the left anchor ``a`` of a reconfiguration around a dead hop, straight to
        the right anchor: ``sub`` names the dead hop, ``left_session`` the session."""
        return cw.Message(
            kind, self._id(), a.extra["rid"], self.me, a.peer, cw.around(a.extra["failed"], a.peer),
            self._left_view(s), value=cw.FAILED, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def _reply(
        self, now: int, src: int, req: cw.Message, kind: cw.Kind, out: list[Action], **kw: object
    ) -> None:
        self._answer(now, src, replace(req, kind=kind, **kw), out)  # type: ignore[arg-type]

    def _nack(self, now: int, src: int, msg: cw.Message, status: cw.Status, out: list[Action]) -> None:
        self.agent.metrics["reconf.nacked"] += 1
        self._reply(now, src, msg, cw.Kind.NACK_LOCK, out, status=status)

    def _down(self, s: Session) -> Subsession | None:
        """The subsession to the right of ``s`` at this agent: a spliced proxy's outbound one."""
        if s.down is not None or s.sid not in self.splices:
            return s.down
        s2 = self.agent.sessions.get(self.splices[s.sid][0])
        return s2.down if s2 is not None else None

    def _drop_mapping(self, s: Session, table: Table, key: FiveTuple, out: list[Action]) -> None:
        entry = s.mappings.pop((table, key), None)
        if entry is not None:
            out.append(Delete(entry[0]))
            self.agent._entries[table] -= 1
            self.agent.by_key.pop((table, key), None)

    def _forget(self, sid: int) -> None:
        a = self.anchors.pop(sid, None)
        self.locks.pop(sid, None)
        if a is not None:
            self.rids.pop(a.extra.get("rid", -1), None)
        for view in [v for v, i in self.awaiting.items() if i == sid]:
            del self.awaiting[view]
        self.msgs.forget(sid)

    # ---- what state migration's middlebox side asks (reconf._migrate.Reconfigurations) ---------

    @property
    def metrics(self) -> Counter[str]:
        return self.agent.metrics

    def lock_rid(self, sid: int) -> tuple[int, int] | None:
        """The reconfiguration that holds session ``sid``'s lock here, if any."""
        lock = self.locks.get(sid)
        return lock.rid if lock is not None else None

    def spliced(self, sid: int) -> bool:
        """Whether session ``sid`` is a proxy's inbound session being spliced here."""
        return sid in self.splices

    # ---- hand-overs between phases: each defined by the phase named ------------------------------

    @abc.abstractmethod
    def start(
        self,
        now: int,
        s: Session,
        right: int,
        hops: tuple[int, ...],
        out: list[Action],
        failed: int = 0,
        *,
        failover: bool = False,
        rid: int = 0,
    ) -> int:
        """Lock (phase 1): this agent, left anchor, starts a reconfiguration (around the dead
        hop ``failed``, if not 0; around its right neighbour if that never answers, with
        ``failover``; as reconfiguration ``rid``, if not 0)."""

    @abc.abstractmethod
    def _not_around(self, s: Session, right: int, dead: int) -> str:
        """Failover: why this agent cannot anchor a reconfiguration around ``dead`` ('': it can)."""

    @abc.abstractmethod
    def _refused_why(self, s: Session, msg: cw.Message) -> str:
        """Failover: the left anchor's reason for giving up after a NACK_LOCK."""

    @abc.abstractmethod
    def failover_packet(
        self, now: int, s: Session, a: Anchor, f: pk.TcpFrame, port: Port, out: list[Action]
    ) -> bool:
        """Failover: a punted packet of a session failed over at this anchor."""

    @abc.abstractmethod
    def _failover_expired(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Failover: the right anchor failed over and no TEARDOWN came."""

    @abc.abstractmethod
    def _go_around(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Failover: the right neighbour never answered the left anchor's REQUEST_LOCK."""

    @abc.abstractmethod
    def _lock_around(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        """Failover: a REQUEST_LOCK with FAILED reached this agent, the right anchor."""

    @abc.abstractmethod
    def _fail_over(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Failover: the new path around a dead hop is up at this anchor; everything takes it."""

    @abc.abstractmethod
    def _around_done(self, now: int, p: Pending, out: list[Action]) -> None:
        """Failover: the left anchor's TEARDOWN to the right anchor was answered (or given up)."""

    @abc.abstractmethod
    def _complete_left(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Completion (phase 5): the left anchor moves the session onto the new path for good."""

    @abc.abstractmethod
    def _delegate_ended(self, now: int, rid: int, ok: bool, out: list[Action]) -> None:
        """Delegation: a reconfiguration this agent anchored ended (tell whoever asked for it)."""

    @abc.abstractmethod
    def _delegations_closed(self, s: Session, out: list[Action]) -> None:
        """Delegation: session ``s`` closed here (edits asked for it end)."""

    @abc.abstractmethod
    def _request_lock(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        """Lock (phase 1): a REQUEST_LOCK reached this agent."""

    @abc.abstractmethod
    def _new_path(self, now: int, s: Session, msg: cw.Message, out: list[Action]) -> None:
        """New path (phase 2): the left anchor's lock was acked; set the new path up."""

    @abc.abstractmethod
    def _synack(self, now: int, s: Session, a: Anchor, f: pk.TcpFrame, out: list[Action]) -> None:
        """New path (phase 2): the new path's SYN-ACK reached the left anchor."""

    @abc.abstractmethod
    def _export(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """State export (phase 3): the old middlebox's state moves to the new one."""

    @abc.abstractmethod
    def _switch(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Two paths (phase 4): this anchor switches to the new path."""

    @abc.abstractmethod
    def _check(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Completion (phase 5): is this anchor's old path drained?"""

    @abc.abstractmethod
    def _complete_right(self, now: int, s: Session, a: Anchor, out: list[Action]) -> None:
        """Completion (phase 5): the right anchor's end of a completed reconfiguration."""

    @abc.abstractmethod
    def _cancel_down(self, now: int, s: Session, msg: cw.Message, out: list[Action]) -> None:
        """Release: pass a CANCEL_LOCK or TEARDOWN on to the right."""

    @abc.abstractmethod
    def _replay_held(self, now: int, s: Session, out: list[Action]) -> None:
        """Release: act on the REQUEST_LOCK that waited for this agent's part to end."""

    @abc.abstractmethod
    def _abandon(self, now: int, s: Session, why: str, out: list[Action], cancel: bool) -> None:
        """Release: the left anchor gives up; the session stays on the old path."""

    @abc.abstractmethod
    def right_request(
        self, now: int, s: Session, right: int, hops: tuple[int, ...], out: list[Action]
    ) -> bool:
        """rightRequest: ask the agent on the left to start a reconfiguration."""

    @abc.abstractmethod
    def _splice_failed(self, s: Session | None, why: str, out: list[Action]) -> None:
        """Splice: the reconfiguration that was to remove this proxy did not happen."""

    @abc.abstractmethod
    def _spliced_away(self, now: int, s1: Session, out: list[Action]) -> None:
        """Splice: the old path through this proxy is torn down."""
