"""Management requests of a middlebox application (:mod:`dysco.runtime._mbcall`, ``dysco ctl
hops`` and ``dysco ctl delta``): the next hops of a session being set up, and the bytes the
middlebox added to a session's stream.  (Its removal, ``leave``, is with the other requests that
wait for a reconfiguration, in :mod:`._management`.)

Each is an event on the intake's first lane, in order with the punts: a ``hops`` request that
is answered was applied before the SYN the middlebox sends after the answer reaches the core.
The answer is the core's own (``hops_added`` / ``delta_declared``); a refusal is a user error
with the core's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dysco.errors import UserError
from dysco.runtime._mbcall import check_delta, parse_session
from dysco.runtime._mgmt import Args
from dysco.runtime.core._events import Action, Notify
from dysco.runtime.core._types import ip_str
from dysco.runtime.p4rt._management import Management, _address

ANSWER_TIMEOUT_S = 5.0
"""How long a request waits for the core to take it (the intake's backlog)."""


class MiddleboxRequests(Management):
    answer_timeout_s = ANSWER_TIMEOUT_S

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
