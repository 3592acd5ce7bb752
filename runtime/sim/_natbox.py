"""An agentless NAT on the simulated network: a home or cloud NAT in front of some hosts.

It behaves as Linux's conntrack NAT (iptables MASQUERADE, ``nf_conntrack_tcp_be_liberal`` 0) in
what matters to Dysco's control messages, as measured on Linux 6.18 (docs/protocol.md §4a):

- A flow from inside gets a mapping (the NAT's address, the inside port when free, else the next
  free one); only packets of a mapped flow come back in.  A UDP datagram or TCP segment from
  outside that belongs to no mapping is dropped (``unsolicited``): nothing reaches the inside
  hosts' addresses from outside at all (they are private).
- TCP: per direction, the highest sequence number sent (``end``).  A segment whose sequence
  number lies ahead of its direction's ``end`` by more than ``WINDOW`` or whose acknowledgment
  number lies ahead of the other direction's ``end`` is INVALID: not translated, dropped
  (``invalid``).  One behind in both is translated (conntrack "ignores" it) and leaves the state
  as it is; only segments in the window move ``end``.  Before the other direction's first
  segment its numbers are not checked (conntrack's SYN_SENT).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field, replace

from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import TCP, FiveTuple
from dysco.runtime.sim._net import Network

UDP = 17
WINDOW = 1 << 20
"""How far ahead of what was sent a segment may start (the receiver's window, generously)."""
HALF = 1 << 31
MAX_KEPT = 1000


def _ahead(a: int, b: int) -> bool:
    """``a`` is after ``b`` in sequence space (RFC 1982)."""
    d = (a - b) % (1 << 32)
    return 0 < d < HALF


@dataclass(slots=True)
class Flow:
    inside: FiveTuple
    """The flow as the inside host sends it."""
    outside: FiveTuple
    """The same flow as it leaves the NAT."""
    end: list[int | None] = field(default_factory=lambda: [None, None])
    """TCP: per direction (0 out, 1 in) the highest sequence number sent plus the length."""


class NatBox:
    """Attach with :meth:`Network.attach` at ``public``; the inside hosts attach ``via`` it and
    behind it (:meth:`Network.attach`'s ``behind``)."""

    def __init__(self, net: Network, public: int, inside: set[int]) -> None:
        self.net = net
        self.public = public
        self.inside = inside
        self.flows: dict[tuple[int, FiveTuple], Flow] = {}
        """(protocol, the flow as an inside host sends it) -> its mapping."""
        self.back: dict[tuple[int, int, int, int], Flow] = {}
        """(protocol, NAT port, remote address, remote port) -> the flow."""
        self.counts: Counter[str] = Counter()
        self.invalid: list[bytes] = []
        """The first INVALID segments (at most ``MAX_KEPT``), for a test to look at."""

    def receive(self, frame: bytes) -> None:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return
        proto = frame[23]
        src = int.from_bytes(frame[26:30], "big")
        if proto not in (TCP, UDP):
            self.counts["other"] += 1
        elif src in self.inside:
            self._out(proto, frame)
        else:
            self._in(proto, frame)

    # ---- outbound --------------------------------------------------------------------------------

    def _out(self, proto: int, frame: bytes) -> None:
        t = _tuple(proto, frame)
        flow = self.flows.get((proto, t))
        if flow is None:
            if proto == TCP and not pk.parse(frame).syn_only:
                self.counts["invalid"] += 1  # conntrack picks mid-stream flows up; we need not
                return
            port = t.sport
            while (proto, port, t.dst, t.dport) in self.back:
                port = port % 65535 + 1
            flow = Flow(t, FiveTuple(self.public, t.dst, port, t.dport, proto))
            self.flows[(proto, t)] = flow
            self.back[(proto, port, t.dst, t.dport)] = flow
        if proto == TCP and not self._tracked(flow, 0, frame):
            return
        self.counts["out"] += 1
        self.net.send(self.public, _rewrite(proto, frame, flow.outside))

    # ---- inbound ---------------------------------------------------------------------------------

    def _in(self, proto: int, frame: bytes) -> None:
        t = _tuple(proto, frame)
        flow = self.back.get((proto, t.dport, t.src, t.sport)) if t.dst == self.public else None
        if flow is None:
            self.counts["unsolicited"] += 1
            return
        if proto == TCP and not self._tracked(flow, 1, frame):
            return
        self.counts["in"] += 1
        self.net.send(self.public, _rewrite(proto, frame, flow.inside.reversed()))

    def _tracked(self, flow: Flow, d: int, frame: bytes) -> bool:
        f = pk.parse(frame)
        end, other = flow.end[d], flow.end[1 - d]
        ahead = end is not None and _ahead(f.seq, (end + WINDOW) & 0xFFFFFFFF)
        if ahead or (f.flags & pk.ACK and other is not None and _ahead(f.ack, other)):
            self.counts["invalid"] += 1
            if len(self.invalid) < MAX_KEPT:
                self.invalid.append(frame)
            return False
        if end is not None and _ahead(end, (f.seq + WINDOW) & 0xFFFFFFFF):
            self.counts["ignored"] += 1  # behind the window: translated, the state stays
            return True
        new_end = (f.seq + f.seg_len()) & 0xFFFFFFFF
        if end is None or _ahead(new_end, end):
            flow.end[d] = new_end
        return True


def _tuple(proto: int, frame: bytes) -> FiveTuple:
    ihl = (frame[14] & 15) * 4
    sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
    src, dst = int.from_bytes(frame[26:30], "big"), int.from_bytes(frame[30:34], "big")
    return FiveTuple(src, dst, sport, dport, proto)


def _rewrite(proto: int, frame: bytes, t: FiveTuple) -> bytes:
    """``frame`` with the addresses and ports of ``t``, checksums recomputed."""
    if proto == TCP:
        return replace(pk.parse(frame), src=t.src, dst=t.dst, sport=t.sport, dport=t.dport).to_bytes()
    ihl = (frame[14] & 15) * 4
    u = 14 + ihl
    total = int.from_bytes(frame[16:18], "big")
    ip = bytearray(frame[14:u])
    ip[12:16], ip[16:20] = t.src.to_bytes(4, "big"), t.dst.to_bytes(4, "big")
    ip[10:12] = b"\0\0"
    ip[10:12] = pk.checksum16(bytes(ip)).to_bytes(2, "big")
    udp = bytearray(frame[u : 14 + total])
    udp[0:4] = struct.pack("!HH", t.sport, t.dport)
    udp[6:8] = b"\0\0"
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, UDP, len(udp))
    udp[6:8] = (pk.checksum16(pseudo + bytes(udp)) or 0xFFFF).to_bytes(2, "big")
    return frame[:14] + bytes(ip) + bytes(udp)
