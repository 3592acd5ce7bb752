"""Names of the P4 objects the compiler and the agent use, in one place.

``p4src/dysco.p4`` declares these tables, fields and actions with exactly these
control-plane names (tests check the P4Info generated from the program against
this module).  A program with other names can be driven by passing a different
:class:`ClassifierNames`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


@dataclass(frozen=True, slots=True)
class ClassifierNames:
    """The outbound-SYN classifier table: ternary addresses, range ports, priorities."""

    table: str = "DyscoIngress.classifier"
    src_addr: str = "hdr.ipv4.src_addr"
    dst_addr: str = "hdr.ipv4.dst_addr"
    protocol: str = "hdr.ipv4.protocol"
    src_port: str = "hdr.tcp.src_port"
    dst_port: str = "hdr.tcp.dst_port"
    chain_action: str = "DyscoIngress.punt_policy"
    """Punts the SYN to the agent with the policy's chain id."""
    chain_param: str = "policy_id"
    bypass_action: str = "DyscoIngress.bypass"
    """Forwards the SYN untouched (no chain)."""


CLASSIFIER = ClassifierNames()


# ----------------------------------------------------------------------------------------------------
# Ports, constants and reason codes of p4src/dysco.p4 (p4src/include/constants.p4 defines them).

HOST_PORT = 1
"""Port toward the local stack or middlebox application."""
NET_PORT = 2
"""Port toward the network."""
CPU_PORT = 255
"""Default CPU port (the program's ``DYSCO_CPU_PORT``; the switch's ``cpu_port``)."""
CONTROL_UDP_PORT = 9797
"""UDP destination port of Dysco control messages; the NIC punts them."""
DYSCO_MAGIC = 0x44595343
"""First four bytes of the TCP payload of a SYN carrying a Dysco payload (ASCII ``DYSC``)."""
TEARDOWN_CLONE_SESSION = 100
"""Clone session the agent maps to the CPU port; FIN/RST copies of sessions go through it."""
INBAND_OPTION = 0xFE084459
"""First four bytes of the option area of an in-band control segment: TCP option kind 254
(RFC 6994 experimental), length 8, ExID 0x4459 (docs/protocol.md §4a); the NIC punts such a
segment from the network (:attr:`Reason.INBAND`), never hands it to the host."""
TAG_OPTION = 253
"""TCP option kind of the tag on SYNs handed to a local middlebox application."""

PUNT_METER = "DyscoIngress.punt_meter"
"""Packet meter per punt reason (index = reason code); a punt it colours red is dropped in the NIC."""
PUNT_DROPPED = "DyscoIngress.punt_dropped"
"""Packet counter per punt reason: punts dropped by :data:`PUNT_METER`."""
PUNT_REASONS = 16
"""Size of both arrays: reason codes 0-15."""
KNOWN_PEER = "DyscoIngress.known_peer"
"""Exact on ``hdr.ipv4.src_addr``: agents the local agent authenticated, each with its cell of
:data:`PEER_METER` (action :data:`PEER_ACTION`, parameter ``cell``)."""
PEER_ACTION = "DyscoIngress.peer"
PEER_METER = "DyscoIngress.peer_meter"
"""Packet meter per known agent: its Dysco SYNs and control messages, instead of their reason's
cell of :data:`PUNT_METER`."""
PEER_CELLS = 64
"""Size of :data:`PEER_METER` and of :data:`KNOWN_PEER` (the program's ``DYSCO_PEER_CELLS``)."""
SETUP_PORTS = "DyscoIngress.setup_ports"
"""Range on ``hdr.tcp.dst_port``: the ports the agent opens subsessions from; a SYN-ACK from the
network to one of them that misses ``subsession_in`` is punted (:attr:`Reason.SETUP_MISS`), so
the agent may send a SYN on before the writes of its entries are answered."""
SETUP_PORTS_ACTION = "DyscoIngress.punt_setup_miss"
ANSWER_EXPECTED = "DyscoIngress.answer_expected"
"""Register of ``bit<64>``, :data:`ANSWER_CELLS` cells: the answers the agent expects from its host
(a packet-out in :attr:`PacketOutMode.EXPECT_ANSWER` sets one).  A SYN-ACK from HOST that misses
``session_out`` and finds its tag in its cell is punted (:attr:`Reason.SETUP_MISS`), so the agent
may hand a SYN to its host before the writes of its entries are answered.  The cell is
``csum16(src_addr, dst_addr, src_port, dst_port) % ANSWER_CELLS`` of the answer
(v1model ``hash``: the ones' complement of the ones' complement sum of the 16-bit words), the tag
``(src_addr ^ dst_addr) << 32 | src_port << 16 | dst_port``, 0 meaning no expectation."""
ANSWER_CELLS = 4096
"""Cells of :data:`ANSWER_EXPECTED` (the program's ``DYSCO_ANSWER_CELLS``)."""
SESSION_TABLE_SIZE = 1 << 20
"""Entries of each session table, :data:`SESSION_OUT` and :data:`SUBSESSION_IN` (the program's
``DYSCO_SESSION_TABLE_SIZE``)."""


