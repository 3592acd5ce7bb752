"""A small TCP for simulated end hosts: handshake, data both ways, FIN, retransmission.

Enough to check Dysco end to end: go-back-N with a fixed window, cumulative ACKs, in-order
delivery, SYN/SYN-ACK/FIN retransmission with a doubling timeout.  A client sends its request
and a FIN; the server answers when the FIN arrived (``respond(request)``), then sends its FIN, or
(an *eager* server) sends ``respond(b"")`` and its FIN as soon as the connection is established.
Every ACK that acknowledges bytes this side never sent is recorded in ``bad_acks``.

With ``timestamps`` a stack behaves as Linux with ``tcp_timestamps=1``: every connection's TSval
clock ticks at 1 kHz from a random per-connection offset, the option is negotiated on the
handshake, ``ts_recent`` is updated from segments at or before the last acknowledged point, and
PAWS (RFC 7323 §5) discards a segment whose TSval is more than one tick behind ``ts_recent``
(counted in ``paws_drops``, answered with a duplicate ACK), except a duplicate pure ACK within
the retransmission timeout (Linux's ``tcp_disordered_ack``).

As Linux does, a segment that starts beyond the receive window is discarded, ACK and all
(``beyond_window``), and so is a segment whose ACK is more than the window behind ``snd_una``
(RFC 5961 §5.2, ``old_ack_drops``), and so is a segment that acknowledges bytes this side never
sent (RFC 793 §3.9, Linux's drop reason TCP_ACK_UNSENT_DATA, ``unsent_ack_drops``; the ACK is
recorded in ``bad_acks`` too); all three are answered with an ACK.

With ``rsts`` set on a stack, it answers a segment for no connection with a RST as Linux does
(:func:`kernel_rst`), and takes a RST only at exactly ``rcv_nxt`` (RFC 5961).

A SYN on an established connection, whatever its sequence number, is answered with an ACK
(RFC 5961 §4.2, Linux's challenge ACK), at most one per connection every 500 ms (Linux's
``tcp_invalid_ratelimit``); the others are counted in ``challenges_limited``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from dysco.runtime.core import _packet as pk
from dysco.runtime.sim._net import MS, Sim

MSS = 1000
WINDOW = 8
RTO = 200 * MS
MAX_RTO = 3200 * MS
MAX_RETRIES = 8
MAC_A = b"\x02\0\0\0\0\x01"
MAC_B = b"\x02\0\0\0\0\x02"
SYN_OPTIONS = b"\x02\x04\x05\xb4"  # MSS 1460
M32 = 0xFFFFFFFF
CHALLENGE_INTERVAL = 500 * MS
"""At most one challenge ACK to a SYN per connection in this long (``tcp_invalid_ratelimit``)."""
PAWS_WINDOW = 1
"""Ticks a TSval may lag ``ts_recent`` and still pass PAWS (Linux's ``TCP_PAWS_WINDOW``)."""


def _s32(x: int) -> int:
    """``x`` modulo 2^32 as a signed 32-bit number (sequence and timestamp comparisons)."""
    x &= M32
    return x - (1 << 32) if x >= 1 << 31 else x


def timestamp_option(options: bytes) -> tuple[int, int] | None:
    """TSval and TSecr of the timestamp option in ``options``, if there is one."""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        if kind == 8 and options[i + 1] == 10 and i + 10 <= len(options):
            val, ecr = struct.unpack_from("!II", options, i + 2)
            return val, ecr
        i += options[i + 1]
    return None


@dataclass
class Conn:
    stack: TcpStack
    local_port: int
    remote: int
    remote_port: int
    iss: int
    data: bytes = b""
    """What this side sends (known up front for the client; set on FIN for the server)."""
    client: bool = True
    rcv_nxt: int = 0
    snd_una: int = 0
    snd_nxt: int = 0
    received: bytearray = field(default_factory=bytearray)
    established: bool = False
    want_fin: bool = False
    peer_fin: bool = False
    reset: bool = False
    rto: int = RTO
    retries: int = 0
    failed: bool = False
    """Gave up after MAX_RETRIES timeouts in a row."""
    _timer_gen: int = 0
    respond: Callable[[bytes], bytes] | None = None
    eager: bool = False
    stream: bool = False
    """The application feeds ``data`` and sets ``want_fin`` itself (a relay), whatever comes in."""
    snd_max: int = 0
    """The highest sequence number sent so far plus one (the SYN counts)."""
    bad_acks: list[int] = field(default_factory=list)
    """Acknowledgment numbers outside [iss + 1, snd_max]: acks for bytes never sent."""
    ts_offset: int = 0
    """This connection's TSval at simulated time 0 (random, as Linux's per-connection offset)."""
    ts_ok: bool = False
    """Both SYNs carried the timestamp option: every segment carries it."""
    ts_recent: int = 0
    rcv_wup: int = 0
    """``rcv_nxt`` when this side last sent an ACK (``ts_recent`` is taken from segments up to it)."""
    ts_clock: int | None = None
    """The peer's TSval clock as the SYN (or SYN-ACK) showed it: its TSval minus our clock."""
    last_challenge: int | None = None
    """When this connection last answered a SYN with a challenge ACK."""
    ts_lead: tuple[int, int] = (0, 0)
    """How far (ms) the TSvals received ran behind / ahead of that clock, at most: a constant
    path delay keeps both at 0; a path whose TSvals are translated (a splice) must keep them small."""

    def __post_init__(self) -> None:
        self.snd_max = self.iss + 1

    @property
    def tsval(self) -> int:
        """This connection's TSval clock now (1 kHz)."""
        return (self.ts_offset + self.stack.sim.now // MS) & M32

    @property
    def fin_seq(self) -> int:
        return self.iss + 1 + len(self.data)

    @property
    def done(self) -> bool:
        return (
            self.reset
            or self.failed
            or (self.peer_fin and self.want_fin and self.snd_una == self.fin_seq + 1)
        )

    def segment(self, flags: int, seq: int, payload: bytes = b"", options: bytes = b"") -> None:
        ack = self.rcv_nxt if flags & pk.ACK else 0
        if flags & pk.ACK:
            self.rcv_wup = self.rcv_nxt
        if self.ts_ok or (flags == pk.SYN and self.stack.timestamps):
            options += b"\x01\x01\x08\x0a" + struct.pack("!II", self.tsval, self.ts_recent)
        f = pk.TcpFrame(
            MAC_B, MAC_A, self.stack.address, self.remote, self.local_port, self.remote_port,
            seq, ack, flags, 65535, options, payload,
        )  # fmt: skip
        self.stack.emit(f.to_bytes())

    def pump(self) -> None:
        if not self.established:
            return
        limit = self.snd_una + WINDOW * MSS
        while self.snd_nxt < self.fin_seq and self.snd_nxt < limit:
            off = self.snd_nxt - self.iss - 1
            chunk = self.data[off : off + MSS]
            self.segment(pk.ACK | pk.PSH, self.snd_nxt, chunk)
            self.snd_nxt += len(chunk)
        if self.want_fin and self.snd_nxt == self.fin_seq:
            self.segment(pk.ACK | pk.FIN, self.snd_nxt)
            self.snd_nxt += 1
        self.snd_max = max(self.snd_max, self.snd_nxt)
        self._arm()

    def _arm(self) -> None:
        self._timer_gen += 1
        if self.done or (self.established and self.snd_una == self.snd_nxt):
            return
        gen = self._timer_gen
        self.stack.sim.after(self.rto, lambda: self._timeout(gen))

    def _timeout(self, gen: int) -> None:
        if gen != self._timer_gen or self.done:
            return
        self.rto = min(self.rto * 2, MAX_RTO)
        self.retries += 1
        if self.retries > MAX_RETRIES:
            self.failed = True
            return
        self.stack.retransmits += 1
        if not self.established:
            if self.client:
                self.segment(pk.SYN, self.iss, options=SYN_OPTIONS)
            else:
                self.segment(pk.SYN | pk.ACK, self.iss)
            self._arm()
            return
        self.snd_nxt = self.snd_una
        self.pump()

    def _syn_challenge(self) -> None:
        now = self.stack.sim.now
        if self.last_challenge is not None and now - self.last_challenge < CHALLENGE_INTERVAL:
            self.stack.challenges_limited += 1
            return
        self.last_challenge = now
        self.stack.challenge_acks += 1
        self.segment(pk.ACK, self.snd_nxt)

    def _rst(self, f: pk.TcpFrame) -> None:
        """Linux's checks of a RST (RFC 5961 §3): while connecting, only a RST+ACK of the SYN; then
        only one at exactly ``rcv_nxt`` resets; one elsewhere in the window gets a challenge ACK."""
        if not self.established and self.client:
            self.reset = bool(f.flags & pk.ACK) and f.ack == (self.iss + 1) & M32
            return
        off = (f.seq - self.rcv_nxt) & M32
        if off == 0:
            self.reset = True
        elif off < 65535:
            self.stack.challenge_acks += 1
            self.segment(pk.ACK, self.snd_nxt)

    def _paws_rejects(self, f: pk.TcpFrame, ts: tuple[int, int] | None) -> bool:
        """PAWS: ``f`` carries a TSval too old to be a segment of this connection."""
        if not self.ts_ok or ts is None or f.flags & (pk.RST | pk.SYN):
            return False
        lag = _s32(self.ts_recent - ts[0])
        if lag <= PAWS_WINDOW:
            return False
        disordered_ack = (
            not f.payload
            and not f.flags & pk.FIN
            and f.seq == self.rcv_nxt
            and f.ack == self.snd_una
            and lag <= self.rto // MS
        )
        return not disordered_ack

    def _replaces_ts_recent(self, seq: int, tsval: int) -> bool:
        """Linux's ``tcp_replace_ts_recent``: a newer TSval on a segment at or before ``rcv_wup``."""
        return self.ts_ok and _s32(seq - self.rcv_wup) <= 0 and _s32(tsval - self.ts_recent) >= 0

    def _watch_clock(self, tsval: int) -> None:
        now = self.stack.sim.now // MS
        if self.ts_clock is None:
            self.ts_clock = (tsval - now) & M32
        lead = _s32(tsval - self.ts_clock - now)
        self.ts_lead = (min(self.ts_lead[0], lead), max(self.ts_lead[1], lead))

    def input(self, f: pk.TcpFrame) -> None:
        ts = timestamp_option(f.options) if self.stack.timestamps else None
        if ts is not None:
            self._watch_clock(ts[0])
        if self.established and f.flags & pk.SYN and not (self.client and f.flags & pk.ACK):
            self._syn_challenge()
            return
        if self._paws_rejects(f, ts):
            self.stack.paws_drops += 1
            if f.payload or f.flags & pk.FIN:
                self.segment(pk.ACK, self.snd_nxt)
            return
        if self.established and WINDOW * MSS < (f.seq - self.rcv_nxt) % (1 << 32) < 1 << 31:
            self.stack.beyond_window += 1
            self.segment(pk.ACK, self.snd_nxt)
            return
        if (
            self.established
            and f.flags & pk.ACK
            and WINDOW * MSS < (self.snd_una - f.ack) % (1 << 32) < 1 << 31
        ):
            self.stack.old_ack_drops += 1
            self.segment(pk.ACK, self.snd_nxt)
            return
        if f.flags & pk.ACK and not 0 < (f.ack - self.iss) % (1 << 32) <= self.snd_max - self.iss:
            self.bad_acks.append(f.ack)
            if self.established and not f.flags & (pk.RST | pk.SYN):
                # Linux discards it, data and all (the data stays unacknowledged)
                self.stack.unsent_ack_drops += 1
                self.segment(pk.ACK, self.snd_nxt)
                return
        if f.flags & pk.RST:
            if self.stack.rsts:
                self._rst(f)
            else:
                self.reset = True
            return
        if f.flags & pk.SYN:
            if self.client and f.flags & pk.ACK and f.ack == self.iss + 1:
                if not self.established:
                    self.ts_ok = ts is not None
                    self.ts_recent = ts[0] if ts is not None else 0
                    self.rcv_nxt = f.seq + 1
                    self.snd_una = self.snd_nxt = self.iss + 1
                    self.established = True
                    self.rto = RTO
                    self.retries = 0
                self.segment(pk.ACK, self.snd_nxt)
                self.pump()
            elif not self.client and not self.established:
                self.segment(pk.SYN | pk.ACK, self.iss)
            return
        if not self.established and not self.client and f.flags & pk.ACK and f.ack == self.iss + 1:
            self.established = True
            self.snd_una = self.snd_nxt = self.iss + 1
            self.rto = RTO
            self.retries = 0
            if self.eager:
                self.data = self.respond(b"") if self.respond else b""
                self.want_fin = True
        if f.flags & pk.ACK and self.snd_una < f.ack <= self.snd_nxt:
            self.snd_una = f.ack
            self.rto = RTO
            self.retries = 0
        if ts is not None and self._replaces_ts_recent(f.seq, ts[0]):
            self.ts_recent = ts[0]
        occupies = bool(f.payload) or bool(f.flags & pk.FIN)
        if f.seq == self.rcv_nxt and self.established:
            self.received += f.payload
            self.rcv_nxt += len(f.payload)
            if f.flags & pk.FIN and not self.peer_fin:
                self.peer_fin = True
                self.rcv_nxt += 1
                if not self.client and not self.eager and not self.stream:
                    self.data = self.respond(bytes(self.received)) if self.respond else b""
                    self.want_fin = True
        if occupies:
            self.segment(pk.ACK, self.snd_nxt)
        self.pump()


def kernel_rst(frame: bytes) -> bytes | None:
    """Linux's answer to a TCP segment for no socket (``tcp_v4_send_reset``): a RST with the
    segment's ack as its sequence number, or RST+ACK of the segment when it carries no ACK.  A RST
    (or what is no TCP segment) is not answered."""
    try:
        f = pk.parse(frame)
    except pk.MalformedFrame:
        return None
    if f.flags & pk.RST:
        return None
    if f.flags & pk.ACK:
        seq, ack, flags = f.ack, 0, pk.RST
    else:
        seq, ack, flags = 0, (f.seq + f.seg_len()) & M32, pk.RST | pk.ACK
    rst = pk.TcpFrame(f.eth_src, f.eth_dst, f.dst, f.src, f.dport, f.sport, seq, ack, flags, 0)
    return rst.to_bytes()


class TcpStack:
    """The TCP of one simulated host (its application on the HOST port)."""

    def __init__(
        self, sim: Sim, address: int, emit: Callable[[bytes], None], timestamps: bool = False
    ) -> None:
        self.sim = sim
        self.address = address
        self.emit = emit
        self.conns: dict[tuple[int, int, int], Conn] = {}
        self.listening: dict[int, tuple[Callable[[bytes], bytes], bool]] = {}
        self.streams: set[int] = set()
        self.retransmits = 0
        self.unmatched = 0
        self.timestamps = timestamps
        self.beyond_window = 0
        """Segments discarded for starting beyond the receive window (Linux's BeyondWindow)."""
        self.old_ack_drops = 0
        """Segments discarded for an ACK too far behind (Linux's drop reason TCP_TOO_OLD_ACK)."""
        self.paws_drops = 0
        """Segments discarded by PAWS (Linux's PAWSEstabRejected)."""
        self.unsent_ack_drops = 0
        """Segments discarded for acknowledging bytes never sent (Linux's TCP_ACK_UNSENT_DATA)."""
        self.rsts = False
        """Behave as Linux with RSTs: answer a segment for no connection with one, and take one only
        at exactly ``rcv_nxt`` (else any RST resets the connection it names)."""
        self.challenge_acks = 0
        """RSTs in the window but not at ``rcv_nxt``, and SYNs on established connections,
        answered with an ACK (TCPChallengeACK)."""
        self.challenges_limited = 0
        """SYNs on established connections not answered: one was answered less than
        ``CHALLENGE_INTERVAL`` before (TCPACKSkippedChallenge)."""
        self._next_port = 40000

    def listen(self, port: int, respond: Callable[[bytes], bytes], eager: bool = False) -> None:
        self.listening[port] = (respond, eager)

    def listen_stream(self, port: int) -> None:
        """Accept connections on ``port`` whose data the application feeds (:attr:`Conn.stream`)."""
        self.listening[port] = (lambda req: b"", False)
        self.streams.add(port)

    def connect(
        self, dst: int, dport: int, data: bytes, sport: int | None = None, stream: bool = False
    ) -> Conn:
        if sport is None:
            sport = self._next_port
            self._next_port = self._next_port + 1 if self._next_port < 60999 else 40000
        c = Conn(self, sport, dst, dport, self.sim.rng.randrange(1 << 30), data, want_fin=not stream)
        c.stream = stream
        if self.timestamps:
            c.ts_offset = self.sim.rng.randrange(1 << 32)
        self.conns[(dst, dport, sport)] = c
        c.segment(pk.SYN, c.iss, options=SYN_OPTIONS)
        c._arm()
        return c

    def receive(self, frame: bytes) -> None:
        f = pk.parse(frame)
        if f.dst != self.address:
            self.unmatched += 1
            return
        key = (f.src, f.sport, f.dport)
        c = self.conns.get(key)
        if c is None and f.syn_only and f.dport in self.listening:
            c = Conn(self, f.dport, f.src, f.sport, self.sim.rng.randrange(1 << 30), client=False)
            c.respond, c.eager = self.listening[f.dport]
            c.stream = f.dport in self.streams
            c.rcv_nxt = f.seq + 1
            if self.timestamps:
                c.ts_offset = self.sim.rng.randrange(1 << 32)
                ts = timestamp_option(f.options)
                c.ts_ok = ts is not None
                c.ts_recent = ts[0] if ts is not None else 0
                if ts is not None:
                    c._watch_clock(ts[0])
            self.conns[key] = c
            c.segment(pk.SYN | pk.ACK, c.iss)
            c._arm()
            return
        if c is None:
            self.unmatched += 1
            rst = kernel_rst(frame) if self.rsts else None
            if rst is not None:
                self.emit(rst)
            return
        c.input(f)
