"""Splicing a TCP-terminating proxy's two sessions (paper §4.2, docs/architecture.md): what the agent
observed of their handshakes, and the translations the anchors apply once the proxy is gone.

Pure arithmetic.  The proxy's inbound session runs client -> proxy (the client's SYN ``c``, the
proxy kernel's SYN-ACK ``p1``), its outbound session proxy -> server (the proxy kernel's SYN
``p2``, the server's SYN-ACK ``s``).  After the splice the client's bytes reach the server
directly and must look as if ``p2`` had sent them, and the other way round::

    client -> server: seq + (p2.isn - c.isn + fwd_bytes)    TSval + (p2.ts - c.ts - (p2.at - c.at) + 1)
    server -> client: seq + (p1.isn - s.isn + rev_bytes)    TSval + (p1.ts - s.ts - (p1.at - s.at) + 1)

``fwd_bytes`` is what the proxy added to the client's stream (bytes written to the outbound
socket minus bytes read from the inbound one), ``rev_bytes`` the same the other way.

Timestamps: each TSval clock is a host's clock plus a per-connection offset (Linux draws one at
random for every connection), ticking at 1 kHz (Linux's ``TCP_TS_HZ``).  The client's clock and
the proxy's clock of its outbound connection tick together, so the difference between them is a
constant; the two SYNs were seen at different times, so the agent corrects it by the
milliseconds between the two observations (``at``, its own clock, rounded down: the delta comes
out larger, never smaller).  One tick more covers the clocks' rounding to whole ticks.  The
receiver's PAWS check compares what arrives with the latest TSval it saw, which may still come
from the proxy: translated TSvals must not be behind the proxy's clock (the new path's segments
would be dropped) nor seconds ahead of it (the proxy's last segments on the old path would be).
The delay between a SYN being stamped and the agent seeing it errs towards larger deltas for the
remote end's SYN, which crossed the network, by the one-way delay.  Windows are rescaled from the
sender's shift to the one the receiver applies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dysco.runtime.core import _packet as pk

M32 = 0xFFFFFFFF
MS = 1_000_000
"""Nanoseconds per TSval tick (Linux's TCP timestamp clock runs at 1 kHz)."""
TS_MARGIN = 1
"""Ticks added to a TSval delta for the two clocks' rounding to whole ticks."""


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


def ts_delta(sender: Side, target: Side) -> int:
    """What to add to ``sender``'s TSvals to read them on ``target``'s clock: the difference of
    the two clocks at one instant, from TSvals seen at ``sender.at`` and ``target.at``."""
    assert sender.tsval is not None and target.tsval is not None
    ticks = (target.at - sender.at) // MS  # rounded down: the delta errs towards larger values
    return (target.tsval - sender.tsval - ticks + TS_MARGIN) & M32


def compute(c: Side, p1: Side, p2: Side, s: Side, fwd_bytes: int, rev_bytes: int) -> Spliced:
    """The translations of a spliced proxy: ``c``/``p1`` the inbound session's SYN and SYN-ACK,
    ``p2``/``s`` the outbound session's."""
    ts_in = c.tsval is not None and p1.tsval is not None
    ts_out = p2.tsval is not None and s.tsval is not None
    warnings = []
    if ts_in != ts_out:
        warnings.append("timestamps on one session only: they are not translated")
    if (c.sack and p1.sack) != (p2.sack and s.sack):
        warnings.append("SACK permitted on one session only")
    both = ts_in and ts_out
    fwd_ts = ts_delta(c, p2) if both else 0
    rev_ts = ts_delta(s, p1) if both else 0
    fwd = Translation((p2.isn - c.isn + fwd_bytes) & M32, fwd_ts, (_shift(c, p1), _shift(p2, s)))
    rev = Translation((p1.isn - s.isn + rev_bytes) & M32, rev_ts, (_shift(s, p2), _shift(p1, c)))
    return Spliced(fwd, rev, tuple(warnings))


def compose(first: tuple[int, int], then: tuple[int, int]) -> tuple[int, int]:
    """Window shifts ``first`` followed by ``then`` as one pair."""
    net = first[0] - first[1] + then[0] - then[1]
    return (min(net, 14), 0) if net > 0 else (0, min(-net, 14))
