"""Reading the TCP SYNs of a pcap file (and writing one, for tests and examples).

Classic pcap only (what ``tcpdump -w`` writes): either byte order, microsecond or
nanosecond timestamps, link types Ethernet (1) and raw IPv4 (101, and DLT_RAW 12/14).
A frame counts as a SYN when it is IPv4, not a later fragment, TCP, with SYN set and ACK
clear: what the NIC's classifier looks at.  Errors name the file and the byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from dysco.compiler.evaluate import Syn
from dysco.errors import UserError

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond timestamps
    b"\xa1\xb2\x3c\x4d": ">",
}
_PCAPNG = b"\x0a\x0d\x0d\x0a"
LINKTYPE_ETHERNET = 1
_RAW = (101, 12, 14)
_ETH_IPV4 = 0x0800
_TCP = 6
_SYN, _ACK = 0x02, 0x10


class PcapError(UserError):
    """The file is not a pcap file this reader takes."""


def syn_fields(frame: bytes, linktype: int = LINKTYPE_ETHERNET) -> Syn | None:
    """The classifier's fields of ``frame`` if it is a TCP SYN without ACK over IPv4, else None."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14 or frame[12:14] != b"\x08\x00":
            return None
        ip = 14
    elif linktype in _RAW:
        ip = 0
    else:
        return None
    if len(frame) < ip + 20 or frame[ip] >> 4 != 4:
        return None
    ihl = (frame[ip] & 0x0F) * 4
    frag = struct.unpack_from("!H", frame, ip + 6)[0] & 0x1FFF
    if ihl < 20 or frame[ip + 9] != _TCP or frag:
        return None
    tcp = ip + ihl
    if len(frame) < tcp + 14:
        return None
    flags = frame[tcp + 13]
    if not flags & _SYN or flags & _ACK:
        return None
    src, dst = struct.unpack_from("!II", frame, ip + 12)
    sport, dport = struct.unpack_from("!HH", frame, tcp)
    return Syn(src, dst, sport, dport)


def read_frames(path: str | Path) -> tuple[int, Iterator[bytes]]:
    """The link type and the frames of a classic pcap file, in file order."""
    try:
        f = Path(path).open("rb")  # noqa: SIM115 - closed by the generator
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    head = f.read(24)
    if head[:4] == _PCAPNG:
        f.close()
        raise PcapError(f"{path}: a pcapng file; convert it with 'tcpdump -r {path} -w out.pcap'")
    order = _MAGICS.get(head[:4])
    if order is None or len(head) < 24:
        f.close()
        raise PcapError(f"{path}: not a pcap file (magic {head[:4].hex() or 'missing'})")
    linktype = struct.unpack_from(order + "I", head, 20)[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET and linktype not in _RAW:
        f.close()
        raise PcapError(f"{path}: link type {linktype} is not Ethernet (1) or raw IPv4 (101)")
    return linktype, _records(f, str(path), order)


def _records(f: BinaryIO, path: str, order: str) -> Iterator[bytes]:
    record = struct.Struct(order + "IIII")
    offset = 24
    with f:
        while True:
            head = f.read(16)
            if not head:
                return
            if len(head) < 16:
                raise PcapError(f"{path}: offset {offset}: the file ends inside a record header")
            _, _, caplen, _ = record.unpack(head)
            data = f.read(caplen)
            if len(data) < caplen:
                raise PcapError(f"{path}: offset {offset}: the file ends inside a {caplen}-byte frame")
            offset += 16 + caplen
            yield data


def read_syns(path: str | Path) -> Iterator[tuple[int, Syn]]:
    """(packet number from 1, fields) of each TCP SYN of the file, in file order.  A file
    that is not a pcap file is reported here; a cut one when the reading gets there."""
    linktype, frames = read_frames(path)
    return _syns(linktype, frames)


def _syns(linktype: int, frames: Iterator[bytes]) -> Iterator[tuple[int, Syn]]:
    for number, frame in enumerate(frames, start=1):
        syn = syn_fields(frame, linktype)
        if syn is not None:
            yield number, syn


def write_pcap(path: str | Path, frames: Iterable[bytes], linktype: int = LINKTYPE_ETHERNET) -> None:
    """A classic pcap file (little endian, microsecond timestamps)."""
    with Path(path).open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", i, 0, len(frame), len(frame)))
            f.write(frame)
