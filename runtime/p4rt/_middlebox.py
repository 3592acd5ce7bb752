"""Management requests of a middlebox application (:mod:`dysco.runtime._mbcall`, ``dysco ctl
hops``, ``delta`` and ``leave``): the next hops of a session being set up, the bytes the
middlebox added to a session's stream, and its own removal from a live session.

Each is an event on the intake's first lane, in order with the punts: a ``hops`` request that
is answered was applied before the SYN the middlebox sends after the answer reaches the core.
The answer to ``hops`` and ``delta`` is the core's own (``hops_added`` / ``delta_declared``); a
refusal is a user error with the core's reason.  ``leave`` waits for the reconfiguration's
outcome, which the service hands to :meth:`MiddleboxRequests._leave_outcome`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from dysco.errors import UserError
from dysco.runtime._mbcall import check_delta, parse_session
from dysco.runtime._mgmt import Args
from dysco.runtime.core._events import Action, Notify
from dysco.runtime.core._types import ip_str
from dysco.runtime.p4rt._management import RECONFIGURE_TIMEOUT_S, Management, _address, _timeout

ANSWER_TIMEOUT_S = 5.0
"""How long a request waits for the core to take it (the intake's backlog)."""


@dataclass(slots=True)
class _Leave:
    """A middlebox leaving a session, which a management request started and waits for."""

    sid: int
    done: asyncio.Future[Notify]
    started: int
    notes: list[str] = field(default_factory=list)


LEAVE_FAILED = frozenset({"right_request_refused", "right_request_failed"})


class MiddleboxRequests(Management):
    answer_timeout_s = ANSWER_TIMEOUT_S

    def __init__(self) -> None:
        super().__init__()
        self._leaves: list[_Leave] = []

    async def hops(self, args: Args) -> dict[str, object]:
        """Management ``hops``: ``session`` (the five-tuple of the SYN the middlebox got, as
        ``SRC:SPORT->DST:DPORT``), ``hops`` (addresses) go ahead of the rest of its chain.
        Answers ``session`` (the core's id) and ``chain`` (the hops from this agent on)."""
        session = parse_session(args.get("session"))
        hops = args.get("hops")
        if not isinstance(hops, list) or not hops:
            raise UserError(f"hops must be a non-empty list of addresses, not {hops!r}")
        addrs = [_address(h, "hops") for h in hops]
        self.counters["mgmt.hops"] += 1

        def call(now: int) -> list[Action]:
            return self.agent.prepend_hops(session, addrs)

        note = await self._ask(call, "hops")
        s = self.agent.sessions.get(note.session_id)
        chain = [ip_str(a) for a in s.remaining] if s is not None else []
        return {"session": note.session_id, "chain": chain}

    async def delta(self, args: Args) -> dict[str, object]:
        """Management ``delta``: ``session`` (the inbound connection, peer to local, as
        ``SRC:SPORT->DST:DPORT``), ``delta`` and ``delta_rev`` (bytes the middlebox added so far
        from the left and from the right).  Answers ``session`` and the two deltas."""
        session = parse_session(args.get("session"))
        fwd = check_delta(args.get("delta", 0), "delta")
        rev = check_delta(args.get("delta_rev", 0), "delta_rev")
        self.counters["mgmt.delta"] += 1

        def call(now: int) -> list[Action]:
            return self.agent.declare_delta(session, fwd, rev)

        note = await self._ask(call, "delta")
        return {"session": note.session_id, "delta": fwd, "delta_rev": rev}

    async def _ask(self, call: Callable[[int], list[Action]], what: str) -> Notify:
        """Run ``call`` on the core in order with the punts; its answer, or a refusal raised."""
        done: asyncio.Future[Notify] = asyncio.get_running_loop().create_future()

        def event(now: int) -> list[Action]:
            actions = call(now)
            notes = [a for a in actions if isinstance(a, Notify)]
            if not done.done():
                done.set_result(notes[-1])
            return actions

        self.intake.put((event, self.now()))
        try:
            async with asyncio.timeout(self.answer_timeout_s):
                note = await done
        except TimeoutError:
            raise UserError(
                f"{what}: the agent did not take the request in {self.answer_timeout_s:g}s"
            ) from None
        self.counters[f"mgmt.{note.event}"] += 1
        if note.error:
            raise UserError(f"{what}: {note.message}")
        return note

    async def leave(self, args: Args) -> dict[str, object]:
        """Management ``leave``: the middlebox on this host steps out of ``session`` (id, or its
        five-tuple as ``sessions`` shows it): the agent asks the agent on its left to reconnect
        the session to the agent on its right (rightRequest, ``Agent.request_removal``).  The
        answer is ``left`` once the old path through this host is gone, else why not."""
        sid = self._session_id(args.get("session"))
        timeout = _timeout(args.get("timeout", RECONFIGURE_TIMEOUT_S))
        self.counters["mgmt.leave"] += 1
        lv = _Leave(sid, asyncio.get_running_loop().create_future(), self.now())
        self._leaves.append(lv)

        # its notifications reach _leave_outcome through the service, refusals included
        self.intake.put((lambda now: self.agent.request_removal(now, sid), self.now()))
        try:
            async with asyncio.timeout(timeout):
                note = await lv.done
        except TimeoutError:
            note = Notify("leave_timeout", f"not out of the session in {timeout:g}s", sid, True)
        finally:
            self._leaves.remove(lv)
        self.counters[f"mgmt.{note.event}"] += 1
        return {
            "session": sid,
            "outcome": note.event,
            "ok": note.event == "left",
            "message": note.message,
            "notes": lv.notes,
            "seconds": round((self.now() - lv.started) / 1e9, 3),
        }

    def _leave_outcome(self, n: Notify) -> None:
        for lv in self._leaves:
            if n.session_id != lv.sid or lv.done.done():
                continue
            if n.event in LEAVE_FAILED:
                lv.done.set_result(n)
            elif n.event == "session_closed":
                gone = n.message.endswith("(reconfigured away)")
                event = "left" if gone else "leave_failed"
                lv.done.set_result(
                    Notify(
                        event,
                        n.message if gone else f"the session closed first: {n.message}",
                        n.session_id,
                        not gone,
                    )
                )
            elif n.event.startswith("right_request"):
                lv.notes.append(f"{n.event}: {n.message}")
