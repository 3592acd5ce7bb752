"""Dysco control messages (docs/protocol.md §4), encoded and decoded from one declaration.

Control messages travel as UDP datagrams between agents (source and destination port: the
control port, 9797), hop by hop along a session's old path or directly between the two
anchors of a reconfiguration.  Every message names the reconfiguration (the left anchor's
address and its reconfiguration id), the subsession it crosses, the session as each anchor
sees it, the accumulated sequence deltas, a value whose meaning depends on the type, the new
middleboxes, and a typed, length-prefixed authentication tag.

Every malformed datagram raises a :class:`BadControl` subclass; nothing else escapes
:func:`decode` for any input bytes.

Authentication as for the SYN payload (:mod:`dysco.runtime.core._auth`): with a key ring,
:func:`encode` seals the message (a HMAC-SHA256 tag stamped from sender to receiver) and
:func:`decode` refuses a message without a valid tag, and with a replay guard a stale,
repeated or misdirected one; without keys only tag type NONE is written and accepted.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace

from dysco.errors import PeerError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core._layout import Field, Layout, LayoutMismatch
from dysco.runtime.core._neighbours import UNADDRESSED
from dysco.runtime.core._packet import checksum16
from dysco.runtime.core._syn_payload import MAX_HOPS, MAX_TAG, TAG, Tag, TagType
from dysco.runtime.core._types import TCP, FiveTuple

__all__ = [
    "FAILED",
    "FAILOVER",
    "MIGRATE",
    "Kind",
    "Message",
    "Status",
    "Tag",
    "around",
    "decode",
    "encode",
    "parse_udp",
    "udp_frame",
]

MAGIC = 0x44595352
"""``DYSR``: the first four bytes of every control message."""
VERSION = 1

HEADER = Layout(
    Field("magic", "I", const=MAGIC),
    Field("version", "B"),
    Field("type", "B"),
    Field("family", "B", const=4),
    Field("status", "B"),
    Field("length", "H"),
    Field("hops", "B"),
    Field("reserved", "B", const=0),
    Field("msg_id", "I"),
    Field("rid", "I"),
    Field("left_anchor", "4s"),
    Field("right_anchor", "4s"),
)
TUPLE = Layout(
    Field("src", "4s"),
    Field("dst", "4s"),
    Field("sport", "H"),
    Field("dport", "H"),
    Field("proto", "B"),
    Field("pad", "3s", const=b"\0\0\0"),
)
"""A five-tuple (16 bytes); all zero means "not given"."""
DELTAS = Layout(
    Field("delta_fwd", "I"),
    Field("delta_rev", "I"),
    Field("value", "I"),
    Field("ts_fwd", "I"),
    Field("ts_rev", "I"),
    Field("ws_fwd_from", "B"),
    Field("ws_fwd_to", "B"),
    Field("ws_rev_from", "B"),
    Field("ws_rev_to", "B"),
)
"""Sequence deltas, the type's value, and the option translations a splice adds (timestamp
deltas, window scale shifts), per direction."""
ADDRESS = Layout(Field("addr", "4s"))
STATE = Layout(Field("state_length", "H"))
"""STATE_EXPORT and STATE_IMPORTED only: the length of the state bytes that follow it."""
MAX_STATE = 1024
"""State bytes one message carries at most (the datagram stays within one Ethernet frame)."""
MIGRATE = 1
"""REQUEST_LOCK and ACK_LOCK ``value`` bit: the segment's one old middlebox has a state hook, its
state for the session moves to the one new middlebox before either anchor switches."""
FAILED = 2
"""``value`` bit of REQUEST_LOCK (and the ACK_LOCK / NACK_LOCK repeating it), CANCEL_LOCK, TEARDOWN
and DELEGATE: the one hop between the anchors is dead (its host is gone).  The message goes from
anchor to anchor directly, and ``sub`` names the dead hop and the right anchor,
``(dead, right_anchor, 0, 0, 0)``: nobody alive knows the dead hop's subsessions' ports."""
FAILOVER = 4
"""DELEGATE ``value`` bit: the edit is of the receiver's right neighbour alone, and if that never
answers the REQUEST_LOCK the receiver goes around it (as with FAILED)."""
EXPORT, TRANSFER = 0, 1
"""STATE_EXPORT ``value``: export the state to ``hops[0]`` (from the left anchor to the old
middlebox), or import the state bytes (from the old middlebox to the new one)."""
TUPLES = ("sub", "left_session", "right_session")
FIXED = HEADER.size + TUPLE.size * len(TUPLES) + DELTAS.size + TAG.size


class Kind(enum.IntEnum):
    REQUEST_LOCK = 1
    """Left to right on the old path: lock the subsession the receiver is the left end of."""
    ACK_LOCK = 2
    """Right to left: the whole segment is locked (``delta_rev`` accumulated on the way)."""
    NACK_LOCK = 3
    CANCEL_LOCK = 4
    """Left to right on the old path: unlock, the session stays on the old path."""
    ACK_CANCEL = 5
    RIGHT_REQUEST = 6
    """To the agent on the sender's left: start a reconfiguration (``hops``: the new middleboxes)."""
    ACK_RIGHT = 7
    SWITCH = 8
    """Anchor to anchor: I switched to the new path; ``value`` = my first new sequence number."""
    ACK_SWITCH = 9
    DONE = 10
    """Right anchor to left anchor: my side of the two-path phase is finished."""
    ACK_DONE = 11
    TEARDOWN = 12
    """Left to right on the old path: free the old path's state and entries."""
    ACK_TEARDOWN = 13
    STATE_EXPORT = 14
    """Left anchor to the old middlebox (``value`` EXPORT): export the session's state to
    ``hops[0]``; the old middlebox to the new one (``value`` TRANSFER): import the state bytes."""
    STATE_IMPORTED = 15
    """The answer to either: the new middlebox imported the state (or ``status`` says why not, the
    state bytes too, as UTF-8 text)."""
    FIN = 16
    """Hop by hop on the new path, from an anchor toward the other: my host's FIN went on the old
    path (``value``: 0 for the left-to-right direction, 1 for right-to-left)."""
    ACK_FIN = 17
    DELEGATE = 18
    """To an agent of the session further right (``left_anchor``): start this reconfiguration as
    its left anchor (``right_anchor``, ``hops``); ``left_session``: the session's five-tuple as
    the sender knows it, ``rid``: the sender's id for the request."""
    ACK_DELEGATE = 19
    """``status`` OK (``value``: the delegate's own rid), NO_SESSION, NOT_ON_PATH, BUSY or CLOSING."""
    OUTCOME = 20
    """The delegate to the agent that asked: the reconfiguration ended (``status`` OK or FAILED;
    ``rid``: the asking agent's id, ``value``: the delegate's)."""
    ACK_OUTCOME = 21


