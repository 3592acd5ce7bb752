"""The pure part of ``bench.punt_timeline``: a session's SYN and SYN+ACK found in frames
captured with kernel timestamps, and the gaps between them named by stage.

A capture is a list of :class:`Frame`: where it was seen (:class:`Where`: a NIC's host or network
port, its CPU veth, or the P4Runtime connection between its switch and its agent on loopback),
which way it went there, its kernel timestamp and its bytes.  The client's SYN keeps its
sequence number on every hop (a Dysco SYN's deltas are zero), so :func:`syn_events` finds it
anywhere as the four bytes of its initial sequence number followed, nine bytes on, by TCP flags
with SYN and without ACK; the same search finds the SYN+ACK by its acknowledgment number.  Inside
a P4Runtime message the frame is the packet's ``payload`` field, copied verbatim, so the search
also finds the packet-in and packet-out that carry it.

Along one SYN's way, in time order, consecutive events give the stages (:data:`STAGES`):

* ``nic_to_cpu``: a port's frame to its punt on the CPU veth (the TC program, the redirect);
* ``switch_packet_in``: the punt on the CPU veth to the packet-in on the P4Runtime connection
  (the switch reads the veth, converts, hands the message to its stream's gRPC thread);
* ``agent``: the packet-in to the agent's packet-out on that connection (gRPC in the agent, its
  intake, the core, the Write issued, the packet-out encoded);
* ``switch_packet_out``: that packet-out to the frame on the CPU veth (gRPC in the switch, its
  stream reader, the injection);
* ``cpu_to_nic``: the injected frame to the frame leaving a port (the TC program again);
* ``network``: a frame leaving one port to the next port seeing it (veths and the router, or a
  middlebox application's kernel between its NIC's two crossings);
* ``fast_path``: a frame entering a port to it leaving the other one, no punt between.
"""

from __future__ import annotations

import enum
import itertools
import statistics
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SYN, ACK = 0x02, 0x10

STAGES = (
    "nic_to_cpu",
    "switch_packet_in",
    "agent",
    "switch_packet_out",
    "cpu_to_nic",
    "network",
    "fast_path",
)


class Where(enum.Enum):
    HOST_PORT = "host_port"
    NET_PORT = "net_port"
    CPU = "cpu"
    GRPC = "grpc"


@dataclass(frozen=True, slots=True)
class Frame:
    t_ns: int
    host: str
    where: Where
    outgoing: bool
    """On a port or the CPU veth: sent from there (the NIC's or the switch's side); on the
    P4Runtime connection: from the agent to its switch (a packet-out), else a packet-in."""
    data: bytes


@dataclass(frozen=True, slots=True)
class Event:
    t_ns: int
    host: str
    where: Where
    outgoing: bool

    @property
    def kind(self) -> str:
        return f"{self.where.value}_{'out' if self.outgoing else 'in'}"


def carries(data: bytes, number: int, *, ack: bool) -> bool:
    """Whether ``data`` holds a TCP header whose sequence number (``ack``: acknowledgment
    number) is ``number``, with SYN set and ACK set as ``ack`` says."""
    needle = struct.pack("!I", number)
    flags_at = 9 if not ack else 5
    i = data.find(needle)
    while i >= 0:
        j = i + flags_at
        if j < len(data) and data[j] & SYN and bool(data[j] & ACK) == ack:
            return True
        i = data.find(needle, i + 1)
    return False


def syn_events(frames: Iterable[Frame], isn: int) -> list[Event]:
    """The SYN with initial sequence number ``isn`` wherever it was seen, in time order."""
    return sorted(
        (Event(f.t_ns, f.host, f.where, f.outgoing) for f in frames if carries(f.data, isn, ack=False)),
        key=lambda e: e.t_ns,
    )


def synack_events(frames: Iterable[Frame], isn: int) -> list[Event]:
    """The SYN+ACK answering that SYN (acknowledgment ``isn + 1``), in time order."""
    want = (isn + 1) & 0xFFFFFFFF
    return sorted(
        (Event(f.t_ns, f.host, f.where, f.outgoing) for f in frames if carries(f.data, want, ack=True)),
        key=lambda e: e.t_ns,
    )


_STAGE_OF = {
    ("host_port_in", "cpu_in"): "nic_to_cpu",
    ("net_port_in", "cpu_in"): "nic_to_cpu",
    ("cpu_in", "grpc_in"): "switch_packet_in",
    ("grpc_in", "grpc_out"): "agent",
    ("grpc_out", "cpu_out"): "switch_packet_out",
    ("cpu_out", "host_port_out"): "cpu_to_nic",
    ("cpu_out", "net_port_out"): "cpu_to_nic",
    ("host_port_in", "net_port_out"): "fast_path",
    ("net_port_in", "host_port_out"): "fast_path",
}


def stage(a: Event, b: Event) -> str | None:
    """The stage between two consecutive events of one packet's way (None: they do not follow
    each other on any way the program sends a packet, e.g. a retransmission in between)."""
    if a.where in (Where.HOST_PORT, Where.NET_PORT) and a.outgoing:
        return "network" if b.where in (Where.HOST_PORT, Where.NET_PORT) and not b.outgoing else None
    if a.host != b.host:
        return None
    return _STAGE_OF.get((a.kind, b.kind))


@dataclass
class Way:
    """One packet's way through the chain, cut into stages."""

    total_ns: int
    stages: dict[str, int]
    """Stage -> ns spent in it along the whole way."""
    punts: dict[str, int]
    """Host -> punts to its agent on the way."""
    by_hop: list[tuple[str, str, int]]
    """(host, stage, ns) in order, network gaps under the host they lead to."""
    odd: int
    """Gaps no stage names (a retransmission, a frame the capture missed)."""


def way(events: Sequence[Event]) -> Way | None:
    """The stages of one way (None for fewer than two events)."""
    if len(events) < 2:
        return None
    stages = dict.fromkeys(STAGES, 0)
    punts: dict[str, int] = {}
    by_hop: list[tuple[str, str, int]] = []
    odd = 0
    for a, b in itertools.pairwise(events):
        name = stage(a, b)
        if name is None:
            odd += 1
            continue
        stages[name] += b.t_ns - a.t_ns
        by_hop.append((b.host, name, b.t_ns - a.t_ns))
        if name == "agent":
            punts[b.host] = punts.get(b.host, 0) + 1
    return Way(events[-1].t_ns - events[0].t_ns, stages, punts, by_hop, odd)


def medians_ms(ways: Sequence[Way]) -> dict[str, float]:
    """Per stage the median over ``ways`` of the time spent in it, in ms, and the total's."""
    if not ways:
        return {}
    out = {name: round(statistics.median(w.stages[name] for w in ways) / 1e6, 3) for name in STAGES}
    out["total"] = round(statistics.median(w.total_ns for w in ways) / 1e6, 3)
    return out


def per_host_ms(ways: Sequence[Way], hosts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per host (in ``hosts`` order) and stage: the median time of that stage there per way,
    in ms (network gaps count at the host they lead to); hosts a way never reached are left out."""
    out: dict[str, dict[str, float]] = {}
    for h in hosts:
        per: dict[str, list[int]] = {}
        for w in ways:
            sums: dict[str, int] = {}
            for host, name, ns in w.by_hop:
                if host == h:
                    sums[name] = sums.get(name, 0) + ns
            for name, ns in sums.items():
                per.setdefault(name, []).append(ns)
        if per:
            out[h] = {name: round(statistics.median(v) / 1e6, 3) for name in STAGES if (v := per.get(name))}
    return out
