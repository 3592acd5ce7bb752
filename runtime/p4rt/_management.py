"""Management requests to an agent on a P4Runtime target (``dysco ctl``, through
:mod:`dysco.runtime._mgmt`): the sessions, the event log, and the two requests that change
something, ``reconfigure`` and ``splice``.

A request that changes something is an event on the intake's first lane (the core sees it in
order with every punt but new-session SYNs); the request waits for the core's outcome
notification, which the service hands to :meth:`Management._outcome` or
:meth:`Management._splice_outcome` after the batch that raised it, or for its timeout.
:class:`Management` is the base of :class:`~dysco.runtime.p4rt._service.AgentService`, which
owns the core, the intake and the event log it reads.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import ipaddress
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dysco.errors import UserError
from dysco.runtime._mgmt import Args
from dysco.runtime._splicecall import parse_request
from dysco.runtime.core import Agent
from dysco.runtime.core._events import Action, Notify
from dysco.runtime.core._types import ip_int, ip_str
from dysco.runtime.p4rt._intake import Intake

RECONFIGURE_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 600.0
EVENTS_PER_ANSWER = 10000

Event = Callable[[int], list[Action]]
"""What the worker feeds to the core: a call that takes ``now`` and returns the core's actions."""
_RID = re.compile(r"\brid (\d+)\b")


@dataclass(slots=True)
class _Pending:
    """A reconfiguration a management request started and waits for."""

    sid: int
    chain: tuple[int, ...]
    """The session's chain after it succeeds."""
    done: asyncio.Future[Notify]
    rid: int | None = None
    started: int = 0


@dataclass(slots=True)
class _Splice:
    """A splice a management request started and waits for (keyed by the inbound session)."""

    done: asyncio.Future[Notify]
    started: int
    sid: int = 0
    notes: list[str] = field(default_factory=list)
    """Warnings and progress the core reported on the way."""


SPLICE_FAILED = ("right_request_refused", "right_request_failed")


