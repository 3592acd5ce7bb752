"""A small TCP for simulated end hosts: handshake, data both ways, FIN, retransmission.

Enough to check Dysco end to end: go-back-N with a fixed window, cumulative ACKs, in-order
delivery, SYN/SYN-ACK/FIN retransmission with a doubling timeout.  A client sends its request
and a FIN; the server answers when the FIN arrived (``respond(request)``), then sends its FIN, or
(an *eager* server) sends ``respond(b"")`` and its FIN as soon as the connection is established.
Every ACK that acknowledges bytes this side never sent is recorded in ``bad_acks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dysco.runtime import _packet as pk
from dysco.runtime.sim._net import MS, Sim

MSS = 1000
WINDOW = 8
RTO = 200 * MS
MAX_RTO = 3200 * MS
MAX_RETRIES = 8
MAC_A = b"\x02\0\0\0\0\x01"
MAC_B = b"\x02\0\0\0\0\x02"
SYN_OPTIONS = b"\x02\x04\x05\xb4"  # MSS 1460


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

    def __post_init__(self) -> None:
        self.snd_max = self.iss + 1

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

    def input(self, f: pk.TcpFrame) -> None:
        if f.flags & pk.ACK and not 0 < (f.ack - self.iss) % (1 << 32) <= self.snd_max - self.iss:
            self.bad_acks.append(f.ack)
        if f.flags & pk.RST:
            self.reset = True
            return
        if f.flags & pk.SYN:
            if self.client and f.flags & pk.ACK and f.ack == self.iss + 1:
                if not self.established:
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


class TcpStack:
    """The TCP of one simulated host (its application on the HOST port)."""

    def __init__(self, sim: Sim, address: int, emit: Callable[[bytes], None]) -> None:
        self.sim = sim
        self.address = address
        self.emit = emit
        self.conns: dict[tuple[int, int, int], Conn] = {}
        self.listening: dict[int, tuple[Callable[[bytes], bytes], bool]] = {}
        self.streams: set[int] = set()
        self.retransmits = 0
        self.unmatched = 0
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
            self.conns[key] = c
            c.segment(pk.SYN | pk.ACK, c.iss)
            c._arm()
            return
        if c is None:
            self.unmatched += 1
            return
        c.input(f)
