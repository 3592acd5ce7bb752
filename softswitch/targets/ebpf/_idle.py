"""When each entry with an idle timeout may first be idle: a heap of due times per table.

The program writes an entry's last hit into its value; the control plane cannot know it
without reading the map.  What it does know is a lower bound: an entry written (or seen hit)
at ``t`` cannot be idle before ``t + timeout``.  The server's sweep therefore looks only at
entries whose bound has passed (:meth:`IdleTimer.pop_due`), reads their last hit, and puts
each back with its next bound: the hit plus the timeout, or, once reported, now plus the
timeout (a report is made once per idle period).  A write costs O(log n); a sweep costs
nothing for the entries that cannot be idle yet, so a million session entries with the
agent's five-minute timeout are not read every half second.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

K = TypeVar("K", bytes, int)
"""An entry's key within its table: the map key (hash, lpm) or the slot (scan)."""

COMPACT_AT = 1024
"""Rebuild the heap when it holds this many more items than tracked entries (rewrites leave
their earlier due times behind until those come up)."""


class IdleTimer(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[int, K]] = []
        self._due: dict[K, int] = {}
        self.reported: dict[K, int] = {}
        """Per entry, the last hit its latest expiry report saw (one report per idle period)."""

    def __len__(self) -> int:
        return len(self._due)

    def start(self, key: K, due_ns: int) -> None:
        """The entry was written: it may be idle from ``due_ns`` on, and is not reported yet."""
        self.reported.pop(key, None)
        self.schedule(key, due_ns)

    def stop(self, key: K) -> None:
        """The entry is gone, or has no timeout any more."""
        self._due.pop(key, None)
        self.reported.pop(key, None)

    def schedule(self, key: K, due_ns: int) -> None:
        self._due[key] = due_ns
        heapq.heappush(self._heap, (due_ns, key))
        if len(self._heap) > 2 * len(self._due) + COMPACT_AT:
            self._heap = [(t, k) for k, t in self._due.items()]
            heapq.heapify(self._heap)

    def pop_due(self, now_ns: int, budget: int) -> list[K]:
        """Up to ``budget`` entries whose bound is ``now_ns`` or earlier, earliest first; they
        are no longer scheduled (the caller schedules each again)."""
        out: list[K] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now_ns and len(out) < budget:
            t, key = heapq.heappop(heap)
            if due.get(key) == t:  # else a later write moved it: a stale item
                del due[key]
                out.append(key)
        return out
