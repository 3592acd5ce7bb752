"""Splicing a TCP-terminating proxy's two sessions (paper §4.2, DESIGN.md §4): what the agent
observed of their handshakes, and the translations the anchors apply once the proxy is gone.

Pure arithmetic.  The proxy's inbound session runs client -> proxy (the client's SYN ``c``, the
proxy kernel's SYN-ACK ``p1``), its outbound session proxy -> server (the proxy kernel's SYN
``p2``, the server's SYN-ACK ``s``).  After the splice the client's bytes reach the server
directly and must look as if ``p2`` had sent them, and the other way round::

    client -> server: seq + (p2.isn - c.isn + fwd_bytes)    TSval + (p2.ts - c.ts + margin)
    server -> client: seq + (p1.isn - s.isn + rev_bytes)    TSval + (p1.ts - s.ts + margin)

``fwd_bytes`` is what the proxy added to the client's stream (bytes written to the outbound
socket minus bytes read from the inbound one), ``rev_bytes`` the same the other way.  The
timestamp margin (the milliseconds since the first of the two handshakes) keeps the translated
clock ahead of the one the receiver saw from the proxy, so PAWS never discards a segment.
Windows are rescaled from the sender's shift to the one the receiver applies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dysco.runtime import _packet as pk

M32 = 0xFFFFFFFF
MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Side:
    """One endpoint's SYN or SYN-ACK as the agent saw it."""

    isn: int
    at: int
    """When the agent saw it (ns)."""
    wscale: int | None = None
    sack: bool = False
    tsval: int | None = None


def side(f: pk.TcpFrame, now: int) -> Side:
    """What a SYN or SYN-ACK announces (malformed options: whatever could be read)."""
    wscale: int | None = None
    sack = False
    tsval: int | None = None
    o = f.options
    i = 0
    while i < len(o):
        kind = o[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(o) or o[i + 1] < 2 or i + o[i + 1] > len(o):
            break
        n = o[i + 1]
        if kind == 3 and n == 3:
            wscale = min(o[i + 2], 14)
        elif kind == 4 and n == 2:
            sack = True
        elif kind == 8 and n == 10:
            (tsval,) = struct.unpack_from("!I", o, i + 2)
        i += n
    return Side(f.seq, now, wscale, sack, tsval)


@dataclass(frozen=True, slots=True)
class Translation:
    """One direction of a spliced pair: what the receiving anchor adds to what arrives."""

    seq: int
    ts: int
    ws: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Spliced:
    fwd: Translation
    """Client to server."""
    rev: Translation
    warnings: tuple[str, ...]
    """Differences the anchors cannot translate (SACK or timestamps on one session only)."""


def _shift(sender: Side, receiver: Side) -> int:
    """The shift ``sender`` applies to the windows it advertises (0 unless both announced one)."""
    return sender.wscale if sender.wscale is not None and receiver.wscale is not None else 0


def compute(c: Side, p1: Side, p2: Side, s: Side, fwd_bytes: int, rev_bytes: int, now: int) -> Spliced:
    """The translations of a proxy spliced at ``now``: ``c``/``p1`` the inbound session's SYN and
    SYN-ACK, ``p2``/``s`` the outbound session's."""
    margin = max(0, now - min(c.at, p1.at, p2.at, s.at)) // MS + 1
    ts_in = c.tsval is not None and p1.tsval is not None
    ts_out = p2.tsval is not None and s.tsval is not None
    warnings = []
    if ts_in != ts_out:
        warnings.append("timestamps on one session only: they are not translated")
    if (c.sack and p1.sack) != (p2.sack and s.sack):
        warnings.append("SACK permitted on one session only")
    both = ts_in and ts_out
    fwd_ts = ((p2.tsval or 0) - (c.tsval or 0) + margin) & M32 if both else 0
    rev_ts = ((p1.tsval or 0) - (s.tsval or 0) + margin) & M32 if both else 0
    fwd = Translation((p2.isn - c.isn + fwd_bytes) & M32, fwd_ts, (_shift(c, p1), _shift(p2, s)))
    rev = Translation((p1.isn - s.isn + rev_bytes) & M32, rev_ts, (_shift(s, p2), _shift(p1, c)))
    return Spliced(fwd, rev, tuple(warnings))


def compose(first: tuple[int, int], then: tuple[int, int]) -> tuple[int, int]:
    """Window shifts ``first`` followed by ``then`` as one pair."""
    net = first[0] - first[1] + then[0] - then[1]
    return (min(net, 14), 0) if net > 0 else (0, min(-net, 14))