class Management(abc.ABC):
    """The management requests of :class:`~dysco.runtime.p4rt._service.AgentService`, and what
    they keep: the reconfigurations and splices they wait for, the sessions' chains."""

    agent: Agent
    counters: collections.Counter[str]
    event_log: collections.deque[dict[str, object]]
    event_seq: int
    intake: Intake[tuple[Event, int]]

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._splices: list[_Splice] = []
        self._chains: dict[int, tuple[int, ...]] = {}
        """Sessions' chains as reconfigurations through this service left them (the core keeps the
        chain of the session's setup)."""

    @abc.abstractmethod
    def now(self) -> int:
        """The service's clock (ns)."""

    def sessions(self) -> list[dict[str, object]]:
        rows = self.agent.session_list(self.now())
        live = {row["id"] for row in rows}
        for sid in [sid for sid in self._chains if sid not in live]:
            del self._chains[sid]
        for row in rows:
            chain = self._chains.get(row["id"])  # type: ignore[call-overload]
            if chain is not None:
                row["chain"] = [ip_str(a) for a in chain]
        return rows

    def events(self, args: Args) -> dict[str, object]:
        """Management ``events``: the logged notifications after ``since`` (a ``seq``; 0, the
        default, for all that are kept), at most ``limit`` of them, oldest first.  Each is
        ``seq``, ``t_ns`` (CLOCK_MONOTONIC), ``event``, ``session`` (the core's id, 0 for none),
        ``message`` and ``error``.  The answer also has ``next`` (the ``since`` of the next
        request), ``last`` (the latest ``seq``), ``missed`` (events after ``since`` that the
        bounded log dropped before they were read) and ``now_ns``."""
        since = _count(args.get("since", 0), "since")
        limit = _count(args.get("limit", EVENTS_PER_ANSWER), "limit", 1, EVENTS_PER_ANSWER)
        if since > self.event_seq:
            raise UserError(
                f"since {since} is after the latest event {self.event_seq} (did the agent restart?)"
            )
        self.counters["mgmt.events"] += 1
        first = self.event_seq - len(self.event_log) + 1  # the oldest kept
        skip = max(0, since + 1 - first)
        rows = list(itertools.islice(self.event_log, skip, skip + limit))
        return {
            "events": rows,
            "next": rows[-1]["seq"] if rows else max(since, first - 1),
            "last": self.event_seq,
            "missed": max(0, first - 1 - since),
            "now_ns": time.monotonic_ns(),
        }

    async def reconfigure(self, args: Args) -> dict[str, object]:
        """Management ``reconfigure``: ``session`` (id, or five-tuple text as ``sessions`` shows
        it), ``right`` (the right anchor's address), ``hops`` (the new middleboxes in between,
        maybe none), ``left`` (the left anchor: this agent by default, else an agent of the session
        to its right, which is asked to anchor the edit), ``failed`` (optional: the one hop
        between ``left`` and ``right`` is dead, its address; the reconfiguration goes around it),
        ``failover`` (optional, true: go around that hop if it never answers), ``timeout``
        (seconds).  Answers the outcome; ``ok`` only for ``reconfigured``."""
        sid = self._session_id(args.get("session"))
        me = self.agent.config.address
        left = _address(args.get("left"), "left") if args.get("left") is not None else me
        right = _address(args.get("right"), "right")
        failed = _address(args.get("failed"), "failed") if args.get("failed") is not None else 0
        failover = args.get("failover", False)
        if not isinstance(failover, bool):
            raise UserError(f"failover must be true or false, not {failover!r}")
        hops = args.get("hops", [])
        if not isinstance(hops, list):
            raise UserError(f"hops must be a list of addresses, not {hops!r}")
        new_hops = tuple(_address(h, "hops") for h in hops)
        timeout = _timeout(args.get("timeout", RECONFIGURE_TIMEOUT_S))
        chain = self._chain(sid)
        kept = chain[: chain.index(left) + 1] if left in chain else ()
        after = kept + new_hops + chain[chain.index(right) :] if right in chain else ()
        pending = _Pending(sid, after, asyncio.get_running_loop().create_future(), started=self.now())
        self._pending.append(pending)
        self.counters["mgmt.reconfigure"] += 1

        def event(now: int) -> list[Action]:
            if left == me:
                actions = self.agent.reconfigure(now, sid, right, new_hops, failed=failed, failover=failover)
            else:  # the hop in front of the edit anchors it
                actions = self.agent.delegate_reconfiguration(
                    now, sid, left, right, new_hops, failed=failed, failover=failover
                )
            self._started(pending, actions)
            return actions

        self.intake.put((event, self.now()))
        try:
            async with asyncio.timeout(timeout):
                note = await pending.done
        except TimeoutError:
            note = Notify("reconfigure_timeout", f"no outcome in {timeout:g}s", sid, True)
        finally:
            self._pending.remove(pending)
        self.counters[f"mgmt.{note.event}"] += 1
        if note.event == "reconfigured" and pending.chain:
            self._chains[sid] = pending.chain
        return {
            "session": sid,
            "outcome": note.event,
            "ok": note.event == "reconfigured",
            "message": note.message,
            "rid": pending.rid,
            "left": ip_str(left),
            "right": ip_str(right),
            "hops": [ip_str(h) for h in new_hops],
            "failed": ip_str(failed) if failed else None,
            "chain": [ip_str(a) for a in self._chain(sid)] if sid in self.agent.sessions else [],
            "seconds": round((self.now() - pending.started) / 1e9, 3),
        }

    async def splice(self, args: Args) -> dict[str, object]:
        """Management ``splice`` (:func:`dysco.runtime.splice`): a proxy on this host hands over
        its two connections.  The request is checked here, the core splices (``Agent.splice``);
        the answer is its outcome: ``spliced`` once the old path is gone, else why not."""
        req = parse_request(args)
        self.counters["mgmt.splice"] += 1
        sp = _Splice(asyncio.get_running_loop().create_future(), self.now())
        self._splices.append(sp)

        def event(now: int) -> list[Action]:
            actions = self.agent.splice(now, req.inbound, req.outbound, req.delta, req.delta_rev)
            for a in actions:
                if isinstance(a, Notify) and a.event == "splice_refused":
                    sp.done.set_result(a)
                elif isinstance(a, Notify) and a.event == "splice_started":
                    sp.sid = a.session_id
                elif isinstance(a, Notify) and a.event == "splice_warning":
                    sp.notes.append(a.message)
            if not sp.done.done() and not sp.sid:
                sp.done.set_result(Notify("splice_refused", "the agent did not start it", 0, True))
            return actions

        self.intake.put((event, self.now()))
        try:
            async with asyncio.timeout(req.timeout):
                note = await sp.done
        except TimeoutError:
            note = Notify("splice_timeout", f"not spliced in {req.timeout:g}s", sp.sid, True)
        finally:
            self._splices.remove(sp)
        self.counters[f"mgmt.{note.event}"] += 1
        return {
            "outcome": note.event,
            "ok": note.event == "spliced",
            "message": note.message,
            "session": sp.sid,
            "inbound": str(req.inbound),
            "outbound": str(req.outbound),
            "notes": sp.notes,
            "seconds": round((self.now() - sp.started) / 1e9, 3),
        }

    def _splice_outcome(self, n: Notify) -> None:
        for sp in self._splices:
            if not sp.sid or n.session_id != sp.sid or sp.done.done():
                continue
            if n.event == "spliced" or n.event in SPLICE_FAILED:
                sp.done.set_result(n)
            elif n.event == "session_closed" and not n.message.endswith("(spliced)"):
                sp.done.set_result(
                    Notify("splice_failed", f"the session closed first: {n.message}", n.session_id, True)
                )
            elif n.event.startswith("right_request"):
                sp.notes.append(f"{n.event}: {n.message}")

    def _session_id(self, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if value not in self.agent.sessions:
                raise UserError(f"no session {value} (see `dysco ctl sessions`)")
            return value
        if isinstance(value, str):
            key = value.replace(" ", "")
            for sid, s in self.agent.sessions.items():
                if str(s.session) == key:
                    return sid
            raise UserError(f"no session {value!r} (see `dysco ctl sessions`)")
        raise UserError(f"session must be an id or a five-tuple SRC:SPORT->DST:DPORT, not {value!r}")

    def _chain(self, sid: int) -> tuple[int, ...]:
        return self._chains.get(sid) or self.agent.sessions[sid].chain

    def _started(self, p: _Pending, actions: list[Action]) -> None:
        """The core's answer to the trigger: started (with its rid) or refused."""
        for a in actions:
            if isinstance(a, Notify) and a.session_id == p.sid:
                if a.event == "reconfigure_started" and (m := _RID.search(a.message)):
                    p.rid = int(m.group(1))
                    return
                if a.event == "reconfigure_refused":
                    p.done.set_result(a)
                    return
        p.done.set_result(Notify("reconfigure_failed", "the agent did not start it", p.sid, True))

    def _outcome(self, n: Notify) -> None:
        if n.event not in ("reconfigured", "reconfigure_failed") or "(right anchor)" in n.message:
            return
        m = _RID.search(n.message)
        for p in self._pending:
            if p.sid == n.session_id and m and p.rid == int(m.group(1)) and not p.done.done():
                p.done.set_result(n)


def _timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT_S:
        raise UserError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], not {value!r}")
    return float(value)


def _count(value: object, what: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
        bounds = f"between {low} and {high}" if high else f"at least {low}"
        raise UserError(f"{what} must be a whole number {bounds}, not {value!r}")
    return value


def _address(value: object, what: str) -> int:
    try:
        return ip_int(value) if isinstance(value, str) else ip_int("")
    except ipaddress.AddressValueError:
        raise UserError(f"{what}: {value!r} is not an IPv4 address") from None
