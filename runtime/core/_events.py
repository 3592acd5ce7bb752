"""What the sans-IO core takes in and gives out.

Events arrive as method calls on :class:`dysco.runtime.Agent`; each call returns the actions
an adapter must carry out, in order.  Adapters must finish the installs of one call before
sending its packets (so the fast path is ready when the answers come back), except a
:class:`Send` marked ``early``, and must report a refused write with :meth:`Agent.write_failed`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dysco.runtime.core._types import FiveTuple


class Port(enum.Enum):
    HOST = "host"
    NET = "net"


class Table(enum.Enum):
    OUT = "session_out"
    """Packets from HOST, keyed by the five-tuple the host sends: session -> subsession."""
    IN = "subsession_in"
    """Packets from NET, keyed by the subsession five-tuple: subsession -> session."""


class Reason(enum.Enum):
    """Why the NIC sent a packet to the agent (the data plane's codes map onto these)."""

    POLICY_SYN = "policy_syn"
    DYSCO_SYN = "dysco_syn"
    TAGGED_SYN = "tagged_syn"
    SESSION_PUNT = "session_punt"
    TEARDOWN = "teardown"
    UNSUPPORTED = "unsupported"
    CONTROL = "control"
    INBAND = "inband"
    """A control message in a TCP segment on a subsession's five-tuple (docs/protocol.md §4a)."""
    SETUP_MISS = "setup_miss"
    """A SYN-ACK that came back (from the network, or from the host) before the entries of its
    session were in (the NIC could not translate it yet)."""
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Mapping:
    """One entry of a session table: packets matching ``key`` are rewritten to ``target``,
    or, with ``target`` None, punted to the agent (dropped with ``drop``)."""

    table: Table
    key: FiveTuple
    target: FiveTuple | None
    session_id: int
    seq_delta: int = 0
    """Added to the sequence number (packets arriving on a reconfigured path)."""
    ack_delta: int = 0
    """Subtracted from the acknowledgment number and SACK edges (packets leaving on one)."""
    ts_val_delta: int = 0
    """Added to the TSval of the timestamp option (a spliced session, packets arriving)."""
    ts_ecr_delta: int = 0
    """Added to the TSecr (a spliced session, packets leaving)."""
    ws: tuple[int, int] = (0, 0)
    """The window becomes ``window << ws[0] >> ws[1]`` (a spliced session's scales differ)."""
    drop: bool = False
    """Drop the packets instead (what a spliced proxy's kernel still sends)."""
    punt: bool = False
    """Punt the packets to the agent, which translates them to ``target`` itself (a closing
    session: the agent watches for the acknowledgments of its FINs)."""
    note: bytes = b""
    """The session's note (:mod:`dysco.runtime.core._note`), kept with the entry in the NIC so a
    restarted agent can rebuild the session; the core fills it in on the installs and modifies
    it returns, the adapter writes it as the entry's metadata."""


@dataclass(frozen=True, slots=True)
class Install:
    mapping: Mapping


@dataclass(frozen=True, slots=True)
class Modify:
    mapping: Mapping


@dataclass(frozen=True, slots=True)
class Delete:
    mapping: Mapping


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frame`` out of ``port`` as it is (packet-out, direct)."""

    frame: bytes
    port: Port
    early: bool = False
    """May leave before the writes of the same call are answered: a SYN to the next hop or to the
    host, whose answer, should it overtake the writes, the NIC punts (:attr:`Reason.SETUP_MISS`)
    and the agent handles after them.  Only an adapter whose NIC punts such answers from that
    side may honour it (from the host, only those it was told to expect)."""


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call :meth:`Agent.timer` at ``at`` (ns, the adapter's clock); replaces any earlier request."""

    at: int


@dataclass(frozen=True, slots=True)
class Notify:
    """Something an operator or a test wants to know: ``event`` is a short name."""

    event: str
    message: str
    session_id: int = 0
    error: bool = False


@dataclass(frozen=True, slots=True)
class Peer:
    """Meter the Dysco SYNs and control messages from ``address`` (an agent this one
    authenticated) in cell ``cell`` of the NIC's peer meter; ``replaces``: the address that held
    the cell until now, whose entry goes (:mod:`dysco.runtime.core._peers`)."""

    address: int
    cell: int
    replaces: int | None = None


Action = Install | Modify | Delete | Send | SetTimer | Notify | Peer
