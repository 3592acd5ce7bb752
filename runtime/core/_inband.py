"""In-band control segments (docs/protocol.md §4a): a control message in a TCP segment on the
subsession's own five-tuple, so that a NAT between two neighbouring agents, which keeps state
for the subsession's TCP flow and none for UDP to the control port, translates it.

The segment is an ACK with no other flag, window 0, and one 8-byte option first in its option
area (kind 254, RFC 6994's experimental kind, ExID 0x4459 "DY", then a version, flags and two
reserved bytes); its payload is the control message exactly as a UDP datagram would carry it.
The NIC punts such a segment from the network (reason INBAND) and never hands it to the host.

Sequence and acknowledgment numbers.  A Linux conntrack NAT (``nf_conntrack_tcp_be_liberal`` 0,
the default) translates a segment whose sequence number is not past the window's right edge and
whose acknowledgment number is not past what the other side sent; one that lies *behind* the
window in both is "ignored": accepted, translated, and left out of the connection's state (Linux
6.18 measured, docs/protocol.md §4a).  So a sender puts both numbers 2^30 behind the newest it
knows for that direction (:class:`SeqBook`); what it does not know it guesses, and each
retransmission tries the next of the four combinations of the two halves of the number space,
one of which is always behind (a number it knows stays as it is).  An answer mirrors the numbers
of the request it answers (its sequence number is the request's ack and its ack the request's
sequence number): those passed.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from dysco.runtime.core._control_messages import GarbledControl, TruncatedControl, UnknownVersion
from dysco.runtime.core._neighbours import UNADDRESSED
from dysco.runtime.core._packet import ACK, checksum16
from dysco.runtime.core._types import TCP, FiveTuple

OPTION_KIND = 254
OPTION_LEN = 8
EXID = 0x4459
VERSION = 1
LEFTWARD = 0x01
"""Option flag: the segment travels from the right end of the subsession to its left end."""
RELAY = 0x02
"""Option flag: a message between the two anchors of a reconfiguration, passed on along the
session's path by the agents between them (SWITCH, DONE and their answers)."""
OPTION = struct.Struct("!BBHBBH")
"""kind, length, ExID, version, flags, reserved."""
_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
HEADERS = _ETH.size + _IP.size + _TCP.size + OPTION.size
M32 = 0xFFFFFFFF
BEHIND = 1 << 30
"""How far behind the newest number it knows a sender puts its segment's numbers."""
HALF = 1 << 31
MAX_TUPLES = 65536
"""Directions whose numbers :class:`SeqBook` keeps; a new one past that evicts the oldest."""


@dataclass(frozen=True, slots=True)
class Segment:
    """An in-band segment as it arrived: its five-tuple (as this agent sees it), numbers, and
    the control message it carries."""

    tuple: FiveTuple
    leftward: bool
    seq: int
    ack: int
    data: bytes
    relay: bool = False


def frame(via: FiveTuple, leftward: bool, seq: int, ack: int, data: bytes, relay: bool = False) -> bytes:
    """The Ethernet frame carrying ``data`` on ``via`` (the direction it travels in)."""
    flags = (LEFTWARD if leftward else 0) | (RELAY if relay else 0)
    opt = OPTION.pack(OPTION_KIND, OPTION_LEN, EXID, VERSION, flags, 0)
    tcp_len = _TCP.size + len(opt) + len(data)
    src, dst = via.src.to_bytes(4, "big"), via.dst.to_bytes(4, "big")
    ip = _IP.pack(0x45, 0, 20 + tcp_len, 0, 0x4000, 64, TCP, 0, src, dst)
    ip = ip[:10] + checksum16(ip).to_bytes(2, "big") + ip[12:]
    doff = (_TCP.size + len(opt)) // 4
    tcp = _TCP.pack(via.sport, via.dport, seq & M32, ack & M32, doff << 4, ACK, 0, 0, 0) + opt + data
    c = checksum16(src + dst + struct.pack("!BBH", 0, TCP, tcp_len) + tcp)
    tcp = tcp[:16] + c.to_bytes(2, "big") + tcp[18:]
    return _ETH.pack(UNADDRESSED, UNADDRESSED, 0x0800) + ip + tcp


