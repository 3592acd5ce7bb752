"""The two-path phase at one anchor of a reconfiguration (docs/architecture.md, the model's variables).

Pure bookkeeping: an :class:`Anchor` records what its host sent and what the peer acknowledged
(in the host's own sequence space), fixes ``old_sent`` when it switches, learns the peer's
boundary (``old_rcvd``) and splits each outgoing segment between the old and the new path:
data below ``old_sent`` and acks up to ``old_rcvd`` stay on the old path, the rest takes the
new one; a segment whose data and ack belong to different paths becomes two segments.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace

from dysco.runtime.core import _packet as pk
from dysco.runtime.core._neighbours import UNADDRESSED
from dysco.runtime.core._types import FiveTuple, ip_str

M32 = 0xFFFFFFFF
MAC = UNADDRESSED  # the MACs are filled in as the frame leaves (see _neighbours)


def after(a: int, b: int) -> bool:
    """``a`` is later than ``b`` in sequence space (mod 2^32)."""
    return 0 < (a - b) & M32 < 0x80000000


def later(a: int | None, b: int) -> int:
    return b if a is None or after(b, a) else a


def _sack(options: bytes, delta: int) -> bytes:
    """The option area with every SACK edge minus ``delta``."""
    if not delta or not options:
        return options
    out = bytearray(options)
    i = 0
    while i < len(out):
        kind = out[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(out) or out[i + 1] < 2:
            break
        n = out[i + 1]
        if kind == 5:
            for j in range(i + 2, min(i + n, len(out)) - 3, 4):
                (edge,) = struct.unpack_from("!I", out, j)
                struct.pack_into("!I", out, j, (edge - delta) & M32)
        i += n
    return bytes(out)


def _timestamps(options: bytes, val_delta: int, ecr_delta: int) -> bytes:
    """The option area with the timestamp option's TSval and TSecr plus the deltas."""
    out = bytearray(options)
    i = 0
    while i < len(out):
        kind = out[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(out) or out[i + 1] < 2:
            break
        if kind == 8 and out[i + 1] == 10 and i + 10 <= len(out):
            val, ecr = struct.unpack_from("!II", out, i + 2)
            struct.pack_into("!II", out, i + 2, (val + val_delta) & M32, (ecr + ecr_delta) & M32)
        i += out[i + 1]
    return bytes(out)


def translate(
    f: pk.TcpFrame,
    target: FiveTuple,
    seq_delta: int,
    ack_delta: int,
    ts: tuple[int, int] = (0, 0),
    ws: tuple[int, int] = (0, 0),
) -> pk.TcpFrame:
    """What the NIC's ``rewrite`` does, in software: ``ts`` are the TSval and TSecr deltas (the
    TSecr only on segments with ACK), ``ws`` the window's shifts (not on SYNs)."""
    g = f.with_tuple(target)
    if seq_delta:
        g = replace(g, seq=(g.seq + seq_delta) & M32)
    if ack_delta and g.flags & pk.ACK:
        g = replace(g, ack=(g.ack - ack_delta) & M32, options=_sack(g.options, ack_delta))
    if ts != (0, 0) and g.options:
        g = replace(g, options=_timestamps(g.options, ts[0], ts[1] if g.flags & pk.ACK else 0))
    if ws[0] != ws[1] and not g.flags & pk.SYN:
        g = replace(g, window=min(0xFFFF, (g.window << ws[0]) >> ws[1]))
    return g


class Phase(enum.Enum):
    LOCKING = "locking"
    """Left: waiting for ackLock; right: locked, waiting for the new path. Everything on the old path."""
    NEW_PATH = "new_path"
    """Left: new-path SYN sent; everything still on the old path until the SYN-ACK fixes the boundary."""
    MIGRATING = "migrating"
    """The new path is up, but a stateful middlebox's state is still moving to the new one
    (:mod:`dysco.runtime.core.reconf._migrate`): everything still on the old path.  The left anchor switches
    when the state is imported, the right anchor when the left anchor's SWITCH arrives."""
    TWO_PATH = "two_path"
    FAILED_OVER = "failed_over"
    """Around a dead hop (:mod:`dysco.runtime.core.reconf._failover`): the new path is up and
    everything takes it at once; the anchor forwards in software until the left anchor's
    TEARDOWN (to the right anchor, directly) is answered."""


class PathSide(enum.Enum):
    OLD = "old"
    NEW = "new"


@dataclass(slots=True)
class Anchor:
    left: bool
    peer: int
    """The other anchor's address."""
    out_key: FiveTuple
    old_target: FiveTuple
    in_target: FiveTuple
    old_in_key: FiveTuple
    old_delta: int
    """Sequence delta of the old path's incoming packets (and ack delta of its outgoing ones)."""
    new_delta: int = 0
    new_ts: int = 0
    """TSval delta of the new path's incoming packets (and minus the TSecr delta of outgoing ones)."""
    new_ws: tuple[int, int] = (0, 0)
    """Window shifts of the new path's incoming packets."""
    new_target: FiveTuple | None = None
    new_in_key: FiveTuple | None = None
    phase: Phase = Phase.LOCKING
    sent_max: int | None = None
    acked_max: int | None = None
    host_ack_old: int | None = None
    old_sent: int | None = None
    idle: bool = False
    """Nothing was seen from the host before the switch: every later byte is new."""
    idle_seq: int | None = None
    """With ``idle``: the sequence number of the host's first segment after the switch."""
    switch_waits: bool = False
    """The SWITCH waits for ``idle_seq`` (:meth:`Reconfigurer._switch_msg`)."""
    probes: int = 0
    """Probes sent to the host so far (:meth:`Reconfigurer._probe`)."""
    rcvd_known: bool = False
    old_rcvd: int | None = None
    """The peer's boundary in this host's receive space (None with ``rcvd_known``: the peer was idle)."""
    syn: bytes = b""
    synack: bytes = b""
    peer_done: bool = False
    sent_done: bool = False
    host_ack: int | None = None
    """The latest acknowledgment the host sent (in its receive space)."""
    new_rcvd_min: int | None = None
    """The lowest sequence number of the new path's data the host was given: the old path's data
    ends at or before it (the model's ``firstNewRcvd``, whatever order the segments came in)."""
    new_window: int | None = None
    """The window of the latest segment from the new path, as the host got it (translated)."""
    hops: tuple[int, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)

    # ---- observation -------------------------------------------------------------------------------

    def sent_so_far(self) -> int | None:
        """Where the host's data ends as far as seen: what it sent, else what the peer acknowledged."""
        return self.sent_max if self.sent_max is not None else self.acked_max

    def fix_boundary(self) -> None:
        """Switching: what was sent so far is old."""
        self.old_sent = self.sent_so_far()
        self.idle = self.old_sent is None

    def learn_peer(self, value: int, idle: bool) -> None:
        self.rcvd_known = True
        self.old_rcvd = None if idle else (value + self.new_delta) & M32

    def describe(self) -> dict[str, object]:
        """The phase and the completion test's inputs, for ``dysco ctl sessions``."""
        return {
            "rid": self.extra.get("rid"),
            "side": "left" if self.left else "right",
            "peer": ip_str(self.peer),
            "phase": self.phase.value,
            "old_sent": self.old_sent,
            "idle": self.idle,
            "idle_seq": self.idle_seq,
            "switch_waits": self.switch_waits,
            "host_probes": self.probes,
            "acked_max": self.acked_max,
            "old_rcvd": self.old_rcvd,
            "rcvd_known": self.rcvd_known,
            "host_ack": self.host_ack,
            "sent_done": self.sent_done,
            "peer_done": self.peer_done,
        }

    def out_done(self) -> bool:
        """This anchor's side of the two-path phase is over: everything its host sent on the old
        path was acknowledged, and its host acknowledged everything the peer sent on it.  (The
        second half matters when the old path has a TCP-terminating proxy: the proxy's
        acknowledgments say nothing about what reached the host behind the other anchor.)"""
        if self.phase is not Phase.TWO_PATH or not self.rcvd_known:
            return False
        if self.old_rcvd is not None and (self.host_ack is None or after(self.old_rcvd, self.host_ack)):
            return False
        if self.idle or self.old_sent is None:
            return True
        return self.acked_max is not None and not after(self.old_sent, self.acked_max)

    # ---- outgoing segments ---------------------------------------------------------------------------

    def outgoing(self, f: pk.TcpFrame) -> list[tuple[PathSide, pk.TcpFrame]]:
        """The host's segment ``f`` as the segments to send on each path (not yet translated)."""
        end = (f.seq + f.seg_len()) & M32
        if f.flags & pk.ACK:
            self.host_ack = later(self.host_ack, f.ack)
        one_path = self.phase is not Phase.TWO_PATH
        if f.seg_len():
            self.sent_max = later(self.sent_max, end)
        elif one_path:
            self.sent_max = later(self.sent_max, f.seq)
        if one_path:
            return [self._old(f)]
        if self.idle and self.idle_seq is None:
            # the host sent nothing before: its first sequence number is the old path's end
            self.idle_seq = f.seq
        # an idle host's bytes below that are old too: what it retransmits of data it sent
        # before the lock (and the old path lost) is what the peer waits for on the old path
        boundary = self.idle_seq if self.idle else self.old_sent
        n = len(f.payload) + (1 if f.flags & pk.FIN else 0)
        n_old = (
            0
            if boundary is None
            else max(0, min(n, (boundary - f.seq) & M32 if after(boundary, f.seq) else 0))
        )
        old_bytes, new_bytes = f.payload[:n_old], f.payload[n_old:]
        fin = f.flags & pk.FIN
        fin_old = bool(fin) and n_old > len(f.payload)
        segs: list[tuple[PathSide, pk.TcpFrame]] = []
        ack_new = self._ack_new(f)
        if n_old:
            flags = f.flags & ~pk.FIN | (pk.FIN if fin_old else 0)
            g = replace(f, payload=old_bytes, flags=flags)
            if ack_new and self.old_rcvd is not None:
                g = replace(g, ack=self.old_rcvd)
            segs.append(self._old(g))
        new_len = n - n_old
        if new_len:
            flags = f.flags & ~pk.FIN | (pk.FIN if fin and not fin_old else 0)
            segs.append((PathSide.NEW, replace(f, seq=(f.seq + n_old) & M32, payload=new_bytes, flags=flags)))
        if f.flags & pk.RST:
            return [self._old(f), (PathSide.NEW, f)]
        if not f.flags & pk.ACK:
            return segs
        # a pure ACK's sequence number must be one its receiver accepts (Linux discards a segment
        # beyond its receive window, ACK and all): on the new path not before the boundary, on the
        # old path not after it (where the old path's data ends, its receiver's rcv_nxt at last)
        pure = replace(f, payload=b"", flags=pk.ACK)
        new_pure = pure if boundary is None or after(f.seq, boundary) else replace(pure, seq=boundary)
        old_end = self.idle_seq if boundary is None else boundary
        old_pure = pure if old_end is None or not after(f.seq, old_end) else replace(pure, seq=old_end)
        if ack_new and self.phase is Phase.TWO_PATH:
            if not new_len:
                segs.append((PathSide.NEW, new_pure))
            if self.old_rcvd is not None and (
                self.host_ack_old is None or after(self.old_rcvd, self.host_ack_old)
            ):
                segs.append(self._old(replace(old_pure, ack=self.old_rcvd)))
        elif not n_old and (
            self.host_ack_old is None or after(self._old_ack(f.ack), self.host_ack_old) or not new_len
        ):
            segs.append(self._old(old_pure))
        return segs

    def _ack_new(self, f: pk.TcpFrame) -> bool:
        if not f.flags & pk.ACK or not self.rcvd_known or self.phase is not Phase.TWO_PATH:
            return False
        return self.old_rcvd is None or after(f.ack, self.old_rcvd)

    def _old(self, g: pk.TcpFrame) -> tuple[PathSide, pk.TcpFrame]:
        if g.flags & pk.ACK:
            if (ack := self._old_ack(g.ack)) != g.ack:
                g = replace(g, ack=ack)
            self.host_ack_old = later(self.host_ack_old, g.ack)
        return (PathSide.OLD, g)

    def _old_ack(self, ack: int) -> int:
        """The host's ``ack`` as the old path may carry it: never past what only the new path
        carried, which the old path's sender (a spliced proxy's kernel) never sent and would take
        for an acknowledgment of unsent data, discarding the segment."""
        cap = self.old_rcvd if self.rcvd_known and self.old_rcvd is not None else self.new_rcvd_min
        return cap if cap is not None and after(ack, cap) else ack

    # ---- frames of the anchor's own on the new path --------------------------------------------------

    def frame(self, flags: int, seq: int, ack: int) -> bytes:
        t = self.new_target
        assert t is not None
        return pk.TcpFrame(MAC, MAC, t.src, t.dst, t.sport, t.dport, seq, ack, flags).to_bytes()

    # ---- incoming segments ---------------------------------------------------------------------------

    def incoming(self, f: pk.TcpFrame) -> None:
        """A segment from the peer (before translation): its ack is in this host's send space."""
        if f.flags & pk.ACK:
            self.acked_max = later(self.acked_max, f.ack)

    def to_host(self, f: pk.TcpFrame, new: bool) -> pk.TcpFrame:
        """The peer's segment ``f`` from the new path (``new``) or the old one, as its host gets it.

        An old-path segment in the two-path phase carries the ack of whoever ends the old path
        (a TCP-terminating proxy acknowledges what it received, the old path's data), while the
        host's send window has moved on with the new path's acks.  Linux discards a segment whose
        ack is more than the largest window behind its ``snd_una`` (RFC 5961 §5.2, "too old ack"),
        data and all, so the old path's last bytes would never be delivered once the new path ran
        a window ahead: such a segment gets the newest ack this host was sent (on either path) and
        the window that came with the new path's latest segment."""
        if new:
            g = translate(f, self.in_target, self.new_delta, 0, (self.new_ts, 0), self.new_ws)
            if g.flags & pk.ACK:
                self.new_window = g.window
            if g.seg_len() and (self.new_rcvd_min is None or after(self.new_rcvd_min, g.seq)):
                self.new_rcvd_min = g.seq
            return g
        g = translate(f, self.in_target, self.old_delta, 0)
        if (
            self.phase is Phase.TWO_PATH
            and g.flags & pk.ACK
            and self.acked_max is not None
            and after(self.acked_max, g.ack)
        ):
            window = g.window if self.new_window is None else self.new_window
            g = replace(g, ack=self.acked_max, window=window)
        return g
