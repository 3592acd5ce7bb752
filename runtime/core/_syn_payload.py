"""The Dysco SYN payload (docs/protocol.md), encoded and decoded from one declaration.

The payload starts the TCP payload of a SYN on a subsession.  It names the session's
original five-tuple and the addresses the SYN still has to visit; a typed,
length-prefixed authentication tag closes it.  Whatever follows it (a TCP Fast Open
SYN's data) belongs to the session and is given back by :func:`decode`.

Every malformed payload raises a :class:`BadPayload` subclass; nothing else escapes
:func:`decode` for any input bytes.

Authentication (:mod:`dysco.runtime.core._auth`): with a key ring, :func:`encode` seals the payload
with a HMAC-SHA256 tag and :func:`decode` refuses any payload whose tag is missing or does not
verify (and, with a replay guard, any stale or repeated one), each failure under its own
``kind``.  Without a key ring only tag type NONE is written and accepted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from dysco.errors import PeerError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core._layout import Field, Layout, LayoutMismatch
from dysco.runtime.core._types import TCP, FiveTuple

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
    """No authentication: accepted only by agents without keys."""
    HMAC_SHA256 = 1
    """A stamp (sender, receiver, time) and a truncated HMAC-SHA256 (:mod:`dysco.runtime.core._auth`)."""


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


class PayloadBadMac(auth.BadMac, BadPayload):
    pass


class PayloadUnknownKey(auth.UnknownKey, BadPayload):
    pass


class PayloadMissingTag(auth.MissingTag, BadPayload):
    pass


class PayloadMisdirected(auth.Misdirected, BadPayload):
    pass


class PayloadStale(auth.Stale, BadPayload):
    pass


class PayloadReplayed(auth.Replayed, BadPayload):
    pass


AUTH_ERRORS: dict[type[auth.AuthError], type[BadPayload]] = {
    auth.BadMac: PayloadBadMac,
    auth.UnknownKey: PayloadUnknownKey,
    auth.MissingTag: PayloadMissingTag,
    auth.Misdirected: PayloadMisdirected,
    auth.Stale: PayloadStale,
    auth.Replayed: PayloadReplayed,
}
"""The authentication failures as payload errors (both ``BadPayload`` and ``auth.AuthError``)."""


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


def encode(
    p: SynPayload, keys: auth.KeyRing | None = None, *, sender: int = 0, receiver: int = 0, now: int = 0
) -> bytes:
    """The payload's bytes.  With ``keys``: sealed with the current key, stamped from ``sender``
    to ``receiver`` (``hops[0]``) at ``now`` (ns since the epoch); ``p.tag`` is ignored.
    Without: ``p.tag`` as it is."""
    if p.family not in SESSION:
        raise ValueError(f"address family {p.family} (4 or 6)")
    if len(p.hops) > MAX_HOPS:
        raise ValueError(f"{len(p.hops)} hops > {MAX_HOPS}")
    if keys is not None:  # the tag's size and header; its value follows the head
        p = replace(p, tag=Tag(TagType.HMAC_SHA256, keys.current, bytes(auth.TAG_SIZE)))
    tag = p.tag
    if len(tag.value) > MAX_TAG:
        raise ValueError(f"tag of {len(tag.value)} bytes > {MAX_TAG}")
    width = ADDRESS[p.family].size
    s = p.session
    parts = [
        HEADER.pack(
            {
                "version": VERSION,
                "family": p.family,
                "length": p.encoded_size(),
                "hops": len(p.hops),
            }
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
        TAG.pack({"type": tag.type, "key_id": tag.key_id, "length": len(tag.value)}),
    ]
    head = b"".join(parts)
    if keys is None:
        return head + tag.value
    return head + auth.tag_value(keys, auth.Stamp(sender, receiver, now), head)


def has_magic(data: bytes) -> bool:
    """True if ``data`` (a SYN's TCP payload) starts with the Dysco magic."""
    return len(data) >= 4 and int.from_bytes(data[:4], "big") == MAGIC


def _int(v: int | bytes) -> int:
    return v if isinstance(v, int) else int.from_bytes(v, "big")


def decode(
    data: bytes, keys: auth.KeyRing | None = None, guard: auth.ReplayGuard | None = None, *, now: int = 0
) -> tuple[SynPayload, bytes]:
    """The payload at the start of ``data`` and the bytes after it (the SYN's own data).

    With ``keys`` the payload must carry a HMAC-SHA256 tag that verifies under one of them; with
    ``guard`` too its stamp must name the guard's agent, lie within the window around ``now``
    and not repeat one accepted before (the guard then remembers it).  Without ``keys`` only
    tag type NONE is accepted."""
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
    tag_type = _int(tag_head["type"])
    _check_tag(tag_type, tag_len, keys is not None)
    tag = Tag(tag_type, _int(tag_head["key_id"]), bytes(data[off:length]))
    if keys is not None:
        try:
            auth.verify(keys, tag.key_id, bytes(data[: length - auth.MAC_SIZE]), tag.value, guard, now)
        except auth.AuthError as exc:
            raise AUTH_ERRORS[type(exc)](str(exc)) from None
    session = FiveTuple(
        _int(sess["src"]), _int(sess["dst"]), _int(sess["sport"]), _int(sess["dport"]), _int(sess["proto"])
    )
    return SynPayload(session, tuple(hops), family, tag), bytes(data[length:])


def _check_tag(tag_type: int, tag_len: int, keyed: bool) -> None:
    if tag_type == TagType.NONE:
        if tag_len:
            raise GarbledPayload("tag type NONE with a value")
        if keyed:
            raise PayloadMissingTag("no MAC, and this agent requires one")
    elif tag_type == TagType.HMAC_SHA256:
        if not keyed:
            raise GarbledPayload("tag type 1 (HMAC-SHA256), but this agent has no keys")
        if tag_len != auth.TAG_SIZE:
            raise GarbledPayload(f"HMAC-SHA256 tag of {tag_len} bytes (not {auth.TAG_SIZE})")
    else:
        raise GarbledPayload(f"tag type {tag_type} unknown")
