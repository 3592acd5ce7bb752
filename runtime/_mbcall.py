"""The middlebox API: what a middlebox application asks of the agent on its host.

Three calls, beside :func:`dysco.runtime.splice`, each a request on the agent's management
socket that returns once the agent's core has acted on it (or raises :class:`UserError` with
the agent's reason)::

    prepend_hops(session, hops)              the next hops of a session being set up
    declare_delta(session, delta, delta_rev) the bytes it added to the session's stream so far
    leave(session)                           its own removal from a live session (rightRequest)

``session`` names the session as the middlebox sees it: its inbound connection, peer to local.
For a packet-level middlebox that is the five-tuple of the SYN it got, ``SRC:SPORT->DST:DPORT``
text (or a :class:`~dysco.runtime.core.FiveTuple`); a TCP-terminating proxy may pass the
socket it accepted (its peer's address and port -> its own).

``prepend_hops`` must come before the middlebox sends the session's SYN on: the agent opens the
next subsession when the SYN comes back out of the host, toward the first hop of the list as it
is then.  The answer is the chain from the middlebox on.  ``declare_delta`` replaces what was
declared before for the session; a removal that starts after it (``leave``, a reconfiguration
that deletes or replaces the middlebox, a splice) takes it into the sequence numbers the anchors
translate, so the middlebox must not change the stream's length any more once it asks to leave.
``dysco ctl hops``, ``dysco ctl delta`` and ``dysco ctl leave`` are the same from a shell.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dysco.errors import UserError
from dysco.runtime._mgmt import DEFAULT_SOCKET, request
from dysco.runtime.core._types import FiveTuple, ip_int

LEAVE_TIMEOUT_S = 10.0
ANSWER_MARGIN_S = 5.0
MAX_DELTA = (1 << 31) - 1
_TUPLE = re.compile(r"^([0-9.]+):(\d+)->([0-9.]+):(\d+)$")

SessionRef = socket.socket | str | FiveTuple
"""A session as the middlebox names it: its inbound connection (see the module's text)."""


@dataclass(frozen=True, slots=True)
class LeaveResult:
    ok: bool
    outcome: str
    """``left`` once the old path through this host is gone; else why not."""
    message: str
    details: dict[str, Any]
    """The agent's whole answer."""


def prepend_hops(session: SessionRef, hops: Iterable[str], *, mgmt: str = DEFAULT_SOCKET) -> list[str]:
    """Put ``hops`` (IPv4 addresses of agents: middleboxes, or the destination's) ahead of the
    rest of ``session``'s chain; returns the chain from this middlebox on.  Call it before the
    SYN goes on."""
    text = session_text(session)
    addrs = [_address(h, "prepend_hops") for h in hops]
    answer = request(mgmt, "hops", {"session": text, "hops": addrs})
    assert isinstance(answer, dict)
    return [str(a) for a in answer["chain"]]


def declare_delta(
    session: SessionRef, delta: int = 0, *, delta_rev: int = 0, mgmt: str = DEFAULT_SOCKET
) -> None:
    """Declare that the middlebox added ``delta`` bytes so far to ``session``'s stream from the
    left (the client) and ``delta_rev`` to the stream from the right (negative: removed)."""
    text = session_text(session)
    check_delta(delta, "delta")
    check_delta(delta_rev, "delta_rev")
    request(mgmt, "delta", {"session": text, "delta": delta, "delta_rev": delta_rev})


def leave(
    session: SessionRef, *, mgmt: str = DEFAULT_SOCKET, timeout: float = LEAVE_TIMEOUT_S
) -> LeaveResult:
    """Ask to be removed from ``session``: the agent on the left reconnects it to the agent on
    the right.  Blocks until the old path through this host is gone, or ``timeout``."""
    text = session_text(session)
    args = {"session": text, "timeout": timeout}
    answer = request(mgmt, "leave", args, timeout=timeout + ANSWER_MARGIN_S)
    assert isinstance(answer, dict)
    return LeaveResult(bool(answer.get("ok")), str(answer.get("outcome")), str(answer.get("message")), answer)


def session_text(session: SessionRef) -> str:
    """``SRC:SPORT->DST:DPORT`` of a session reference (a socket: the connection it accepted,
    peer -> local)."""
    if isinstance(session, FiveTuple):
        return str(session)
    if isinstance(session, socket.socket):
        if session.family != socket.AF_INET or session.type != socket.SOCK_STREAM:
            raise UserError("session: the socket is not a TCP socket over IPv4")
        try:
            (laddr, lport), (paddr, pport) = session.getsockname(), session.getpeername()
        except OSError as exc:
            raise UserError(f"session: the socket is not connected ({exc.strerror})") from None
        return f"{paddr}:{pport}->{laddr}:{lport}"
    return str(parse_session(session))


def parse_session(text: object) -> FiveTuple:
    """A five-tuple from ``SRC:SPORT->DST:DPORT``; :class:`UserError` says what is wrong."""
    m = _TUPLE.match(text.replace(" ", "")) if isinstance(text, str) else None
    try:
        if m is None:
            raise ValueError
        src, dst = ip_int(m.group(1)), ip_int(m.group(3))
        sport, dport = int(m.group(2)), int(m.group(4))
        if not (0 < sport < 65536 and 0 < dport < 65536):
            raise ValueError
    except (ValueError, ipaddress.AddressValueError):
        raise UserError(f"session {text!r}: expected SRC:SPORT->DST:DPORT (IPv4, ports 1-65535)") from None
    return FiveTuple(src, dst, sport, dport)


def check_delta(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_DELTA:
        raise UserError(f"{name} must be an integer of magnitude below 2**31, not {value!r}")
    return value


def _address(value: object, what: str) -> str:
    if isinstance(value, str):
        try:
            return str(ipaddress.IPv4Address(value))
        except ipaddress.AddressValueError:
            pass
    raise UserError(f"{what}: {value!r} is not an IPv4 address")
