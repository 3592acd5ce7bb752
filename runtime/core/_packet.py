"""Ethernet/IPv4/TCP frames as the agent reads and writes them, and the Dysco tag option.

Only what the agent needs: parse a frame into a :class:`TcpFrame`, change fields, and
serialise it again with lengths and checksums recomputed.  Anything that is not a well-formed
TCP segment in IPv4 in Ethernet raises :class:`MalformedFrame` (a :class:`PeerError`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from dysco.errors import PeerError
from dysco.runtime.core._types import TCP, FiveTuple

ETH = struct.Struct("!6s6sH")
IPV4 = struct.Struct("!BBHHHBBH4s4s")
TCPH = struct.Struct("!HHIIBBHHH")
ETHERTYPE_IPV4 = 0x0800

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

TAG_KIND = 253
TAG_LEN = 8
MAX_OPTIONS = 40


class MalformedFrame(PeerError):
    """Not a TCP segment the agent can read."""


@dataclass(frozen=True, slots=True)
class TcpFrame:
    eth_dst: bytes
    eth_src: bytes
    src: int
    dst: int
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int = 65535
    options: bytes = b""
    payload: bytes = b""
    ttl: int = 64
    ident: int = 0
    tos: int = 0
    urgent: int = 0

    @property
    def five_tuple(self) -> FiveTuple:
        return FiveTuple(self.src, self.dst, self.sport, self.dport, TCP)

    def with_tuple(self, t: FiveTuple) -> TcpFrame:
        return replace(self, src=t.src, dst=t.dst, sport=t.sport, dport=t.dport)

    @property
    def syn_only(self) -> bool:
        return self.flags & (SYN | ACK) == SYN

    def seg_len(self) -> int:
        """Sequence space the segment occupies (payload, SYN and FIN count one each)."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def to_bytes(self) -> bytes:
        if len(self.options) % 4 or len(self.options) > MAX_OPTIONS:
            raise ValueError(f"TCP options of {len(self.options)} bytes")
        doff = 5 + len(self.options) // 4
        tcp_len = doff * 4 + len(self.payload)
        total = 20 + tcp_len
        src = self.src.to_bytes(4, "big")
        dst = self.dst.to_bytes(4, "big")
        ip = IPV4.pack(0x45, self.tos, total, self.ident, 0x4000, self.ttl, TCP, 0, src, dst)
        ip = ip[:10] + checksum16(ip).to_bytes(2, "big") + ip[12:]
        tcp = (
            TCPH.pack(
                self.sport, self.dport, self.seq, self.ack, doff << 4, self.flags, self.window, 0, self.urgent
            )
            + self.options
            + self.payload
        )
        pseudo = src + dst + struct.pack("!BBH", 0, TCP, tcp_len)
        tcp = tcp[:16] + checksum16(pseudo + tcp).to_bytes(2, "big") + tcp[18:]
        return ETH.pack(self.eth_dst, self.eth_src, ETHERTYPE_IPV4) + ip + tcp


def checksum16(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def parse(frame: bytes) -> TcpFrame:
    if len(frame) < ETH.size + IPV4.size:
        raise MalformedFrame(f"{len(frame)} bytes: too short for Ethernet + IPv4")
    eth_dst, eth_src, etype = ETH.unpack_from(frame)
    if etype != ETHERTYPE_IPV4:
        raise MalformedFrame(f"ethertype {etype:#06x} is not IPv4")
    vihl, tos, total, ident, _frag, ttl, proto, _c, src, dst = IPV4.unpack_from(frame, ETH.size)
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4 or ihl < 20:
        raise MalformedFrame(f"IPv4 version/IHL byte {vihl:#04x}")
    if proto != TCP:
        raise MalformedFrame(f"IP protocol {proto} is not TCP")
    end = ETH.size + total
    if total < ihl + TCPH.size or end > len(frame):
        raise MalformedFrame(f"IPv4 total length {total} does not fit the frame of {len(frame)} bytes")
    t = ETH.size + ihl
    sport, dport, seq, ack, off, flags, window, _c2, urgent = TCPH.unpack_from(frame, t)
    doff = (off >> 4) * 4
    if doff < 20 or t + doff > end:
        raise MalformedFrame(f"TCP data offset {doff}")
    return TcpFrame(
        eth_dst,
        eth_src,
        int.from_bytes(src, "big"),
        int.from_bytes(dst, "big"),
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
        bytes(frame[t + 20 : t + doff]),
        bytes(frame[t + doff : end]),
        ttl,
        ident,
        tos,
        urgent,
    )


def _walk(options: bytes) -> list[tuple[int, int, int]]:
    """``(kind, start, length)`` of every option; EOL ends the walk."""
    out = []
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            out.append((0, i, len(options) - i))
            break
        if kind == 1:
            out.append((1, i, 1))
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            raise MalformedFrame(f"TCP option {kind} at byte {i} runs past the option area")
        out.append((kind, i, options[i + 1]))
        i += options[i + 1]
    return out


def find_tag(options: bytes) -> int | None:
    """The Dysco tag carried in the option area, if any."""
    for kind, start, length in _walk(options):
        if kind == TAG_KIND and length == TAG_LEN:
            return int.from_bytes(options[start + 4 : start + 8], "big")
    return None


def add_tag(options: bytes, tag: int) -> bytes | None:
    """The option area with the tag appended (before any EOL), or None if it does not fit."""
    kept = b"".join(options[s : s + n] for k, s, n in _walk(options) if k not in (0, TAG_KIND))
    out = kept + bytes([TAG_KIND, TAG_LEN, 0, 0]) + tag.to_bytes(4, "big")
    out += b"\x01" * (-len(out) % 4)
    return out if len(out) <= MAX_OPTIONS else None


def strip_tag(options: bytes) -> bytes:
    """The option area without the Dysco tag, padded with NOPs to whole words."""
    parts = _walk(options)
    if not any(k == TAG_KIND for k, _, _ in parts):
        return options
    out = b"".join(options[s : s + n] for k, s, n in parts if k != TAG_KIND)
    return out + b"\x01" * (-len(out) % 4)
