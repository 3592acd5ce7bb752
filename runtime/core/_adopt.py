"""Adoption: an agent that starts while its NIC already runs its pipeline rebuilds the sessions
the NIC's entries describe, and removes the entries it cannot use.

The adapter reads both session tables back and hands every entry to :func:`adopt` as a
:class:`~dysco.runtime.core._events.Mapping` (its ``note``: the entry's metadata).  Entries are
grouped by session id; a group becomes a session again when

* every entry carries the same note (:mod:`._note`: role, the session's five-tuple, chain,
  instances, MACs) and translates in the fast path (``rewrite``: a session set up, not one in
  its setup, its two-path phase or its closing watch, whose entries punt);
* the entries are the ones the role has, consistently: the left end's host-side entry and its
  right subsession's, a right end's left subsession's and its host-side one, a middle's four;
* the session id, the entries and the subsession's local port are not the core's already, and
  the tables have room.

The rebuilt session is ESTABLISHED with its subsessions OPEN, its deltas from the entries (the
``seq_delta`` of its inbound entries), its port held, its instances counted.  What no entry
says is lost: a FIN seen in one direction before the restart (the session is rebuilt as
established; after its other FIN it ends when its entries idle out), the handshakes a splice
needs, a reconfiguration in progress.  Every entry of a group that fails is deleted and counted
(``entries.orphans_removed``, ``adopt.refused.WHY`` per session); so are entries without a
session id (a spliced proxy's drop entries).  Entries the core holds already are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as ReadOnly
from dataclasses import replace

from dysco.runtime.core import _note as note
from dysco.runtime.core._events import Action, Delete, Mapping, Notify, Table
from dysco.runtime.core._fsm import SESSION_TRANSITIONS, Machine, SessionState, SubsessionState
from dysco.runtime.core._messenger import MS
from dysco.runtime.core._session import Direction, Role, Session, Subsession
from dysco.runtime.core._sessions import Sessions
from dysco.runtime.core._types import FiveTuple

_SHAPES: ReadOnly[Role, frozenset[tuple[Table, Direction]]] = {
    # the entries (table, direction) each role has, one of each
    Role.LEFT: frozenset({(Table.OUT, Direction.FWD), (Table.IN, Direction.REV)}),
    Role.RIGHT: frozenset({(Table.IN, Direction.FWD), (Table.OUT, Direction.REV)}),
    Role.MIDDLE: frozenset(
        {
            (Table.IN, Direction.FWD),
            (Table.OUT, Direction.REV),
            (Table.OUT, Direction.FWD),
            (Table.IN, Direction.REV),
        }
    ),
}


class Refused(Exception):
    """A group of entries that does not make a session: why, as a metric's last word."""


def adopt(agent: Sessions, now: int, found: Iterable[Mapping]) -> list[Action]:
    """Rebuild the sessions ``found`` (every entry of the NIC's session tables) describe; delete
    the rest.  Notifies ``sessions_adopted`` with the counts."""
    out: list[Action] = []
    groups: dict[int, list[Mapping]] = {}
    removed = adopted = 0
    for m in found:
        if (m.table, m.key) in agent.by_key or (m.table, m.key) in agent.drops:
            continue  # the core's own
        if m.session_id == 0 or m.drop:
            out.append(Delete(m))
            removed += 1
            agent.metrics["adopt.refused.no_session"] += 1
            continue
        groups.setdefault(m.session_id, []).append(m)
    for sid, maps in sorted(groups.items()):
        try:
            s = _rebuild(agent, now, sid, maps)
        except Refused as why:
            agent.metrics[f"adopt.refused.{why}"] += 1
            agent.log.debug("session %d: %d entries not adopted (%s)", sid, len(maps), why)
            out.extend(Delete(m) for m in maps)
            removed += len(maps)
            continue
        _register(agent, s, maps)
        adopted += 1
    # a predecessor's control message ids may still be cached by its peers (answers are kept
    # for a while per sender and id): this agent's ids start elsewhere
    agent.rc.msgs.start_ids_at(agent.wall(now) // MS)
    agent.metrics["sessions.adopted"] += adopted
    agent.metrics["entries.orphans_removed"] += removed
    message = f"{adopted} sessions rebuilt from the NIC's entries, {removed} entries removed"
    out.append(Notify("sessions_adopted", message))
    return agent._finish(out)


def _direction(m: Mapping, session: FiveTuple) -> Direction:
    if m.table is Table.IN:  # toward the host: from the left subsession it is the session itself
        return Direction.FWD if m.target == session else Direction.REV
    return Direction.REV if m.key == session.reversed() else Direction.FWD


def _rebuild(agent: Sessions, now: int, sid: int, maps: list[Mapping]) -> Session:
    notes = {m.note for m in maps}
    if len(notes) != 1:
        raise Refused("notes_differ")
    n = note.decode(notes.pop())
    if n is None:
        raise Refused("no_note")
    if any(m.target is None or m.punt for m in maps):
        raise Refused("not_established")
    if sid in agent.sessions:
        raise Refused("sid_taken")
    kinds: dict[tuple[Table, Direction], Mapping] = {}
    for m in maps:
        kinds[(m.table, _direction(m, n.session))] = m
    if len(kinds) != len(maps) or set(kinds) != _SHAPES[n.role]:
        raise Refused("shape")
    fsm = Machine(f"session {sid}", SessionState.ESTABLISHED, SESSION_TRANSITIONS, agent.log)
    s = Session(sid, n.role, n.session, fsm, now, n.chain, instances=n.instances, macs=n.macs)
    s.active = now
    if n.role is not Role.LEFT:
        up_in, up_out = kinds[(Table.IN, Direction.FWD)], kinds[(Table.OUT, Direction.REV)]
        if up_out.target != up_in.key.reversed() or up_in.key.dst != agent.config.address:
            raise Refused("inconsistent")
        s.up = Subsession(up_in.key, agent._sub_fsm(s, "up"))
        s.delta_up = up_in.seq_delta
    if n.role is not Role.RIGHT:
        down_out, down_in = kinds[(Table.OUT, Direction.FWD)], kinds[(Table.IN, Direction.REV)]
        d = down_out.target
        assert d is not None
        left_side = n.session if n.role is Role.LEFT else down_out.key
        if (
            d.src != agent.config.address
            or down_in.key != d.reversed()
            or down_in.target != left_side.reversed()
            or (n.role is Role.LEFT and down_out.key != n.session)
        ):
            raise Refused("inconsistent")
        s.down = Subsession(d, agent._sub_fsm(s, "down"), d.sport)
        s.delta_down = down_in.seq_delta
        if n.role is Role.MIDDLE:
            s.emitted = down_out.key
    if not agent._room():
        raise Refused("table_full")
    if s.down is not None and not agent.ports.reserve(s.down.tuple.dst, s.down.tuple.sport):
        raise Refused("port_taken")
    for sub in (s.up, s.down):
        if sub is not None:
            sub.fsm.set(SubsessionState.OPEN)
    for (table, direction), m in kinds.items():
        s.mappings[(table, m.key)] = (replace(m, note=b""), direction)
    return s


def _register(agent: Sessions, s: Session, maps: list[Mapping]) -> None:
    agent.sessions[s.sid] = s
    for table, key in s.mappings:
        agent.by_key[(table, key)] = s.sid
        agent._entries[table] += 1
    for a in s.instances:
        agent.selector.acquire(a)
    agent.metrics["sessions.created"] += 1
    agent.log.debug("session %d %s adopted: %s (%d entries)", s.sid, s.role.value, s.session, len(maps))
