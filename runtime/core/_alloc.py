"""Choosing middlebox instances and subsession ports.

Instance selection per middlebox type: ``round-robin``, ``hash`` (of the session's
five-tuple, stable across runs and hosts) or ``least-loaded`` (fewest live sessions this
agent has through the instance), among the instances that are not drained (``dysco fleet
drain``, docs/fleet.md): when every instance of a type is drained, :class:`AllDrained` (the
session is refused: a chain is not set up without its middlebox, nor through one being taken
out of service).  :meth:`Selector.replacement` picks where a drained instance's sessions go.

Ports: per next hop, never twice for a live subsession, reused after release.
"""

from __future__ import annotations

import zlib
from collections import Counter

from dysco.runtime.core._types import FiveTuple


class PortsExhausted(Exception):
    """Every port of the range is in use toward that next hop."""


class AllDrained(Exception):
    """Every instance of a middlebox type is drained."""


class Selector:
    """Picks instances; keeps the round-robin cursors, the load per instance and the drained
    instances."""

    def __init__(self) -> None:
        self._cursor: dict[str, int] = {}
        self.load: Counter[int] = Counter()
        self.drained: frozenset[int] = frozenset()

    def pick(self, type_name: str, instances: tuple[int, ...], mode: str, session: FiveTuple) -> int:
        if self.drained:
            instances = tuple(a for a in instances if a not in self.drained)
            if not instances:
                raise AllDrained(f"every instance of {type_name} is drained")
        if mode == "hash":
            key = f"{session.src}/{session.dst}/{session.sport}/{session.dport}/{session.proto}".encode()
            return instances[zlib.crc32(key) % len(instances)]
        if mode == "least-loaded":
            return min(instances, key=lambda a: (self.load[a], instances.index(a)))
        i = self._cursor.get(type_name, 0)
        self._cursor[type_name] = (i + 1) % len(instances)
        return instances[i % len(instances)]

    def replacement(self, instances: tuple[int, ...], avoid: frozenset[int]) -> int | None:
        """The least-loaded of ``instances`` that is neither drained nor in ``avoid`` (None:
        there is none)."""
        left = [a for a in instances if a not in self.drained and a not in avoid]
        return min(left, key=lambda a: (self.load[a], instances.index(a))) if left else None

    def acquire(self, addr: int) -> None:
        self.load[addr] += 1

    def release(self, addr: int) -> None:
        self.load[addr] -= 1
        if self.load[addr] <= 0:
            del self.load[addr]


class PortPool:
    """Source ports of the subsessions this agent opens, per next hop."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 < low <= high <= 65535:
            raise ValueError(f"port range {low}-{high}")
        self.low = low
        self.high = high
        self._used: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}

    def allocate(self, next_hop: int) -> int:
        used = self._used.setdefault(next_hop, set())
        size = self.high - self.low + 1
        if len(used) >= size:
            raise PortsExhausted(f"all {size} ports in use toward this next hop")
        port = self._next.get(next_hop, self.low)
        while port in used:
            port = port + 1 if port < self.high else self.low
        used.add(port)
        self._next[next_hop] = port + 1 if port < self.high else self.low
        return port

    def reserve(self, next_hop: int, port: int) -> bool:
        """Take ``port`` toward ``next_hop`` as in use (a session rebuilt after a restart); False
        when it is taken already.  A port outside the range (an agent that ran with another
        range) is never allocated, so nothing needs to hold it."""
        if not self.low <= port <= self.high:
            return True
        used = self._used.setdefault(next_hop, set())
        if port in used:
            return False
        used.add(port)
        self._next.setdefault(next_hop, port + 1 if port < self.high else self.low)
        return True

    def release(self, next_hop: int, port: int) -> None:
        used = self._used.get(next_hop)
        if used is None or port not in used:
            return
        used.discard(port)
        if not used:
            del self._used[next_hop]
            del self._next[next_hop]

    def in_use(self) -> int:
        return sum(len(u) for u in self._used.values())