def parse(data: bytes) -> Segment:
    """The segment in the frame ``data``; a :class:`BadControl` subclass for anything else."""
    if len(data) < HEADERS:
        raise TruncatedControl(f"in-band frame of {len(data)} bytes < {HEADERS}")
    if _ETH.unpack_from(data)[2] != 0x0800:
        raise GarbledControl("in-band frame: not IPv4")
    vihl, _tos, total, _id, _frag, _ttl, proto, _c, src, dst = _IP.unpack_from(data, _ETH.size)
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4 or ihl != 20 or proto != TCP:
        raise GarbledControl("in-band frame: not TCP in IPv4 without options")
    if _ETH.size + total > len(data):
        raise TruncatedControl(f"in-band frame: IPv4 length {total} > {len(data) - _ETH.size} bytes")
    t = _ETH.size + ihl
    sport, dport, seq, ack, doff, flags, _w, _c2, _u = _TCP.unpack_from(data, t)
    hlen = (doff >> 4) * 4
    if hlen < _TCP.size + OPTION.size or t + hlen > _ETH.size + total:
        raise GarbledControl(f"in-band segment: TCP header of {hlen} bytes")
    if flags & 0x3F != ACK:
        raise GarbledControl(f"in-band segment: flags {flags:#04x} (only ACK)")
    kind, length, exid, version, oflags, reserved = OPTION.unpack_from(data, t + _TCP.size)
    if (kind, length, exid) != (OPTION_KIND, OPTION_LEN, EXID):
        raise GarbledControl(f"in-band segment: first option {kind}/{length}/{exid:#06x}")
    if version != VERSION:
        raise UnknownVersion(f"in-band option version {version} (this agent speaks {VERSION})")
    if oflags & ~(LEFTWARD | RELAY) or reserved:
        raise GarbledControl(f"in-band option: flags {oflags:#04x}, reserved {reserved}")
    five = FiveTuple(int.from_bytes(src, "big"), int.from_bytes(dst, "big"), sport, dport, TCP)
    body = bytes(data[t + hlen : _ETH.size + total])
    return Segment(five, bool(oflags & LEFTWARD), seq, ack, body, bool(oflags & RELAY))


class SeqBook:
    """Per direction of a subsession (its five-tuple as this agent sees it): the sequence and
    acknowledgment numbers an in-band segment in that direction carries."""

    def __init__(self, limit: int = MAX_TUPLES) -> None:
        self.limit = limit
        self._base: OrderedDict[FiveTuple, tuple[int | None, int | None]] = OrderedDict()

    def _put(self, t: FiveTuple, seq: int | None, ack: int | None) -> None:
        old = self._base.pop(t, (None, None))
        self._base[t] = (old[0] if seq is None else seq & M32, old[1] if ack is None else ack & M32)
        while len(self._base) > self.limit:
            del self._base[next(iter(self._base))]

    def saw(self, t: FiveTuple, seq: int, ack: int | None) -> None:
        """A segment of the subsession crossed this agent on ``t`` (``ack`` None: no ACK flag)."""
        self._put(t, seq - BEHIND, None if ack is None else ack - BEHIND)
        self._put(t.reversed(), None if ack is None else ack - BEHIND, seq - BEHIND)

    def passed(self, seg: Segment) -> None:
        """An in-band segment came in on ``seg.tuple``: its numbers got through, so, mirrored,
        they are what a segment the other way carries (an answer's, the next request's)."""
        self._put(seg.tuple.reversed(), seg.ack, seg.seq)

    def numbers(self, t: FiveTuple, attempt: int) -> tuple[int, int]:
        """(seq, ack) for the ``attempt``-th transmission (from 1) of a request on ``t``: what is
        not known tries the other half on every other attempt; what is known stays, unless four
        attempts went unanswered (then it may be stale: both halves of both are tried)."""
        seq, ack = self._base.get(t, (None, None))
        k = attempt - 1
        if seq is not None and ack is not None:
            half = (k - 4) % 4 if k >= 4 else 0
        elif seq is None and ack is None:
            half = k % 4
        elif seq is None:
            half = k % 2
        else:
            half = (k % 2) << 1
        s = (0 if seq is None else seq) + (HALF if half & 1 else 0)
        a = (0 if ack is None else ack) + (HALF if half & 2 else 0)
        return s & M32, a & M32

    def __len__(self) -> int:
        return len(self._base)
