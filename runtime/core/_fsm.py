"""Table-driven state machines for sessions and subsessions.

Each machine is a state enum plus a transition table; :class:`Machine` refuses a move the
table does not list (our bug: :class:`InternalError`) and logs ``OLD -> NEW``.
:func:`to_dot` draws a table as a Graphviz digraph.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Generic, TypeVar

from dysco.errors import InternalError

S = TypeVar("S", bound=enum.Enum)


class SessionState(enum.Enum):
    PENDING = "pending"
    """Middlebox host: the SYN was handed to the middlebox application; waiting for it to come out."""
    SYN_SENT = "syn_sent"
    """Left end: the SYN went out; the host's packets still come to the agent until it sends a non-SYN."""
    ESTABLISHED = "established"
    """Both directions are carried by the fast path."""
    HALF_CLOSED = "half_closed"
    """A FIN was seen in one direction."""
    CLOSING = "closing"
    """FINs in both directions or a RST: lingering for the last ACKs."""
    CLOSED = "closed"
    """Every entry and map entry is gone."""


SESSION_TRANSITIONS: Mapping[SessionState, frozenset[SessionState]] = {
    SessionState.PENDING: frozenset(
        {SessionState.ESTABLISHED, SessionState.HALF_CLOSED, SessionState.CLOSING, SessionState.CLOSED}
    ),
    SessionState.SYN_SENT: frozenset(
        {SessionState.ESTABLISHED, SessionState.HALF_CLOSED, SessionState.CLOSING, SessionState.CLOSED}
    ),
    SessionState.ESTABLISHED: frozenset(
        {SessionState.HALF_CLOSED, SessionState.CLOSING, SessionState.CLOSED}
    ),
    SessionState.HALF_CLOSED: frozenset({SessionState.CLOSING, SessionState.CLOSED}),
    SessionState.CLOSING: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}

SESSION_TIMEOUTS_S: Mapping[SessionState, str] = {
    SessionState.PENDING: "setup_timeout",
    SessionState.SYN_SENT: "setup_timeout",
    SessionState.CLOSING: "linger",
}
"""The config attribute giving each state's timeout (states not listed wait for the NIC's idle timeout)."""


class SubsessionState(enum.Enum):
    OPENING = "opening"
    """Port allocated, entries requested; the SYN has not gone out / come in yet."""
    OPEN = "open"
    """The SYN crossed it; packets flow."""
    CLOSED = "closed"
    """Entries deleted, port released."""


SUBSESSION_TRANSITIONS: Mapping[SubsessionState, frozenset[SubsessionState]] = {
    SubsessionState.OPENING: frozenset({SubsessionState.OPEN, SubsessionState.CLOSED}),
    SubsessionState.OPEN: frozenset({SubsessionState.CLOSED}),
    SubsessionState.CLOSED: frozenset(),
}


class Machine(Generic[S]):
    """The current state of one object and the table it may move by."""

    __slots__ = ("_log", "_name", "_table", "state")

    def __init__(
        self,
        name: str,
        initial: S,
        table: Mapping[S, frozenset[S]],
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self._name = name
        self._table = table
        self._log = log
        self.state = initial

    def set(self, new: S) -> None:
        old = self.state
        if new is old:
            return
        if new not in self._table[old]:
            raise InternalError(f"{self._name}: illegal transition {old.name} -> {new.name}")
        self._log.debug("%s: %s -> %s", self._name, old.name, new.name)
        self.state = new


def to_dot(name: str, table: Mapping[S, frozenset[S]]) -> str:
    lines = [f"digraph {name} {{"]
    for old, news in table.items():
        lines.extend(f"  {old.name} -> {new.name};" for new in sorted(news, key=lambda s: s.name))
    lines.append("}")
    return "\n".join(lines)