class Reason(IntEnum):
    """``packet_in.reason``: why a packet reached the agent."""

    POLICY_SYN = 1
    DYSCO_SYN = 2
    CONTROL = 3
    TWO_PATH = 4
    TEARDOWN = 5
    UNSUPPORTED = 6
    IP_UNSUPPORTED = 7
    TAGGED_SYN = 8
    SETUP_MISS = 9
    """A SYN-ACK from the network to a port of :data:`SETUP_PORTS` that no entry translated yet, or
    one from the host that no entry translated and that :data:`ANSWER_EXPECTED` expects."""
    INBAND = 10
    """A TCP segment from the network whose option area starts with :data:`INBAND_OPTION`: a control
    message on a subsession's own five-tuple."""


class Detail(IntEnum):
    """``packet_in.detail`` with :attr:`Reason.UNSUPPORTED`: why the fast path did not translate."""

    NONE = 0
    PARSER_ERROR = 1
    BAD_LENGTH = 2
    BAD_OPTION = 3
    MISALIGNED = 4
    FRAME_LENGTH = 5


class PacketOutMode(IntEnum):
    """``packet_out.mode``."""

    DIRECT = 0
    """Send the frame out of ``packet_out.port`` as it is."""
    PIPELINE = 1
    """Run the frame through the pipeline as if it had come in on ``packet_out.port``."""
    EXPECT_ANSWER = 2
    """As :attr:`DIRECT`, and expect the answer to this SYN from the host (:data:`ANSWER_EXPECTED`);
    only for a program that has that register (any other treats the mode as :attr:`PIPELINE`)."""


@dataclass(frozen=True, slots=True)
class SessionTableNames:
    """A per-session table (exact five-tuple, idle timeouts) and its actions."""

    table: str
    src_addr: str = "hdr.ipv4.src_addr"
    dst_addr: str = "hdr.ipv4.dst_addr"
    protocol: str = "hdr.ipv4.protocol"
    src_port: str = "hdr.tcp.src_port"
    dst_port: str = "hdr.tcp.dst_port"
    rewrite_action: str = "DyscoIngress.rewrite"
    """Translate the five-tuple, deltas, timestamps and window; recompute checksums."""
    rewrite_params: tuple[tuple[str, int], ...] = (
        ("src_addr", 32),
        ("dst_addr", 32),
        ("src_port", 16),
        ("dst_port", 16),
        ("seq_delta", 32),
        ("ack_delta", 32),
        ("ts_val_delta", 32),
        ("ts_ecr_delta", 32),
        ("ws_from", 8),
        ("ws_to", 8),
        ("session_id", 32),
    )
    punt_action: str = "DyscoIngress.punt_session"
    """Send every packet of the session to the agent (two-path phase)."""
    punt_param: str = "session_id"
    drop_action: str = "DyscoIngress.drop_session"
    """Drop the session's packets (a spliced proxy's kernel still sending)."""

    @property
    def key(self) -> tuple[str, ...]:
        return (self.src_addr, self.dst_addr, self.protocol, self.src_port, self.dst_port)


SESSION_OUT = SessionTableNames("DyscoIngress.session_out")
"""Packets from HOST: session -> subsession."""
SUBSESSION_IN = SessionTableNames("DyscoIngress.subsession_in")
"""Packets from NET: subsession -> session."""


@dataclass(frozen=True, slots=True)
class ControllerHeader:
    """A ``@controller_header``: its P4Info name and its fields (name, bits) in wire order."""

    name: str
    fields: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        return sum(w for _, w in self.fields) // 8

    def encode(self, **values: int) -> bytes:
        """The header's bytes; fields not given are zero."""
        unknown = set(values) - {n for n, _ in self.fields}
        if unknown:
            raise ValueError(f"{self.name} has no field {', '.join(sorted(unknown))}")
        acc = 0
        for name, width in self.fields:
            value = values.get(name, 0)
            if not 0 <= value < 1 << width:
                raise ValueError(f"{self.name}.{name} = {value} does not fit {width} bits")
            acc = acc << width | value
        return acc.to_bytes(self.size, "big")

    def decode(self, frame: bytes) -> tuple[dict[str, int], bytes]:
        """The header's fields and the rest of ``frame``."""
        if len(frame) < self.size:
            raise ValueError(f"{len(frame)} bytes are too short for {self.name} ({self.size} bytes)")
        acc = int.from_bytes(frame[: self.size], "big")
        out: dict[str, int] = {}
        shift = self.size * 8
        for name, width in self.fields:
            shift -= width
            out[name] = acc >> shift & ((1 << width) - 1)
        return out, frame[self.size :]


PACKET_IN = ControllerHeader(
    "packet_in",
    (("ingress_port", 9), ("pad0", 7), ("reason", 8), ("detail", 8), ("policy_id", 16), ("session_id", 32)),
)
PACKET_OUT = ControllerHeader("packet_out", (("port", 9), ("pad0", 7), ("mode", 8), ("pad1", 8)))


def answer_cell(src: int, dst: int, sport: int, dport: int, cells: int = ANSWER_CELLS) -> int:
    """The cell of :data:`ANSWER_EXPECTED` for an answer with this five-tuple (TCP), as the program
    hashes it: csum16 over the addresses and ports, modulo ``cells``."""
    total = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + sport + dport
    folded = total % 0xFFFF
    if folded == 0 and total != 0:
        folded = 0xFFFF
    return (~folded & 0xFFFF) % cells


def answer_tag(src: int, dst: int, sport: int, dport: int) -> int:
    """What the program keeps in an answer's cell of :data:`ANSWER_EXPECTED` (never 0 for a real
    five-tuple)."""
    return (src ^ dst) << 32 | sport << 16 | dport
