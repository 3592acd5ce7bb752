"""State migration when a reconfiguration replaces a stateful middlebox (paper §3.4, docs/architecture.md).

A middlebox whose application keeps per-session state (a stateful firewall's connection tracking,
say) declares a *state hook* to its agent (:class:`StateHook`; ``dysco agent --state-hook``).  When
a reconfiguration replaces that middlebox, and it alone, by one new middlebox, its state for the
session moves to the new one before either anchor sends anything on the new path:

1. the old middlebox's agent marks the REQUEST_LOCK on its way to the right anchor (``value``
   bit MIGRATE); the right anchor echoes it in its ACK_LOCK, and both anchors know;
2. the new path is set up as usual, but neither anchor switches to it: everything keeps taking
   the old path (the hosts' data is neither stalled nor buffered);
3. the left anchor, once the new path's SYN-ACK came, sends STATE_EXPORT (``value`` EXPORT) to the
   old middlebox's agent; that agent runs its hook's export, sends the state bytes in a
   STATE_EXPORT (``value`` TRANSFER) to the new middlebox's agent, which runs its hook's import and
   answers STATE_IMPORTED; the old one answers the left anchor with that outcome;
4. on success the left anchor switches and sends its SWITCH, and the right anchor switches when
   that SWITCH arrives; on any failure (no hook at the new middlebox, the hook failed, nobody
   answered) the left anchor cancels the reconfiguration (CANCEL_LOCK) and the session goes on
   over the old path.

The agent's core stays sans-IO: a hook does I/O, so the core only *asks* for it.  It queues
:class:`~dysco.runtime.core._statehook.HookCall` objects (:meth:`Migrations.take`); the adapter
runs each with :func:`~dysco.runtime.core._statehook.run_hook` off its event loop and hands the
outcome back through :meth:`dysco.runtime.core.Agent.hook_done`, which returns actions like every
other event.  This module is the middlebox side; the anchors' side is phase 3 of a
reconfiguration, :mod:`._export`.  State the old middlebox changes after its export (the old path still
carries the session meanwhile) is not carried over; for connection tracking (the reference
hook, :mod:`dysco.runtime._conntrack`) that loses nothing, see docs/operations.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core._events import Action, Notify
from dysco.runtime.core._session import Session
from dysco.runtime.core._statehook import HookCall, HookOp, View
from dysco.runtime.core._types import FiveTuple, ip_str

MAX_REASON = 200
"""Bytes of a failure's text a STATE_IMPORTED carries."""


class Reconfigurations(Protocol):
    """What the middlebox side of a migration needs of the reconfigurations at its agent
    (:class:`dysco.runtime.core.reconf.Reconfigurer` is one): who this agent is, its counters,
    the lock and splice of a session, and its control messaging."""

    me: int

    @property
    def metrics(self) -> Counter[str]: ...

    def lock_rid(self, sid: int) -> tuple[int, int] | None: ...

    def spliced(self, sid: int) -> bool: ...

    def _session_by_up(self, sub: FiveTuple) -> Session | None: ...

    def _id(self) -> int: ...

    def _request(self, now: int, dst: int, msg: cw.Message, sid: int, out: list[Action]) -> None: ...

    def _reply(
        self, now: int, src: int, req: cw.Message, kind: cw.Kind, out: list[Action], **kw: object
    ) -> None: ...


@dataclass(slots=True)
class _Job:
    call: HookCall
    src: int
    """Whom to answer: the left anchor (an export) or the old middlebox (an import)."""
    req: cw.Message


