"""The session note: what an agent needs to rebuild a session after a restart that its NIC
entries' actions do not carry, kept in the entries themselves (P4Runtime ``TableEntry.metadata``).

A ``rewrite`` entry carries the session id, the five-tuple it translates to and the deltas; it
does not say which role the agent has on the session, which five-tuple the session has at this
host, the session's chain, which of its hops were picked from a middlebox type's instances, or
the Ethernet addresses of the host's frames.  Every entry of a session carries this note (the
same bytes for all of them, so a target that keeps one record per distinct metadata, as the ebpf
back end does, keeps one per session), written with the entry in the same update: the note and
the entry cannot disagree, whatever moment the agent dies at, and the NIC describes itself to
whichever agent connects next (:mod:`._adopt`).  Layout (network byte order), then ``hops``
addresses of 4 bytes each::

    magic "Dy" | version 1 | role | src | dst | sport | dport | proto | hops | instances | mac_dst | mac_src

``role``: 0 left, 1 middle, 2 right.  ``instances``: bit i set when hop i was picked from a
middlebox type's instances.  The MACs are all zero when the agent has none (a middle).
"""

from __future__ import annotations

from dataclasses import dataclass

from dysco.runtime.core._layout import Field, Layout, LayoutMismatch
from dysco.runtime.core._session import Role, Session
from dysco.runtime.core._syn_payload import MAX_HOPS
from dysco.runtime.core._types import FiveTuple

VERSION = 1
HEAD = Layout(
    Field("magic", "2s", b"Dy"),
    Field("version", "B", VERSION),
    Field("role", "B"),
    Field("src", "I"),
    Field("dst", "I"),
    Field("sport", "H"),
    Field("dport", "H"),
    Field("proto", "B"),
    Field("hops", "B"),
    Field("instances", "H"),
    Field("mac_dst", "6s"),
    Field("mac_src", "6s"),
)
HOP = Layout(Field("addr", "I"))
MAX_SIZE = HEAD.size + MAX_HOPS * HOP.size
"""The longest note (a chain of MAX_HOPS hops): 96 bytes."""
_ROLES = (Role.LEFT, Role.MIDDLE, Role.RIGHT)
_NO_MAC = bytes(6)


@dataclass(frozen=True, slots=True)
class Note:
    role: Role
    session: FiveTuple
    chain: tuple[int, ...]
    instances: tuple[int, ...]
    macs: tuple[bytes, bytes] | None


def encode(s: Session) -> bytes:
    chain = s.chain[:MAX_HOPS]
    mask = 0
    for addr in s.instances:
        i = next((i for i, a in enumerate(chain) if a == addr and not mask >> i & 1), None)
        if i is not None:
            mask |= 1 << i
    macs = s.macs if s.macs is not None else (_NO_MAC, _NO_MAC)
    t = s.session
    head = HEAD.pack(
        {
            "role": _ROLES.index(s.role), "src": t.src, "dst": t.dst, "sport": t.sport, "dport": t.dport,
            "proto": t.proto, "hops": len(chain), "instances": mask, "mac_dst": macs[0], "mac_src": macs[1],
        }
    )  # fmt: skip
    return head + b"".join(HOP.pack({"addr": a}) for a in chain)


def decode(data: bytes) -> Note | None:
    """The note, or None for bytes that are not one (another controller's metadata, none, a
    later version)."""
    if len(data) < HEAD.size:
        return None
    try:
        h = HEAD.unpack(data)
    except LayoutMismatch:
        return None
    n, role = int(h["hops"]), int(h["role"])
    if role >= len(_ROLES) or n > MAX_HOPS or len(data) != HEAD.size + n * HOP.size:
        return None
    chain = tuple(int(HOP.unpack(data, HEAD.size + i * HOP.size)["addr"]) for i in range(n))
    mask = int(h["instances"])
    macs = (bytes(h["mac_dst"]), bytes(h["mac_src"]))
    session = FiveTuple(int(h["src"]), int(h["dst"]), int(h["sport"]), int(h["dport"]), int(h["proto"]))
    return Note(
        _ROLES[role],
        session,
        chain,
        tuple(a for i, a in enumerate(chain) if mask >> i & 1),
        None if macs == (_NO_MAC, _NO_MAC) else macs,
    )
