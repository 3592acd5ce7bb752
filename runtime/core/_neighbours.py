"""Next-hop MAC addresses, learned from the frames an agent sees.

The frames the core makes itself (control messages, the new path's handshake, the segments of the
two-path phase) are built with :data:`UNADDRESSED` in both MAC fields; before they leave,
:meth:`Neighbours.address` gives them the host's own MAC as source and, as destination, the MAC
that frames from their IP destination last came from (or that the host itself sent frames to it
with), else the MAC of the last hop any frame from the network came from, else the MAC the host
last sent a frame to: on a routed network either is the gateway.  Frames the core passes on
(the host's SYN, a packet it splits) keep the MACs they have.

Learning: a frame from the network (port NET) was sent to the host's MAC by the neighbour toward
its IP source; a frame from the host (port HOST) was sent from the host's MAC to the neighbour
toward its IP destination, as the host's own neighbour table resolved it.  Broadcast and
multicast addresses are never learned.  The table holds at most ``limit`` addresses; a new one
past that evicts the one learned longest ago.
"""

from __future__ import annotations

from dysco.runtime.core._events import Port

UNADDRESSED = b"\x02\0\0\0\0\x0a"
"""Both MACs of a frame the core makes, until :meth:`Neighbours.address` fills them in."""
MAX_NEIGHBOURS = 4096
_IPV4 = b"\x08\x00"


def _unicast(mac: bytes) -> bool:
    return not mac[0] & 1


class Neighbours:
    """IPv4 address -> the MAC of the next hop toward it, the host's own MAC, the gateway's."""

    def __init__(self, limit: int = MAX_NEIGHBOURS) -> None:
        self.limit = limit
        self.by_ip: dict[int, bytes] = {}
        self.own: bytes | None = None
        self.gateway: bytes | None = None
        """The MAC the last frame from the network came from."""
        self.host_next: bytes | None = None
        """The MAC the host last sent a frame to (a host that has only sent so far)."""

    def learn(self, frame: bytes, port: Port) -> None:
        if len(frame) < 34 or frame[12:14] != _IPV4:
            return
        dst_mac, src_mac = frame[0:6], frame[6:12]
        if port is Port.NET and _unicast(src_mac):
            self.gateway = src_mac
            self._put(int.from_bytes(frame[26:30], "big"), src_mac)
            if _unicast(dst_mac):
                self.own = dst_mac
        elif port is Port.HOST and _unicast(src_mac):
            self.own = src_mac
            if _unicast(dst_mac):
                self.host_next = dst_mac
                self._put(int.from_bytes(frame[30:34], "big"), dst_mac)

    def _put(self, ip: int, mac: bytes) -> None:
        if self.by_ip.get(ip) == mac:
            return
        self.by_ip.pop(ip, None)
        if len(self.by_ip) >= self.limit:
            del self.by_ip[next(iter(self.by_ip))]
        self.by_ip[ip] = mac

    def address(self, frame: bytes) -> bytes:
        """``frame`` with its MACs filled in if the core made it and something has been learned."""
        if frame[0:6] != UNADDRESSED or len(frame) < 34 or frame[12:14] != _IPV4:
            return frame
        dst = self.by_ip.get(int.from_bytes(frame[30:34], "big"), self.gateway or self.host_next)
        if dst is None:
            return frame
        return dst + (self.own or frame[6:12]) + frame[12:]
