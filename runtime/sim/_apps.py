"""Middlebox applications on the HOST port of a simulated middlebox host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from dysco.runtime import _packet as pk
from dysco.runtime._types import FiveTuple
from dysco.runtime.sim._host import Host


class Forwarder:
    """A transparent middlebox (or a gateway's IP forwarding): every frame goes back out."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.frames = 0
        self.dropped = 0

    def receive(self, frame: bytes) -> None:
        if len(frame) >= 34 and int.from_bytes(frame[30:34], "big") == self.host.address:
            self.dropped += 1  # for this host itself (a stray segment of a closed session): not forwarded
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
            self.host.agent.prepend_hops(f.five_tuple, self.choose(f.five_tuple))
        super().receive(frame)
