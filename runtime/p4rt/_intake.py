"""The agent's intake: what waits for the core, by priority, with a bound on new-session SYNs.

The stream reader puts every packet-in here as soon as it is read; the worker takes batches.
Two lanes:

* ``FIRST``: what keeps live sessions right: teardown copies, control messages, two-path punts,
  tagged SYNs (a setup this agent already took), idle-timeout notifications, and the service's
  own events (timers, management requests, state-hook outcomes).  Taken first, in arrival order.
* ``SETUP``: punts that would start a new session (policy SYNs and Dysco SYNs), the only ones a
  flood from outside can produce in numbers.  At most ``setup_bound`` wait; a newer one pushes
  the oldest out (counted as ``drops.syn_backlog``): a SYN that waited that long is of no use,
  its host has retransmitted it or is about to.

Punts of the ``FIRST`` lane are rate-limited in the NIC and come a few per session; their lane
still has a bound (``first_bound``, far above what the limits let through in a second), beyond
which new ones are refused and counted as ``drops.intake_full``.  The service's own events are
never refused: there are a handful of them at any time.

Within a lane the order is kept, and across lanes per flow: a punt may carry the key of its
flow (:func:`flow_key`, the same for both directions), and a ``FIRST`` punt whose flow has SYNs
waiting in the ``SETUP`` lane takes those SYNs with it, ahead of itself, so the core sees one
flow's packets in the order the NIC punted them (a FIN or RST copy never before the SYN it
follows).  Control messages carry their own state and no key.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from typing import Generic, TypeAlias, TypeVar

from dysco.errors import InternalError
from dysco.runtime.core._events import Reason

T = TypeVar("T")

SETUP_BOUND = 512
"""New-session SYNs waiting at most (a fraction of a second of what the default limits let in)."""
FIRST_BOUND = 16384
"""Other punts and notifications waiting at most."""


class Lane(enum.Enum):
    FIRST = "first"
    SETUP = "setup"


SETUP_REASONS = frozenset({Reason.POLICY_SYN, Reason.DYSCO_SYN})
"""The punt reasons that start a session (the rest go in the ``FIRST`` lane)."""


def lane_of(reason: Reason) -> Lane:
    return Lane.SETUP if reason in SETUP_REASONS else Lane.FIRST


FlowKey: TypeAlias = bytes


def flow_key(frame: bytes) -> FlowKey | None:
    """The addresses and ports of an IPv4 TCP frame, the lower endpoint first (both directions of
    a flow have the same key); None for anything else.  A slice of the frame, not a parse: it
    runs in the stream reader for every punt."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ports = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < ports + 4:
        return None
    a = frame[26:30] + frame[ports : ports + 2]
    b = frame[30:34] + frame[ports + 2 : ports + 4]
    return a + b if a <= b else b + a


class Intake(Generic[T]):
    """Two FIFO lanes and a wake-up for the one consumer.  ``counters`` gets the drops."""

    def __init__(
        self,
        counters: collections.Counter[str],
        setup_bound: int = SETUP_BOUND,
        first_bound: int = FIRST_BOUND,
    ) -> None:
        if setup_bound < 1 or first_bound < 1:
            raise InternalError(f"intake bounds must be at least 1, not {setup_bound}, {first_bound}")
        self.counters = counters
        self.setup_bound = setup_bound
        self.first_bound = first_bound
        self._first: collections.deque[T] = collections.deque()
        self._setup: collections.deque[tuple[T, FlowKey | None]] = collections.deque()
        self._setup_flows: collections.Counter[FlowKey] = collections.Counter()
        """How many of the waiting SYNs each flow has."""
        self._waiter: asyncio.Future[None] | None = None
        self.most = {Lane.FIRST: 0, Lane.SETUP: 0}
        """The most that waited in each lane so far (for status)."""

    def __len__(self) -> int:
        return len(self._first) + len(self._setup)

    def waiting(self) -> dict[str, int]:
        return {Lane.FIRST.value: len(self._first), Lane.SETUP.value: len(self._setup)}

    def put(self, item: T) -> None:
        """One of the service's own events (never refused)."""
        self._first.append(item)
        self._track(Lane.FIRST, len(self._first))

    def put_punt(self, item: T, lane: Lane, flow: FlowKey | None = None) -> bool:
        """A packet-in or notification from the NIC; False when it was refused (``FIRST`` lane full).
        In the ``SETUP`` lane it is always taken, and the oldest waiting goes when it is full.
        ``flow``: its flow's key, which keeps it behind that flow's SYNs (see the module)."""
        if lane is Lane.SETUP:
            if len(self._setup) >= self.setup_bound:
                self._forget(self._setup.popleft())
                self.counters["drops.syn_backlog"] += 1
            self._setup.append((item, flow))
            if flow is not None:
                self._setup_flows[flow] += 1
            self._track(Lane.SETUP, len(self._setup))
            return True
        if len(self._first) >= self.first_bound:
            self.counters["drops.intake_full"] += 1
            return False
        if flow is not None and flow in self._setup_flows:
            self._promote(flow)
        self._first.append(item)
        self._track(Lane.FIRST, len(self._first))
        return True

    def _promote(self, flow: FlowKey) -> None:
        """The flow's waiting SYNs move to the end of the ``FIRST`` lane, in their order."""
        keep: collections.deque[tuple[T, FlowKey | None]] = collections.deque()
        for item, key in self._setup:
            if key == flow:
                self._first.append(item)
                self.counters["intake.promoted"] += 1
            else:
                keep.append((item, key))
        self._setup = keep
        del self._setup_flows[flow]

    def _forget(self, taken: tuple[T, FlowKey | None]) -> T:
        item, flow = taken
        if flow is not None:
            left = self._setup_flows[flow] - 1
            if left:
                self._setup_flows[flow] = left
            else:
                del self._setup_flows[flow]
        return item

    def _track(self, lane: Lane, n: int) -> None:
        if n > self.most[lane]:
            self.most[lane] = n
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self, first_limit: int, setup_limit: int) -> list[T]:
        """Up to ``first_limit`` from the ``FIRST`` lane, then, when that lane is empty, up to
        ``setup_limit`` from the ``SETUP`` lane; oldest first."""
        batch: list[T] = []
        first, setup = self._first, self._setup
        while first and len(batch) < first_limit:
            batch.append(first.popleft())
        if not first:
            n = 0
            while setup and n < setup_limit:
                batch.append(self._forget(setup.popleft()))
                n += 1
        return batch

    async def wait(self) -> None:
        """Until something waits in either lane."""
        while not self._first and not self._setup:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
