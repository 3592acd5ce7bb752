"""Middlebox applications on the HOST port of a simulated middlebox host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from dysco.runtime.core import _packet as pk
from dysco.runtime.core._twopath import M32, after
from dysco.runtime.core._types import FiveTuple
from dysco.runtime.sim._host import Host
from dysco.runtime.sim._net import MS
from dysco.runtime.sim._tcp import Conn, TcpStack, kernel_rst


class Forwarder:
    """A transparent middlebox (or a gateway's IP forwarding): every frame goes back out.  A
    segment for the host itself is not forwarded; with ``rsts`` its kernel answers it with a RST,
    as Linux does (it has no socket for it)."""

    def __init__(self, host: Host, *, rsts: bool = False) -> None:
        self.host = host
        self.answers = rsts
        self.frames = 0
        self.dropped = 0
        self.rsts = 0
        """RSTs its kernel sent in answer to segments for the host itself."""

    def receive(self, frame: bytes) -> None:
        if len(frame) >= 34 and int.from_bytes(frame[30:34], "big") == self.host.address:
            # for this host itself (a stray segment of a subsession its agent no longer knows)
            self.dropped += 1
            rst = kernel_rst(frame) if self.answers else None
            if rst is not None:
                self.rsts += 1
                self.host.emit(rst)
            return
        self.frames += 1
        self.host.emit(frame)


class Nat(Forwarder):
    """Rewrites the source of new sessions to the host's address and a port of its own."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.out: dict[FiveTuple, FiveTuple] = {}
        self.back: dict[tuple[int, int], tuple[int, int]] = {}
        self._next = 50000

    def receive(self, frame: bytes) -> None:
        f = pk.parse(frame)
        t = f.five_tuple
        if t.dst == self.host.address and (t.dst, t.dport) in self.back:
            addr, port = self.back[(t.dst, t.dport)]
            self.host.emit(replace(f, dst=addr, dport=port).to_bytes())
            return
        mapped = self.out.get(t)
        if mapped is None:
            if not f.syn_only:
                return
            mapped = FiveTuple(self.host.address, t.dst, self._next, t.dport)
            self._next += 1
            self.out[t] = mapped
            self.back[(mapped.src, mapped.sport)] = (t.src, t.sport)
        self.frames += 1
        self.host.emit(f.with_tuple(mapped).to_bytes())


class ChainClassifier(Forwarder):
    """Chooses the next hop of each new session itself (paper §2.2): asks its agent to put the
    addresses ``choose(session)`` at the head of the rest of the chain."""

    def __init__(self, host: Host, choose: Callable[[FiveTuple], list[int]]) -> None:
        super().__init__(host)
        self.choose = choose

    def receive(self, frame: bytes) -> None:
        f = pk.parse(frame)
        if f.syn_only and self.host.agent is not None:
            self.host.execute(self.host.agent.prepend_hops(f.five_tuple, self.choose(f.five_tuple)))
        super().receive(frame)


class Inserter(Forwarder):
    """An in-line middlebox that changes the length of the stream it forwards (an
    application-level gateway): it puts ``text`` in front of the first bytes the server sends
    in each session, shifts the sequence numbers of the server's later segments by its length
    and takes it off the client's acknowledgments.  Once it inserted, it declares that delta to
    its agent (:meth:`Agent.declare_delta`) unless ``declare`` is false (a middlebox that does
    not: a removal leaves the two ends out of step)."""

    def __init__(self, host: Host, text: bytes, *, declare: bool = True) -> None:
        super().__init__(host)
        self.text = text
        self.declare = declare
        self.start: dict[FiveTuple, int] = {}
        """Client-to-server five-tuple -> the server's first data sequence number."""

    def receive(self, frame: bytes) -> None:
        try:
            f = pk.parse(frame)
        except pk.MalformedFrame:
            f = None
        if f is None or f.dst == self.host.address:
            super().receive(frame)
            return
        n = len(self.text)
        back = f.five_tuple.reversed()
        if f.flags & pk.SYN and f.flags & pk.ACK:
            self.start[back] = (f.seq + 1) & M32
        elif back in self.start and f.payload:  # the server's bytes
            at = self.start[back]
            if f.seq == at:
                f = replace(f, payload=self.text + f.payload)
                if self.declare:
                    self.host.execute(self.host.agent.declare_delta(back, 0, n))  # type: ignore[union-attr]
            elif after(f.seq, at):
                f = replace(f, seq=(f.seq + n) & M32)
        elif f.five_tuple in self.start and f.flags & pk.ACK:  # the client's acknowledgments
            at = self.start[f.five_tuple]
            if after(f.ack, (at + n) & M32) or f.ack == (at + n) & M32:
                f = replace(f, ack=(f.ack - n) & M32)
            elif after(f.ack, at):
                f = replace(f, ack=at)  # part of the inserted text
        self.frames += 1
        self.host.emit(f.to_bytes())


POLL = 1 * MS


class SpliceProxy:
    """A TCP-terminating proxy (paper §4.2): accepts client connections on ``port``, opens its
    own connection to ``upstream``:``upstream_port`` for each and relays the bytes both ways.
    Once ``splice_after`` bytes went from the client to the server it hands both sockets to its
    agent (:meth:`Agent.splice`), relays what still arrives on them (the old path draining), and
    closes them when the agent reports ``spliced``: its FINs must never leave the NIC.
    ``connect_after``: how long after accepting it opens the upstream connection (a proxy that
    waits for the request, a slow resolver); ``timestamps``: its TCP uses timestamps."""

    def __init__(
        self,
        host: Host,
        port: int,
        upstream: int,
        upstream_port: int,
        splice_after: int,
        *,
        connect_after: int = 0,
        timestamps: bool = False,
    ) -> None:
        self.host = host
        self.tcp = TcpStack(host.sim, host.address, host.emit, timestamps)
        self.tcp.listen_stream(port)
        self.upstream = (upstream, upstream_port)
        self.splice_after = splice_after
        self.connect_after = connect_after
        self.pairs: list[tuple[Conn, Conn]] = []
        self._accepted: set[int] = set()
        self.relayed: dict[int, int] = {}
        self.splice_at: int | None = None
        self.closed_at: int | None = None

    def receive(self, frame: bytes) -> None:
        self.tcp.receive(frame)
        for c in list(self.tcp.conns.values()):
            if not c.client and c.established and id(c) not in self._accepted:
                self._accepted.add(id(c))
                if self.connect_after:
                    self.host.sim.after(self.connect_after, partial(self._connect, c))
                else:
                    self._connect(c)
        self._work()

    def _connect(self, inbound: Conn) -> None:
        self.pairs.append((inbound, self.tcp.connect(*self.upstream, b"", stream=True)))
        self._work()

    def _work(self) -> None:
        for inbound, outbound in self.pairs:
            self._relay(inbound, outbound)
            self._relay(outbound, inbound)
            self._maybe_splice(inbound, outbound)

    def _relay(self, src: Conn, dst: Conn) -> None:
        done = self.relayed.get(id(src), 0)
        if len(src.received) > done and not dst.want_fin:
            dst.data += bytes(src.received[done:])
            self.relayed[id(src)] = len(src.received)
        if src.peer_fin and not dst.want_fin and self.relayed.get(id(src), 0) == len(src.received):
            dst.want_fin = True
        dst.pump()

    def _maybe_splice(self, inbound: Conn, outbound: Conn) -> None:
        agent = self.host.agent
        ready = outbound.established and self.relayed.get(id(inbound), 0) >= self.splice_after
        if self.splice_at is None and agent is not None and ready:
            self.splice_at = self.host.sim.now
            a = self.host.address
            fwd = FiveTuple(inbound.remote, a, inbound.remote_port, inbound.local_port)
            out = FiveTuple(a, outbound.remote, outbound.local_port, outbound.remote_port)
            self.host.execute(agent.splice(self.host.sim.now, fwd, out))
            self.host.sim.after(POLL, lambda: self._close_when_spliced(inbound, outbound))

    def _close_when_spliced(self, inbound: Conn, outbound: Conn) -> None:
        if not any(n.event == "spliced" for n in self.host.notes):
            self.host.sim.after(POLL, lambda: self._close_when_spliced(inbound, outbound))
            return
        self.closed_at = self.host.sim.now
        for c in (inbound, outbound):  # close(): a FIN from this kernel, dropped by the NIC
            c.want_fin = True
            c.pump()
