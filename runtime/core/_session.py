"""A session as one agent keeps it: the agent's settings (:class:`Config`), its role on the
session's path, its subsessions to the left and right, and what the agent installed for it.

Roles per session (paper §2.3): the *left end* classified the host's SYN and opens the first
subsession; a *middle* hands the SYN to its middlebox application and opens the next
subsession when it comes back out; the *right end* hands the SYN to its host.

Plain data: the agent (:mod:`._agent`) sets sessions up and tears them down, the
reconfiguration (:mod:`.reconf`) moves them from path to path.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from dysco import p4names
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._events import Mapping, Port, Table
from dysco.runtime.core._fsm import Machine, SessionState, SubsessionState
from dysco.runtime.core._splice_translation import Side
from dysco.runtime.core._types import FiveTuple

SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Config:
    address: int
    """This agent's address: the source of the subsessions it opens."""
    name: str = "agent"
    port_low: int = 10000
    port_high: int = 32767
    max_sessions: int = 65536
    table_size: int = 65536
    """Entries each session table holds (the P4 program's ``size``)."""
    setup_timeout: int = 10 * SECOND
    linger: int = 2 * SECOND
    """State kept after a closing session's last packet once both FINs are acknowledged (or
    after a RST)."""
    fin_wait: int = 60 * SECOND
    """How long a closing session waits for the acknowledgment of a FIN it forwarded (no packet
    of the session for that long: it closes anyway)."""
    idle_timeout: int = 300 * SECOND
    """Idle timeout of every session entry in the NIC."""
    agentless: tuple[ipaddress.IPv4Network, ...] = ()
    """Destinations without a Dysco agent: chains toward them end at their last hop (a gateway)."""
    splice: bool = False
    """Watch the handshake of every session this host's applications terminate or open (one
    more punt per session), so a proxy here can splice them (:meth:`Agent.splice`)."""
    keys: auth.KeyRing | None = None
    """The trust domain's keys: when set, every Dysco SYN payload and control message this agent
    sends is sealed with the current key, and every one it receives must verify (docs/security.md)."""
    replay_window: int = auth.WINDOW
    """How far a sealed message's timestamp may be from this agent's clock."""
    peer_cells: int = p4names.PEER_CELLS
    """Cells of the NIC's peer meter to hand the agents this one authenticates (with keys only;
    0: none, every punt metered under its reason; :mod:`dysco.runtime.core._peers`)."""


class Role(enum.Enum):
    LEFT = "left"
    MIDDLE = "middle"
    RIGHT = "right"


class Direction(enum.Enum):
    FWD = "fwd"
    """From the left end toward the right end."""
    REV = "rev"


@dataclass(slots=True)
class Subsession:
    tuple: FiveTuple
    """Left to right, as on the wire."""
    fsm: Machine[SubsessionState]
    local_port: int | None = None
    """Set when this agent allocated the source port (the subsession to its right)."""


@dataclass(slots=True)
class Session:
    sid: int
    role: Role
    session: FiveTuple
    """The five-tuple from the payload (or the host's SYN): what this host's left side sees."""
    fsm: Machine[SessionState]
    created: int
    chain: tuple[int, ...]
    remaining: list[int] = field(default_factory=list)
    emitted: FiveTuple | None = None
    """Middle: the five-tuple the middlebox application sent the SYN on with (NAT: differs)."""
    up: Subsession | None = None
    down: Subsession | None = None
    tag: int | None = None
    syn_out: wire.SynPayload | None = None
    """The Dysco payload of the SYN this agent sent (sealed anew for each retransmission)."""
    mappings: dict[tuple[Table, FiveTuple], tuple[Mapping, Direction]] = field(default_factory=dict)
    fins: set[Direction] = field(default_factory=set)
    deadline: int | None = None
    instances: tuple[int, ...] = ()
    delta_up: int = 0
    """Added to the sequence numbers arriving on the left subsession (after a reconfiguration)."""
    delta_down: int = 0
    """Added to the sequence numbers arriving on the right subsession."""
    mb_delta: tuple[int, int] = (0, 0)
    """Middle or right end: the bytes the middlebox application on this host added to the
    session's stream so far (left to right, right to left; negative: removed), as it declared
    them (:meth:`~dysco.runtime.core.Agent.declare_delta`).  A removal of the middlebox carries
    them to the anchors (requestLock, ackLock; for a splice on top of its own translation)."""
    active: int = 0
    """When the agent last saw a packet of the session (a closing session lingers from then)."""
    fin_ends: dict[tuple[Port, FiveTuple], int] = field(default_factory=dict)
    """FINs this agent forwarded and nobody acknowledged yet: (port it left by, five-tuple it
    left with) -> its end in that subsession's sequence space."""
    reset: bool = False
    """A RST was seen: the session closes after its linger, FINs acknowledged or not."""
    peer_syn: Side | None = None
    """``Config.splice``: the SYN (right end) or SYN-ACK (left end) from the other end."""
    host_syn: Side | None = None
    """``Config.splice``: this host's SYN (left end) or SYN-ACK (right end)."""
    waiting: dict[tuple[Table, FiveTuple], FiveTuple] = field(default_factory=dict)
    """Entries punting until the handshake's packet passed, and the target they get then."""
    macs: tuple[bytes, bytes] | None = None
    """An end's Ethernet destination and source of frames toward its host (from the setup), for
    frames the agent makes itself (a reconfiguration's probe, :mod:`dysco.runtime.core.reconf`)."""