ANSWERS: dict[Kind, tuple[Kind, ...]] = {
    Kind.REQUEST_LOCK: (Kind.ACK_LOCK, Kind.NACK_LOCK),
    Kind.CANCEL_LOCK: (Kind.ACK_CANCEL,),
    Kind.RIGHT_REQUEST: (Kind.ACK_RIGHT,),
    Kind.SWITCH: (Kind.ACK_SWITCH,),
    Kind.DONE: (Kind.ACK_DONE,),
    Kind.TEARDOWN: (Kind.ACK_TEARDOWN,),
    Kind.STATE_EXPORT: (Kind.STATE_IMPORTED,),
    Kind.FIN: (Kind.ACK_FIN,),
    Kind.DELEGATE: (Kind.ACK_DELEGATE,),
    Kind.OUTCOME: (Kind.ACK_OUTCOME,),
}
"""Requests (retransmitted until answered) and the kinds that answer them (same ``msg_id``)."""


class Status(enum.IntEnum):
    OK = 0
    BUSY = 1
    """Nack: the subsession is locked, or the agent takes part in another reconfiguration."""
    NO_SESSION = 2
    NOT_ON_PATH = 3
    """Nack: the right anchor is not on the old path."""
    IDLE = 4
    """SWITCH: nothing had been sent before the switch (``value`` carries no boundary)."""
    CLOSING = 5
    """Nack: the session is closing at the receiver (a FIN was seen both ways, or a RST)."""
    NO_HOOK = 6
    """STATE_IMPORTED: the middlebox's agent has no state hook."""
    HOOK_FAILED = 7
    """STATE_IMPORTED: the state could not be exported, moved or imported (the state bytes say why)."""
    FAILED = 8
    """OUTCOME: the delegated reconfiguration failed (the session stays on its old path)."""
    NOT_NEIGHBOUR = 9
    """Nack of a REQUEST_LOCK with FAILED: the receiver's left neighbour on the session is not the
    dead hop ``sub.src``."""


STATE_KINDS = frozenset({Kind.STATE_EXPORT, Kind.STATE_IMPORTED})
"""The kinds with a state section after their hop addresses."""


