"""The Dysco SYN payload (docs/protocol.md), encoded and decoded from one declaration.

The payload starts the TCP payload of a SYN on a subsession.  It names the session's
original five-tuple and the addresses the SYN still has to visit; a typed,
length-prefixed authentication tag closes it.  Whatever follows it (a TCP Fast Open
SYN's data) belongs to the session and is given back by :func:`decode`.

Every malformed payload raises a :class:`BadPayload` subclass; nothing else escapes
:func:`decode` for any input bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dysco.errors import PeerError
from dysco.runtime._layout import Field, Layout, LayoutMismatch
from dysco.runtime._types import TCP, FiveTuple

MAGIC = 0x44595343
"""``DYSC``: the first four bytes of every Dysco SYN payload (p4src checks them too)."""
VERSION = 1
MAX_HOPS = 16
MAX_TAG = 64

HEADER = Layout(
    Field("magic", "I", const=MAGIC),
    Field("version", "B"),
    Field("family", "B"),
    Field("length", "H"),
    Field("hops", "B"),
    Field("flags", "B", const=0),
    Field("reserved", "H", const=0),
)
SESSION = {
    4: Layout(
        Field("src", "4s"),
        Field("dst", "4s"),
        Field("sport", "H"),
        Field("dport", "H"),
        Field("proto", "B"),
        Field("pad", "3s", const=b"\0\0\0"),
    ),
    6: Layout(
        Field("src", "16s"),
        Field("dst", "16s"),
        Field("sport", "H"),
        Field("dport", "H"),
        Field("proto", "B"),
        Field("pad", "3s", const=b"\0\0\0"),
    ),
}
ADDRESS = {4: Layout(Field("addr", "4s")), 6: Layout(Field("addr", "16s"))}
TAG = Layout(Field("type", "B"), Field("key_id", "B"), Field("length", "H"))


class TagType(enum.IntEnum):
    NONE = 0
    """No authentication (version 1 knows no other type; a later version adds a MAC)."""


class BadPayload(PeerError):
    """A SYN carried a Dysco magic but not a payload this agent accepts.  ``kind`` names the
    counter it is counted under."""

    kind = "garbled"


class TruncatedPayload(BadPayload):
    kind = "truncated"


class OversizedPayload(BadPayload):
    kind = "oversized"


class GarbledPayload(BadPayload):
    kind = "garbled"


class UnknownVersion(BadPayload):
    kind = "unknown_version"


@dataclass(frozen=True, slots=True)
class Tag:
    type: int = TagType.NONE
    key_id: int = 0
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class SynPayload:
    """The decoded payload: the session's five-tuple as the left end's host sent it and the
    addresses still to visit, the receiver of this SYN first, the chain's right end last."""

    session: FiveTuple
    hops: tuple[int, ...]
    family: int = 4
    tag: Tag = Tag()

    def encoded_size(self) -> int:
        width = ADDRESS[self.family].size
        fixed = HEADER.size + SESSION[self.family].size + TAG.size
        return fixed + width * len(self.hops) + len(self.tag.value)


def _addr_bytes(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


def encode(p: SynPayload) -> bytes:
    if p.family not in SESSION:
        raise ValueError(f"address family {p.family} (4 or 6)")
    if len(p.hops) > MAX_HOPS:
        raise ValueError(f"{len(p.hops)} hops > {MAX_HOPS}")
    if len(p.tag.value) > MAX_TAG:
        raise ValueError(f"tag of {len(p.tag.value)} bytes > {MAX_TAG}")
    width = ADDRESS[p.family].size
    s = p.session
    parts = [
        HEADER.pack(
            {"version": VERSION, "family": p.family, "length": p.encoded_size(), "hops": len(p.hops)}
        ),
        SESSION[p.family].pack(
            {
                "src": _addr_bytes(s.src, width),
                "dst": _addr_bytes(s.dst, width),
                "sport": s.sport,
                "dport": s.dport,
                "proto": s.proto,
            }
        ),
        *(ADDRESS[p.family].pack({"addr": _addr_bytes(h, width)}) for h in p.hops),
        TAG.pack({"type": p.tag.type, "key_id": p.tag.key_id, "length": len(p.tag.value)}),
        p.tag.value,
    ]
    return b"".join(parts)


def has_magic(data: bytes) -> bool:
    """True if ``data`` (a SYN's TCP payload) starts with the Dysco magic."""
    return len(data) >= 4 and int.from_bytes(data[:4], "big") == MAGIC


def _int(v: int | bytes) -> int:
    return v if isinstance(v, int) else int.from_bytes(v, "big")


def decode(data: bytes) -> tuple[SynPayload, bytes]:
    """The payload at the start of ``data`` and the bytes after it (the SYN's own data)."""
    if len(data) < 4:
        raise TruncatedPayload(f"{len(data)} bytes, no room for the magic")
    if len(data) < HEADER.size:
        raise TruncatedPayload(f"{len(data)} bytes < header of {HEADER.size}")
    try:
        head = HEADER.unpack(data)
    except LayoutMismatch as exc:
        if exc.field == "magic":
            raise GarbledPayload("no Dysco magic") from None
        raise GarbledPayload(f"header field {exc.field} must be 0, is {exc.value!r}") from None
    if head["version"] != VERSION:
        raise UnknownVersion(f"version {_int(head['version'])} (this agent speaks {VERSION})")
    family = _int(head["family"])
    if family not in SESSION:
        raise GarbledPayload(f"address family {family} (4 or 6)")
    nhops = _int(head["hops"])
    if nhops > MAX_HOPS:
        raise OversizedPayload(f"{nhops} hops > {MAX_HOPS}")
    if nhops == 0:
        raise GarbledPayload("no hops: the receiver must be on the list")
    length = _int(head["length"])
    width = ADDRESS[family].size
    fixed = HEADER.size + SESSION[family].size + width * nhops + TAG.size
    if length > fixed + MAX_TAG:
        raise OversizedPayload(f"length {length} > {fixed + MAX_TAG} for {nhops} hops")
    if length < fixed:
        raise GarbledPayload(f"length {length} < {fixed} needed for {nhops} hops")
    if len(data) < length:
        raise TruncatedPayload(f"{len(data)} bytes < length {length}")
    off = HEADER.size
    try:
        sess = SESSION[family].unpack(data, off)
    except LayoutMismatch as exc:
        raise GarbledPayload(f"session field {exc.field} must be 0") from None
    off += SESSION[family].size
    if sess["proto"] != TCP:
        raise GarbledPayload(f"session protocol {_int(sess['proto'])} (only TCP)")
    hops = []
    for _ in range(nhops):
        hops.append(_int(ADDRESS[family].unpack(data, off)["addr"]))
        off += width
    tag_head = TAG.unpack(data, off)
    off += TAG.size
    tag_len = _int(tag_head["length"])
    if off + tag_len != length:
        raise GarbledPayload(f"tag length {tag_len} disagrees with payload length {length}")
    if tag_head["type"] != TagType.NONE:
        raise GarbledPayload(f"tag type {_int(tag_head['type'])} unknown")
    if tag_len:
        raise GarbledPayload("tag type NONE with a value")
    session = FiveTuple(
        _int(sess["src"]), _int(sess["dst"]), _int(sess["sport"]), _int(sess["dport"]), _int(sess["proto"])
    )
    payload = SynPayload(session, tuple(hops), family, Tag(_int(tag_head["type"]), _int(tag_head["key_id"])))
    return payload, bytes(data[length:])
