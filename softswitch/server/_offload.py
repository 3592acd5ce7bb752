"""Offloaded packets that reach user space from the kernel: what a NIC's TSO and checksum
offload would have finished, finished in software.

With TSO/GSO and checksum offload on (as a real host has them), a packet the ebpf back end
punts to the CPU port may be a GSO packet of up to 64 KB that the kernel would only have cut
into MTU-sized segments on a real wire, and its TCP checksum field may hold only the pseudo
header's sum (CHECKSUM_PARTIAL: the device was to finish it).  An AF_PACKET socket with
``PACKET_VNET_HDR`` says so in a ``virtio_net_hdr`` before each frame (``linux/virtio_net.h``;
little-endian on an AF_PACKET socket of a little-endian host):

    flags u8 | gso_type u8 | hdr_len u16 | gso_size u16 | csum_start u16 | csum_offset u16

:func:`finish` turns such a frame into the frames a NIC would have sent: IPv4/TCP cut at
``gso_size`` bytes of payload (sequence numbers, IP ids and lengths advanced, FIN and PSH on
the last segment, CWR on the first), and every TCP checksum computed in full.  The agent then
sees what it would see behind a NIC without offloads, and what it sends back fits the MTU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VNET_HDR = struct.Struct("<BBHHHH")
VNET_HDR_LEN = VNET_HDR.size  # 10
F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_ECN = 0, 1, 0x80
ETH_HLEN = 14
_FIN, _PSH, _CWR = 0x01, 0x08, 0x80


class OffloadError(ValueError):
    """A frame the header says is offloaded that this module cannot finish."""


@dataclass(frozen=True, slots=True)
class VnetHdr:
    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int

    @property
    def offloaded(self) -> bool:
        return bool(self.flags & F_NEEDS_CSUM) or self.gso_type != GSO_NONE

    @classmethod
    def split(cls, data: bytes) -> tuple[VnetHdr, bytes]:
        """The header and the frame behind it."""
        if len(data) < VNET_HDR_LEN:
            raise OffloadError(f"{len(data)} bytes: shorter than a virtio_net_hdr")
        return cls(*VNET_HDR.unpack_from(data)), data[VNET_HDR_LEN:]


def csum16(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The one's-complement sum of ``data`` (padded with a zero byte), folded, not inverted."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total: int = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _tcp_checksum(ip: bytes | bytearray, segment: bytearray) -> int:
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, 6, len(segment))
    return ~csum16(segment, csum16(pseudo)) & 0xFFFF


def _ip_checksum(header: bytearray) -> int:
    header[10:12] = b"\0\0"
    return ~csum16(header) & 0xFFFF


def finish(hdr: VnetHdr, frame: bytes, skip: int = 0) -> list[bytes]:
    """The frames a NIC would have sent for ``frame`` (``skip`` leading bytes, e.g. a controller
    header, are copied to every result unchanged).  A frame the header does not call offloaded
    comes back as it is; an offloaded one that is not Ethernet + IPv4 + TCP raises
    :class:`OffloadError`, as does a GSO type other than TCPv4."""
    if not hdr.offloaded:
        return [frame]
    prefix, eth = frame[:skip], frame[skip:]
    ip_at = ETH_HLEN
    if len(eth) < ip_at + 20 or eth[12:14] != b"\x08\x00" or eth[ip_at] >> 4 != 4:
        raise OffloadError("an offloaded frame that is not IPv4 over Ethernet")
    ihl = (eth[ip_at] & 0x0F) * 4
    tcp_at = ip_at + ihl
    if eth[ip_at + 9] != 6 or len(eth) < tcp_at + 20:
        raise OffloadError("an offloaded IPv4 packet that is not TCP")
    total = struct.unpack_from("!H", eth, ip_at + 2)[0]
    if ip_at + total > len(eth) or total < ihl + 20:
        raise OffloadError(f"IPv4 total length {total} does not fit the {len(eth)}-byte frame")
    doff = (eth[tcp_at + 12] >> 4) * 4
    data_at = tcp_at + doff
    if doff < 20 or data_at > ip_at + total:
        raise OffloadError(f"TCP data offset {doff} does not fit the packet")
    payload = eth[data_at : ip_at + total]
    if hdr.gso_type & ~GSO_ECN not in (GSO_NONE, GSO_TCPV4):
        raise OffloadError(f"GSO type {hdr.gso_type:#x} (only TCPv4 is segmented)")
    mss = hdr.gso_size if hdr.gso_type != GSO_NONE and hdr.gso_size else max(len(payload), 1)
    ip0 = bytes(eth[ip_at:tcp_at])
    tcp0 = bytes(eth[tcp_at:data_at])
    seq, flags = struct.unpack_from("!I", tcp0, 4)[0], tcp0[13]
    ident = struct.unpack_from("!H", ip0, 4)[0]
    chunks = [payload[i : i + mss] for i in range(0, len(payload), mss)] or [b""]
    out: list[bytes] = []
    offset = 0
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        ip = bytearray(ip0)
        struct.pack_into("!H", ip, 2, ihl + doff + len(chunk))
        struct.pack_into("!H", ip, 4, (ident + n) & 0xFFFF)
        struct.pack_into("!H", ip, 10, _ip_checksum(ip))
        tcp = bytearray(tcp0)
        struct.pack_into("!I", tcp, 4, (seq + offset) & 0xFFFFFFFF)
        keep = flags & ~((0 if last else _FIN | _PSH) | (0 if n == 0 else _CWR))
        tcp[13] = keep
        segment = tcp + chunk
        struct.pack_into("!H", segment, 16, 0)
        struct.pack_into("!H", segment, 16, _tcp_checksum(ip, segment))
        out.append(bytes(prefix) + bytes(eth[:ip_at]) + bytes(ip) + bytes(segment))
        offset += len(chunk)
    return out
