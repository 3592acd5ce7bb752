"""Fleet commands (``dysco fleet replace | insert | delete | drain``): a command is a key every agent
picks up, carries out on the sessions it anchors on the left, and answers under its own key::

    commands/ID          the command (JSON: :class:`Command`), written once by the CLI
    results/ID/NAME      agent NAME's outcome (JSON: :class:`Outcome`): first ``running``, then
                         ``done`` with the sessions moved, failed and skipped, and why

At most once per agent: an agent claims a command by creating ``results/ID/NAME`` in a
transaction that fails when the key exists, and carries out only what it claimed, so a command
seen twice (a watch replayed after a reconnection, a restart that reads the commands again) is
not carried out twice.  A command past its ``expires`` time is not taken up at all.

The work on the sessions is :func:`carry_out`: the same selection and per-session plan as
``dysco ctl reconfigure --all | --match`` (:mod:`dysco.runtime._ctl`), run in the agent.  A
``drain`` is a ``replace`` whose new instance the agent chooses per session (another instance
of the middlebox's type, not drained, the least loaded); a session with nowhere to go stays and
is counted ``refused``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dysco.errors import DyscoError, UserError
from dysco.runtime import _ctl
from dysco.runtime.fleet._layout import json_fields

OPS = ("replace", "insert", "delete", "drain")
PARALLEL = 8
"""Sessions an agent reconfigures at a time for one command."""
ERRORS_KEPT = 10


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    op: str
    """replace (``addr`` by ``new``), insert (``addr`` in front, into the ``match``ed sessions),
    delete (``addr``), drain (``addr`` replaced by instances of its type the agent chooses)."""
    addr: str
    new: str = ""
    match: str = ""
    """A pcap-filter predicate of the policy language: only the sessions it selects."""
    timeout: float = 10.0
    """Each session's reconfiguration is waited for this long."""
    issued: float = 0.0
    expires: float = 0.0
    """Wall-clock time after which no agent takes the command up."""

    def edit(self, new: str = "") -> _ctl.Edit:
        if self.op == "drain":
            return _ctl.Edit("replace", self.addr, new)
        return _ctl.Edit(self.op, self.addr, self.new)

    def __str__(self) -> str:
        text = f"drain {self.addr}" if self.op == "drain" else str(self.edit())
        return f"{text} where {self.match}" if self.match else text

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Command:
        return cls(**json_fields(cls, data))


def new_command(op: str, addr: str, new: str = "", match: str = "", timeout: float = 10.0) -> Command:
    """A command checked as the CLI gives it (addresses, predicate), expiring after the time
    the CLI waits for it."""
    if op not in OPS:
        raise UserError(f"unknown fleet command {op!r} (one of {', '.join(OPS)})")
    addr = _address(addr, op)
    if op == "drain" and new:
        raise UserError("drain takes no NEW: each agent chooses another instance of the type")
    if op == "replace":
        new = _address(new, op)
        if new == addr:
            raise UserError(f"replace {addr} {new}: the same middlebox")
    if match:
        _ctl.predicate(match)  # errors point into the predicate, before anything is written
    if op == "insert" and not match:
        raise UserError("insert needs --match PREDICATE (which sessions get the middlebox)")
    if not 0 < timeout <= 600:
        raise UserError(f"--timeout {timeout:g}: between 0 and 600 seconds")
    now = time.time()
    ident = f"{int(now * 1000):013d}-{secrets.token_hex(3)}"  # sorts by time
    return Command(ident, op, addr, new, match, timeout, round(now, 3), round(now + 2 * timeout + 5, 3))


@dataclass(frozen=True, slots=True)
class Outcome:
    agent: str
    state: str = "running"
    """running (claimed), done."""
    sessions: int = 0
    """Sessions the command applies to at this agent."""
    moved: int = 0
    failed: int = 0
    skipped: int = 0
    refused: int = 0
    """(drain) Sessions left on the instance: no other instance of its type to move them to."""
    errors: list[str] = field(default_factory=list)
    """Why sessions failed or were skipped (the first few), or why the command was refused."""
    seconds: float = 0.0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Outcome:
        return cls(**json_fields(cls, data))


Reconfigure = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
"""The agent's management ``reconfigure`` (session, right, hops, timeout) -> its outcome."""
Choose = Callable[[str, Sequence[str]], "str | None"]
"""(drain) The instance that takes ``addr``'s place in a session with hops ``path`` (None: none)."""


async def carry_out(
    cmd: Command,
    name: str,
    me: str,
    rows: Sequence[Mapping[str, Any]],
    reconfigure: Reconfigure,
    parallel: int = PARALLEL,
    choose: Choose | None = None,
    notes: Sequence[str] = (),
) -> Outcome:
    """``cmd`` on the sessions ``rows`` (management ``sessions``) that this agent (address ``me``)
    anchors on the left, ``parallel`` at a time; ``notes`` lead the outcome's errors."""
    t0 = time.monotonic()
    try:
        test = _ctl.predicate(cmd.match) if cmd.match else None
    except UserError as exc:
        return Outcome(name, "done", errors=[f"refused: {exc}"], seconds=0.0)
    errors = list(notes)
    refused = 0
    if cmd.op == "drain":
        assert choose is not None
        jobs = []
        for row in rows:
            path = _ctl.path_right_of(row, me)
            if cmd.addr not in path:
                continue
            new = choose(cmd.addr, path)
            if new is None:
                if _ctl.select([row], me, cmd.edit("0.0.0.0"), test):  # one it would move
                    refused += 1
                    errors.append(
                        f"{_session(row)}: refused: no other instance of its type that is not drained"
                    )
                continue
            jobs += _ctl.select([row], me, cmd.edit(new), test)
    else:
        jobs = _ctl.select(rows, me, cmd.edit(), test)
    todo = [j for j in jobs if not j.skip]
    errors += [f"{_session(j.row)}: skipped: {j.skip}" for j in jobs if j.skip]
    gate = asyncio.Semaphore(parallel)

    async def one(job: _ctl.Job) -> bool:
        async with gate:
            args = {
                "session": job.row["id"],
                "right": job.right,
                "hops": list(job.hops),
                "timeout": cmd.timeout,
            }
            try:
                result = await reconfigure(args)
            except DyscoError as exc:  # e.g. the session ended since it was listed
                errors.append(f"{_session(job.row)}: {exc}")
                return False
            if not result.get("ok"):
                errors.append(f"{_session(job.row)}: {result.get('outcome')}: {result.get('message')}")
            return bool(result.get("ok"))

    done = await asyncio.gather(*(one(j) for j in todo))
    moved = sum(done)
    return Outcome(
        name,
        "done",
        len(jobs) + refused,
        moved,
        len(todo) - moved,
        len(jobs) - len(todo),
        refused,
        errors[:ERRORS_KEPT],
        round(time.monotonic() - t0, 3),
    )


def _session(row: Mapping[str, Any]) -> str:
    return f"session {row['id']} {_ctl.tuple_text(row['five_tuple'])}"


def _address(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ipaddress.AddressValueError:
        raise UserError(f"{what}: {text!r} is not an IPv4 address") from None
