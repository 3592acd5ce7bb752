"""The simulated world: a fake clock, one event queue, and a faulty network between hosts.

Everything runs in one thread in event order; a run is a function of the seed.  The network
delivers IPv4 frames by destination address (hosts sit behind one router, so MAC addresses do
not matter) after a delay with jitter, and may lose, duplicate or reorder them, or drop
everything between two partitioned hosts.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from dysco.errors import InternalError

MS = 1_000_000


@dataclass(slots=True)
class Faults:
    delay: int = 1 * MS
    jitter: int = 0
    """Extra delay, uniform in [0, jitter]: frames overtake each other (reordering)."""
    loss: float = 0.0
    duplicate: float = 0.0
    drop_if: Callable[[bytes], bool] | None = None
    """Drop frames for which this returns True (targeted loss, e.g. the first SYN)."""


@dataclass(slots=True)
class Stats:
    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    partitioned: int = 0
    unroutable: int = 0


class Sim:
    """Fake clock plus event queue; ``now`` is in nanoseconds."""

    def __init__(self, seed: int = 0) -> None:
        self.now = 0
        self.rng = random.Random(seed)
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def clock(self) -> int:
        return self.now

    def at(self, when: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(when, self.now), self._seq, fn))

    def after(self, delay: int, fn: Callable[[], None]) -> None:
        self.at(self.now + delay, fn)

    def run(self, until: int | None = None, max_events: int = 50_000_000) -> None:
        """Process events in time order until the queue is empty or ``until`` (ns) is reached."""
        n = 0
        while self._queue and (until is None or self._queue[0][0] <= until):
            when, _, fn = heapq.heappop(self._queue)
            self.now = when
            fn()
            n += 1
            if n > max_events:
                raise InternalError(f"simulation did not settle after {max_events} events")
        if until is not None:
            self.now = max(self.now, until)

    def run_for(self, duration: int) -> None:
        self.run(self.now + duration)


Receiver = Callable[[bytes], None]


@dataclass
class Network:
    sim: Sim
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    _hosts: dict[int, Receiver] = field(default_factory=dict)
    _via: dict[int, int] = field(default_factory=dict)
    _partitions: set[frozenset[int]] = field(default_factory=set)
    _private: set[int] = field(default_factory=set)

    def attach(self, address: int, receive: Receiver, via: int | None = None, private: bool = False) -> None:
        """``receive`` gets the frames for ``address``; frames ``address`` sends go to ``via`` first
        (a gateway) when given.  A ``private`` address (behind a NAT, ``via``) is reachable only
        from its gateway."""
        self._hosts[address] = receive
        if via is not None:
            self._via[address] = via
            if private:
                self._private.add(address)

    def partition(self, a: int, b: int) -> None:
        self._partitions.add(frozenset((a, b)))

    def heal(self) -> None:
        self._partitions.clear()

    def send(self, sender: int, frame: bytes) -> None:
        if len(frame) < 34:
            self.stats.unroutable += 1
            return
        dst = int.from_bytes(frame[30:34], "big")
        hop = self._via.get(sender, dst)
        if hop == sender:
            hop = dst
        receive = self._hosts.get(hop)
        if hop in self._private and sender != self._via[hop]:
            receive = None  # a private address: only its gateway reaches it
        if receive is None:
            self.stats.unroutable += 1
            return
        self.stats.sent += 1
        if frozenset((sender, hop)) in self._partitions:
            self.stats.partitioned += 1
            return
        f = self.faults
        rng = self.sim.rng
        if f.drop_if is not None and f.drop_if(frame):
            self.stats.lost += 1
            return
        if f.loss and rng.random() < f.loss:
            self.stats.lost += 1
            return
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        self.stats.duplicated += copies - 1
        for _ in range(copies):
            delay = f.delay + (rng.randint(0, f.jitter) if f.jitter else 0)
            self.sim.after(delay, _deliver(receive, frame))


def _deliver(receive: Receiver, frame: bytes) -> Callable[[], None]:
    return lambda: receive(frame)
