"""Frames the kernel dropped before the pipeline saw them, counted by cause.

An AF_PACKET socket whose receive queue is full loses what arrives; the kernel counts it
(``PACKET_STATISTICS``: ``tp_packets`` queued, ``tp_drops`` lost, both reset by each read), and
nothing else does: the switch never sees those frames.  A send the kernel refuses (``ENOBUFS``
on a full transmit queue) is lost the same way.  :class:`Drops` keeps these counts per cause
for the switch's log and counters; its owners read their sockets' statistics on a timer
(:meth:`dysco.softswitch.server.SoftSwitchServer.poll_drops`).
"""

from __future__ import annotations

import collections
import socket
import struct
import threading

SOL_PACKET = 263
PACKET_STATISTICS = 6
_TPACKET_STATS = struct.Struct("=II")  # struct tpacket_stats: tp_packets, tp_drops


def receive_overruns(sock: socket.socket) -> int:
    """Frames the kernel dropped at ``sock``'s full receive queue since the last call (the
    kernel resets its counters on each read); 0 for a closed socket."""
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
    except OSError:
        return 0
    _, drops = _TPACKET_STATS.unpack(raw)
    return int(drops)


class Drops:
    """Counts by cause (``port 1 (veth0): receive queue full``); safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._reported: collections.Counter[str] = collections.Counter()

    def add(self, cause: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[cause] += n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def new_since_last(self) -> dict[str, int]:
        """What was added since the previous call, by cause (for a log line per change)."""
        with self._lock:
            fresh = {c: n - self._reported[c] for c, n in self._counts.items() if n > self._reported[c]}
            self._reported.update(fresh)
            return fresh