class BadControl(PeerError):
    kind = "garbled"


class TruncatedControl(BadControl):
    kind = "truncated"


class UnknownVersion(BadControl):
    kind = "unknown_version"


class GarbledControl(BadControl):
    kind = "garbled"


class ControlBadMac(auth.BadMac, BadControl):
    pass


class ControlUnknownKey(auth.UnknownKey, BadControl):
    pass


class ControlMissingTag(auth.MissingTag, BadControl):
    pass


class ControlMisdirected(auth.Misdirected, BadControl):
    pass


class ControlStale(auth.Stale, BadControl):
    pass


class ControlReplayed(auth.Replayed, BadControl):
    pass


AUTH_ERRORS: dict[type[auth.AuthError], type[BadControl]] = {
    auth.BadMac: ControlBadMac,
    auth.UnknownKey: ControlUnknownKey,
    auth.MissingTag: ControlMissingTag,
    auth.Misdirected: ControlMisdirected,
    auth.Stale: ControlStale,
    auth.Replayed: ControlReplayed,
}
"""The authentication failures as control errors (both ``BadControl`` and ``auth.AuthError``)."""


_NONE = FiveTuple(0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    msg_id: int
    rid: int
    left_anchor: int
    right_anchor: int
    sub: FiveTuple = _NONE
    """The subsession the message crosses, left to right (hop-by-hop messages)."""
    left_session: FiveTuple = _NONE
    """The session as the left anchor's right side sees it."""
    right_session: FiveTuple = _NONE
    """The session as the right anchor's left side sees it."""
    delta_fwd: int = 0
    delta_rev: int = 0
    value: int = 0
    status: Status = Status.OK
    hops: tuple[int, ...] = ()
    tag: Tag = field(default_factory=Tag)
    ts_fwd: int = 0
    """Left-to-right TSval delta accumulated so far (a spliced proxy's two sessions; mod 2^32)."""
    ts_rev: int = 0
    ws_fwd: tuple[int, int] = (0, 0)
    """Left-to-right window: ``window << ws[0] >> ws[1]`` (equal shifts: unchanged)."""
    ws_rev: tuple[int, int] = (0, 0)
    state: bytes = b""
    """STATE_EXPORT / STATE_IMPORTED: a middlebox's exported state (or why it failed)."""

    def encoded_size(self) -> int:
        state = STATE.size + len(self.state) if self.kind in STATE_KINDS else 0
        return FIXED + ADDRESS.size * len(self.hops) + state + len(self.tag.value)


def around(dead: int, right: int) -> FiveTuple:
    """The ``sub`` of a message with FAILED: the dead hop and the right anchor, no ports (the
    dead hop chose them, and nobody alive knows those of its left subsession)."""
    return FiveTuple(dead, right, 0, 0, 0)


def _b4(v: int) -> bytes:
    return v.to_bytes(4, "big")


def _i(v: int | bytes) -> int:
    return v if isinstance(v, int) else int.from_bytes(v, "big")


def _tuple_fields(t: FiveTuple) -> dict[str, int | bytes]:
    return {"src": _b4(t.src), "dst": _b4(t.dst), "sport": t.sport, "dport": t.dport, "proto": t.proto}


def encode(
    m: Message, keys: auth.KeyRing | None = None, *, sender: int = 0, receiver: int = 0, now: int = 0
) -> bytes:
    """The message's bytes.  With ``keys``: sealed with the current key, stamped from ``sender``
    to ``receiver`` (the datagram's source and destination) at ``now`` (ns since the epoch);
    ``m.tag`` is ignored.  Without: ``m.tag`` as it is."""
    if keys is not None:  # the tag's size and header; its value follows the head
        m = replace(m, tag=Tag(TagType.HMAC_SHA256, keys.current, bytes(auth.TAG_SIZE)))
    if len(m.hops) > MAX_HOPS:
        raise ValueError(f"{len(m.hops)} hops > {MAX_HOPS}")
    if len(m.tag.value) > MAX_TAG:
        raise ValueError(f"tag of {len(m.tag.value)} bytes > {MAX_TAG}")
    if len(m.state) > MAX_STATE:
        raise ValueError(f"state of {len(m.state)} bytes > {MAX_STATE}")
    if m.state and m.kind not in STATE_KINDS:
        raise ValueError(f"{m.kind.name} carries no state")
    state = STATE.pack({"state_length": len(m.state)}) + m.state if m.kind in STATE_KINDS else b""
    head: dict[str, int | bytes] = {
        "version": VERSION,
        "type": int(m.kind),
        "status": int(m.status),
        "length": m.encoded_size(),
        "hops": len(m.hops),
        "msg_id": m.msg_id,
        "rid": m.rid,
        "left_anchor": _b4(m.left_anchor),
        "right_anchor": _b4(m.right_anchor),
    }
    for ws in (m.ws_fwd, m.ws_rev):
        if not all(0 <= x <= 14 for x in ws):
            raise ValueError(f"window scale shifts {ws} (0-14)")
    d = {
        "delta_fwd": m.delta_fwd % 2**32,
        "delta_rev": m.delta_rev % 2**32,
        "value": m.value % 2**32,
        "ts_fwd": m.ts_fwd % 2**32,
        "ts_rev": m.ts_rev % 2**32,
        "ws_fwd_from": m.ws_fwd[0],
        "ws_fwd_to": m.ws_fwd[1],
        "ws_rev_from": m.ws_rev[0],
        "ws_rev_to": m.ws_rev[1],
    }
    top = b"".join(
        [
            HEADER.pack(head),
            *(TUPLE.pack(_tuple_fields(getattr(m, n))) for n in TUPLES),
            DELTAS.pack(d),
            *(ADDRESS.pack({"addr": _b4(h)}) for h in m.hops),
            state,
            TAG.pack({"type": m.tag.type, "key_id": m.tag.key_id, "length": len(m.tag.value)}),
        ]
    )
    if keys is None:
        return top + m.tag.value
    return top + auth.tag_value(keys, auth.Stamp(sender, receiver, now), top)


def decode(
    data: bytes, keys: auth.KeyRing | None = None, guard: auth.ReplayGuard | None = None, *, now: int = 0
) -> Message:
    """The message in ``data`` (one whole datagram payload).

    With ``keys`` it must carry a HMAC-SHA256 tag that verifies under one of them; with
    ``guard`` too its stamp must name the guard's agent as receiver, lie within the window
    around ``now`` and not repeat one accepted before (the guard then remembers it).  Without
    ``keys`` only tag type NONE is accepted."""
    if len(data) < HEADER.size:
        raise TruncatedControl(f"{len(data)} bytes < header of {HEADER.size}")
    try:
        head = HEADER.unpack(data)
    except LayoutMismatch as exc:
        if exc.field == "magic":
            raise GarbledControl("no control magic") from None
        raise GarbledControl(f"header field {exc.field} is {exc.value!r}") from None
    if head["version"] != VERSION:
        raise UnknownVersion(f"version {_i(head['version'])} (this agent speaks {VERSION})")
    try:
        kind = Kind(_i(head["type"]))
        status = Status(_i(head["status"]))
    except ValueError as exc:
        raise GarbledControl(str(exc)) from None
    nhops = _i(head["hops"])
    if nhops > MAX_HOPS:
        raise GarbledControl(f"{nhops} hops > {MAX_HOPS}")
    length = _i(head["length"])
    fixed = FIXED + ADDRESS.size * nhops
    at_state = fixed - TAG.size
    state_len = 0
    if kind in STATE_KINDS:
        if len(data) < at_state + STATE.size:
            raise TruncatedControl(f"{len(data)} bytes: the state length is cut off")
        state_len = _i(STATE.unpack(data, at_state)["state_length"])
        if state_len > MAX_STATE:
            raise GarbledControl(f"state of {state_len} bytes > {MAX_STATE}")
        fixed += STATE.size + state_len
    if not fixed <= length <= fixed + MAX_TAG:
        raise GarbledControl(f"length {length} for {nhops} hops (between {fixed} and {fixed + MAX_TAG})")
    if len(data) != length:
        if len(data) < length:
            raise TruncatedControl(f"{len(data)} bytes < length {length}")
        raise GarbledControl(f"{len(data)} bytes, length says {length}")
    off = HEADER.size
    tuples = []
    for name in TUPLES:
        try:
            t = TUPLE.unpack(data, off)
        except LayoutMismatch:
            raise GarbledControl(f"{name}: pad must be 0") from None
        off += TUPLE.size
        tup = FiveTuple(_i(t["src"]), _i(t["dst"]), _i(t["sport"]), _i(t["dport"]), _i(t["proto"]))
        if tup.proto not in (0, TCP):
            raise GarbledControl(f"{name}: protocol {tup.proto} (only TCP)")
        tuples.append(tup)
    d = DELTAS.unpack(data, off)
    off += DELTAS.size
    shifts = tuple(_i(d[n]) for n in ("ws_fwd_from", "ws_fwd_to", "ws_rev_from", "ws_rev_to"))
    if max(shifts) > 14:
        raise GarbledControl(f"window scale shift {max(shifts)} > 14")
    hops = []
    for _ in range(nhops):
        hops.append(_i(ADDRESS.unpack(data, off)["addr"]))
        off += ADDRESS.size
    state = b""
    if kind in STATE_KINDS:
        off += STATE.size
        state = bytes(data[off : off + state_len])
        off += state_len
    tag = TAG.unpack(data, off)
    off += TAG.size
    if off + _i(tag["length"]) != length:
        raise GarbledControl(f"tag length {_i(tag['length'])} disagrees with length {length}")
    tag_type, tag_len = _i(tag["type"]), _i(tag["length"])
    if tag_type == TagType.NONE and not tag_len and keys is not None:
        raise ControlMissingTag("no MAC, and this agent requires one")
    if tag_type == TagType.HMAC_SHA256 and keys is None:
        raise GarbledControl("tag type 1 (HMAC-SHA256), but this agent has no keys")
    if (tag_type, tag_len) not in ((TagType.NONE, 0), (TagType.HMAC_SHA256, auth.TAG_SIZE)):
        raise GarbledControl(f"tag type {tag_type} with {tag_len} bytes unknown")
    value = bytes(data[off:length])
    if keys is not None:
        try:
            auth.verify(keys, _i(tag["key_id"]), bytes(data[: length - auth.MAC_SIZE]), value, guard, now)
        except auth.AuthError as exc:
            raise AUTH_ERRORS[type(exc)](str(exc)) from None
    return Message(
        kind,
        _i(head["msg_id"]),
        _i(head["rid"]),
        _i(head["left_anchor"]),
        _i(head["right_anchor"]),
        tuples[0],
        tuples[1],
        tuples[2],
        _i(d["delta_fwd"]),
        _i(d["delta_rev"]),
        _i(d["value"]),
        status,
        tuple(hops),
        Tag(tag_type, _i(tag["key_id"]), value),
        _i(d["ts_fwd"]),
        _i(d["ts_rev"]),
        (shifts[0], shifts[1]),
        (shifts[2], shifts[3]),
        state,
    )


# ---- UDP framing ---------------------------------------------------------------------------------

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
UDP = 17
MAC = UNADDRESSED  # the MACs are filled in as the frame leaves (see _neighbours)


def udp_frame(src: int, dst: int, port: int, payload: bytes) -> bytes:
    """An Ethernet/IPv4/UDP frame from ``src`` to ``dst``, both ports ``port``."""
    ulen = _UDP.size + len(payload)
    ip = _IP.pack(0x45, 0, 20 + ulen, 0, 0x4000, 64, UDP, 0, _b4(src), _b4(dst))
    ip = ip[:10] + checksum16(ip).to_bytes(2, "big") + ip[12:]
    pseudo = _b4(src) + _b4(dst) + struct.pack("!BBH", 0, UDP, ulen)
    udp = _UDP.pack(port, port, ulen, 0) + payload
    c = checksum16(pseudo + udp) or 0xFFFF
    udp = udp[:6] + c.to_bytes(2, "big") + udp[8:]
    return _ETH.pack(MAC, MAC, 0x0800) + ip + udp


def parse_udp(frame: bytes, port: int) -> tuple[int, int, bytes]:
    """``(src, dst, payload)`` of a UDP datagram to ``port``; :class:`BadControl` otherwise."""
    if len(frame) < _ETH.size + _IP.size + _UDP.size:
        raise TruncatedControl(f"frame of {len(frame)} bytes")
    vihl, _t, total, _i2, _f, _ttl, proto, _c, src, dst = _IP.unpack_from(frame, _ETH.size)
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4 or ihl < 20 or proto != UDP:
        raise GarbledControl("not UDP in IPv4")
    u = _ETH.size + ihl
    if u + _UDP.size > len(frame) or _ETH.size + total > len(frame):
        raise TruncatedControl("UDP header cut off")
    _sp, dport, ulen, _uc = _UDP.unpack_from(frame, u)
    if dport != port or ulen < _UDP.size or u + ulen > _ETH.size + total:
        raise GarbledControl(f"UDP to port {dport}, length {ulen}")
    return _i(src), _i(dst), bytes(frame[u + _UDP.size : u + ulen])
