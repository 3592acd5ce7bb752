"""The ebpf target's packet replication engine and externs as the control plane sees them: clone
sessions (the HASH ``clones``), counters (PERCPU_ARRAY ``c<i>``), registers (ARRAY ``r<i>``) and
meters (ARRAY ``m<i>`` of ``struct meter``), and what it does not support yet (``UNIMPLEMENTED``).
:class:`ExternMaps` is the part of :class:`~.device.EbpfSwitch` that reads and writes them; the
device sets its maps up when it loads or re-adopts a program."""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence

from ...api import CloneSession, CounterValue, EntryError, MeterConfig, Replica, TableEntry
from . import cgen
from .libbpf import BpfMap

METER = struct.Struct("=II7Q")  # struct meter: lock, configured, cir, cburst, pir, pburst, tc, tp, last
METER_SIZE = METER.size
NS = 1_000_000_000
_U32 = struct.Struct("=I")


class ExternMaps:
    drop_port: int

    def __init__(self) -> None:
        self._externs: dict[int, tuple[cgen.ExternLayout, BpfMap]] = {}
        self._clones: BpfMap | None = None
        self._sessions: dict[int, CloneSession] = {}
        self._ncpu = 1

    def _adopt_clone_sessions(self) -> None:
        """The clone sessions the ``clones`` map holds (a re-adopted pipeline's); a class of
        service is not in the map (the target ignores it) and reads back as 0."""
        assert self._clones is not None
        for raw, value in self._clones.items():
            port, rid = struct.unpack("=II", value)
            sid = _U32.unpack(raw)[0]
            self._sessions[sid] = CloneSession(sid, (Replica(port, rid),))

    def meter_configs(self) -> dict[tuple[int, int], MeterConfig]:
        """The configured meter cells, by (meter id, index), as the maps hold them."""
        out: dict[tuple[int, int], MeterConfig] = {}
        for mid, (lay, m) in self._externs.items():
            if lay.kind != "meter":
                continue
            for raw, value in m.items():
                _, configured, cir, cburst, pir, pburst, *_ = METER.unpack(value)
                if configured:
                    out[(mid, _U32.unpack(raw)[0])] = MeterConfig(cir, cburst, pir, pburst)
        return out

    @staticmethod
    def _no(what: str) -> EntryError:
        return EntryError("UNIMPLEMENTED", f"{what} is not supported by the ebpf backend yet")

    def set_multicast_group(self, group_id: int, replicas: Sequence[Replica]) -> None:
        raise self._no("multicast")

    def delete_multicast_group(self, group_id: int) -> None:
        raise self._no("multicast")

    def multicast_groups(self) -> dict[int, tuple[Replica, ...]]:
        return {}

    def set_clone_session(self, session: CloneSession) -> None:
        """A clone session of one replica (bpf_clone_redirect sends one copy), whole packets."""
        if not 0 < session.session_id < 32768:
            raise EntryError("INVALID_ARGUMENT", f"clone session id {session.session_id} must be 1..32767")
        if len(session.replicas) != 1:
            raise self._no("a clone session with other than one replica")
        if session.packet_length_bytes:
            raise self._no("a clone session that truncates (packet_length_bytes)")
        rep = session.replicas[0]
        if not 0 <= rep.port < 512 or rep.port == self.drop_port:
            raise EntryError("INVALID_ARGUMENT", f"bad replica port {rep.port}")
        if self._clones is None:
            raise EntryError("FAILED_PRECONDITION", "no pipeline loaded")
        self._clones.update(struct.pack("=I", session.session_id), struct.pack("=II", rep.port, rep.instance))
        self._sessions[session.session_id] = session

    def delete_clone_session(self, session_id: int) -> None:
        if self._sessions.pop(session_id, None) is None:
            raise EntryError("NOT_FOUND", f"no clone session {session_id}")
        if self._clones is not None:
            self._clones.delete(struct.pack("=I", session_id))

    def clone_sessions(self) -> dict[int, CloneSession]:
        return dict(self._sessions)

    def _extern(self, extern_id: int, kind: str, index: int) -> tuple[cgen.ExternLayout, BpfMap]:
        found = self._externs.get(extern_id)
        if found is None or found[0].kind != kind:
            raise EntryError("NOT_FOUND", f"no {kind} {extern_id} in the ebpf program")
        if not 0 <= index < found[0].size:
            raise EntryError(
                "OUT_OF_RANGE", f"{kind} {found[0].name} has {found[0].size} cells, not {index + 1}"
            )
        return found

    def read_counter(self, counter_id: int, index: int) -> CounterValue:
        """The sum over CPUs of a per-CPU counter cell."""
        _, m = self._extern(counter_id, "counter", index)
        raw = m.lookup(struct.pack("=I", index)) or bytes(m.value_size)
        cells = struct.unpack(f"={2 * self._ncpu}Q", raw)
        return CounterValue(sum(cells[0::2]), sum(cells[1::2]))

    def write_counter(self, counter_id: int, index: int, value: CounterValue) -> None:
        """Put the value in the first CPU's cell and zero the others (their sum is what reads see)."""
        _, m = self._extern(counter_id, "counter", index)
        cells = [value.packets, value.bytes] + [0] * (2 * (self._ncpu - 1))
        m.update(struct.pack("=I", index), struct.pack(f"={2 * self._ncpu}Q", *cells))

    def counter_size(self, counter_id: int) -> int:
        return self._extern(counter_id, "counter", 0)[0].size

    def read_direct_counter(self, entry: TableEntry) -> CounterValue:
        raise self._no("a direct counter")

    def write_direct_counter(self, entry: TableEntry, value: CounterValue) -> None:
        raise self._no("a direct counter")

    def set_meter(self, meter_id: int, index: int, config: MeterConfig | None) -> None:
        """Configure (or, with None, unconfigure: all green) one meter cell; its buckets start full."""
        _, m = self._extern(meter_id, "meter", index)
        if config is None:
            value = METER.pack(0, 0, 0, 0, 0, 0, 0, 0, 0)
        else:
            c = config
            now = time.monotonic_ns()  # CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns
            value = METER.pack(0, 1, c.cir, c.cburst, c.pir, c.pburst, c.cburst * NS, c.pburst * NS, now)
        m.update(struct.pack("=I", index), value)

    def set_direct_meter(self, entry: TableEntry, config: MeterConfig | None) -> None:
        raise self._no("a direct meter")

    def read_register(self, register_id: int, index: int) -> int:
        _, m = self._extern(register_id, "register", index)
        return int(struct.unpack("=Q", m.lookup(struct.pack("=I", index)) or bytes(8))[0])

    def write_register(self, register_id: int, index: int, value: int) -> None:
        lay, m = self._extern(register_id, "register", index)
        m.update(struct.pack("=I", index), struct.pack("=Q", value & ((1 << lay.width) - 1)))