@dataclass(slots=True)
class Migrations:
    """The middlebox side of state migration at one agent (the anchors' side is in
    :mod:`._export`): exports, transfers and imports in progress."""

    rc: Reconfigurations
    enabled: bool = False
    """The adapter has a state hook for this host's middlebox application."""
    calls: list[HookCall] = field(default_factory=list)
    jobs: dict[int, _Job] = field(default_factory=dict)
    relays: dict[int, tuple[int, cw.Message]] = field(default_factory=dict)
    """An old middlebox's TRANSFER (by msg_id) -> the left anchor's EXPORT request it answers."""
    _next: int = 0

    def take(self) -> list[HookCall]:
        """The hook calls the adapter has to run (each once)."""
        calls, self.calls = self.calls, []
        return calls

    def empty(self) -> bool:
        return not (self.calls or self.jobs or self.relays)

    @property
    def _metrics(self) -> Counter[str]:
        return self.rc.metrics

    def marks(self, s: Session, msg: cw.Message, right: int) -> bool:
        """A REQUEST_LOCK this agent forwards to ``right``: is this middlebox the only one of the
        segment, replaced by one other, and stateful?"""
        return (
            self.enabled
            and len(msg.hops) == 1
            and msg.hops[0] != self.rc.me
            and right == msg.right_anchor
            and s.up is not None
            and s.up.tuple.src == msg.left_anchor
            and not self.rc.spliced(s.sid)
        )

    def _call(self, op: HookOp, s: Session, src: int, req: cw.Message, state: bytes = b"") -> None:
        self._next = self._next % 0xFFFFFFFF + 1
        emitted = s.emitted if s.emitted is not None else s.session
        call = HookCall(self._next, op, View(s.session, emitted.reversed()), state)
        self.jobs[call.id] = _Job(call, src, req)
        self.calls.append(call)
        self._metrics[f"migrate.hook_{op.value}s"] += 1

    def _fail(
        self, now: int, src: int, req: cw.Message, status: cw.Status, why: str, out: list[Action]
    ) -> None:
        self._metrics[f"migrate.refused.{status.name.lower()}"] += 1
        text = why.encode("utf-8", "replace")[:MAX_REASON]
        self.rc._reply(now, src, req, cw.Kind.STATE_IMPORTED, out, status=status, state=text)

    # ---- requests ---------------------------------------------------------------------------------

    def request(self, now: int, src: int, msg: cw.Message, out: list[Action]) -> None:
        """A STATE_EXPORT for this agent: export (old middlebox) or import (new middlebox)."""
        s = self.rc._session_by_up(msg.sub)
        if s is None or msg.sub.dst != self.rc.me:
            return self._fail(now, src, msg, cw.Status.NO_SESSION, f"no session {msg.sub} here", out)
        if msg.value == cw.EXPORT:
            rid = self.rc.lock_rid(s.sid)
            if src != msg.sub.src or src != msg.left_anchor or len(msg.hops) != 1:
                return self._fail(now, src, msg, cw.Status.NOT_ON_PATH, "not from the left anchor", out)
            if rid != (msg.left_anchor, msg.rid):
                return self._fail(
                    now, src, msg, cw.Status.BUSY, f"the segment is not locked for rid {msg.rid}", out
                )
            if not self.enabled:
                return self._fail(
                    now, src, msg, cw.Status.NO_HOOK, f"{ip_str(self.rc.me)} has no state hook", out
                )
            self._call(HookOp.EXPORT, s, src, msg)
        elif msg.value == cw.TRANSFER:
            if msg.sub.src != msg.left_anchor or s.emitted is None:
                return self._fail(
                    now, src, msg, cw.Status.NOT_ON_PATH, f"{msg.sub} is not a new path here", out
                )
            if not self.enabled:
                return self._fail(
                    now, src, msg, cw.Status.NO_HOOK, f"{ip_str(self.rc.me)} has no state hook", out
                )
            self._call(HookOp.IMPORT, s, src, msg, msg.state)
        else:
            self._fail(now, src, msg, cw.Status.HOOK_FAILED, f"STATE_EXPORT value {msg.value} unknown", out)
        return None

    def done(self, now: int, call_id: int, state: bytes, error: str, out: list[Action]) -> None:
        """The adapter ran hook call ``call_id``."""
        job = self.jobs.pop(call_id, None)
        if job is None:
            self._metrics["migrate.unknown_call"] += 1
            return
        op = job.call.op.value
        if error:
            self._metrics[f"migrate.hook_failed.{op}"] += 1
            out.append(Notify(f"state_{op}_failed", f"{job.call.view}: {error}", 0, True))
            return self._fail(now, job.src, job.req, cw.Status.HOOK_FAILED, error, out)
        if job.call.op is HookOp.IMPORT:
            self._metrics["migrate.imported"] += 1
            out.append(Notify("state_imported", f"{job.call.view}: {job.req.state.hex()[:64]}", 0))
            self.rc._reply(now, job.src, job.req, cw.Kind.STATE_IMPORTED, out)
            return None
        self._metrics["migrate.exported"] += 1
        out.append(
            Notify("state_exported", f"{job.call.view}: {len(state)} bytes to {ip_str(job.req.hops[0])}", 0)
        )
        msg_id = self.rc._id()
        transfer = cw.Message(
            cw.Kind.STATE_EXPORT, msg_id, job.req.rid, job.req.left_anchor, job.req.right_anchor,
            job.req.left_session, value=cw.TRANSFER, state=state,
        )  # fmt: skip
        self.relays[msg_id] = (job.src, job.req)
        self.rc._request(now, job.req.hops[0], transfer, 0, out)
        return None

    # ---- answers ------------------------------------------------------------------------------------

    def relayed(self, now: int, msg_id: int, answer: cw.Message | None, out: list[Action]) -> None:
        """The new middlebox answered this agent's TRANSFER (None: it never did)."""
        relay = self.relays.pop(msg_id, None)
        if relay is None:
            return
        src, req = relay
        if answer is None:
            why = f"the new middlebox {ip_str(req.hops[0])} did not answer"
            return self._fail(now, src, req, cw.Status.HOOK_FAILED, why, out)
        self.rc._reply(now, src, req, cw.Kind.STATE_IMPORTED, out, status=answer.status, state=answer.state)
        return None
