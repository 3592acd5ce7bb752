"""The in-process v1model switch: implements :class:`dysco.softswitch.api.Device`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .api import (
    ActionCall,
    Clock,
    CloneSession,
    CounterValue,
    DeviceStats,
    EntryError,
    MeterConfig,
    Program,
    Replica,
    TableEntry,
    WriteOp,
    write_each,
)
from .program import P4Program
from .targets.python.externs_rt import CounterArray, MeterArray, RegisterArray
from .targets.python.pipeline import Pipeline
from .targets.python.tables import Table

NO_PIPELINE = "No forwarding pipeline config set for this device"


class Switch:
    """One v1model switch.  Not thread-safe: callers serialise access.

    >>> sw = Switch(load_program("router.p4"))          # doctest: +SKIP
    >>> sw.write_entry("insert", TableEntry(...))        # doctest: +SKIP
    >>> sw.process(1, frame)                             # doctest: +SKIP
    [(2, b'...')]
    """

    def __init__(
        self,
        program: Program | None = None,
        *,
        cpu_port: int | None = None,
        drop_port: int = 511,
        clock: Clock = time.monotonic_ns,
    ) -> None:
        if cpu_port is not None and not (0 < cpu_port < 512 and cpu_port != drop_port):
            raise EntryError("INVALID_ARGUMENT", f"bad CPU port {cpu_port} (1..511, not the drop port)")
        self.cpu_port = cpu_port
        self.drop_port = drop_port
        self.clock = clock
        self.stats = DeviceStats()
        self._program: P4Program | None = None
        self._pipe: Pipeline | None = None
        if program is not None:
            self.load(program)

    @property
    def program(self) -> Program | None:
        return self._program

    def load(self, program: Program) -> None:
        if not isinstance(program, P4Program):
            raise EntryError("INVALID_ARGUMENT", f"not a softswitch program: {program!r}")
        self._pipe = Pipeline(program.compiled, program.name, self.clock, self.drop_port)
        self._program = program
        self.stats = DeviceStats()

    @property
    def pipe(self) -> Pipeline:
        if self._pipe is None:
            raise EntryError("FAILED_PRECONDITION", NO_PIPELINE)
        return self._pipe

    # ------------------------------------------------------------ packets
    def process(self, port: int, data: bytes) -> list[tuple[int, bytes]]:
        if not 0 <= port < 512:
            raise EntryError("INVALID_ARGUMENT", f"port {port} does not fit 9 bits")
        pipe = self.pipe
        before = pipe.parser_errors
        out = pipe.process(port, bytes(data))
        st = self.stats
        st.malformed += pipe.parser_errors - before
        st.packets_in += 1
        st.per_port_in[port] = st.per_port_in.get(port, 0) + 1
        st.packets_out += len(out)
        if not out:
            st.packets_dropped += 1
        return out

    def digests(self) -> list[tuple[str, tuple[int, ...]]]:
        """Digest messages produced since the last call, oldest first (name, field values)."""
        pipe = self.pipe
        out, pipe.digests = pipe.digests, []
        return out

    # ------------------------------------------------------------ tables
    def _table(self, table_id: int) -> Table:
        t = self.pipe.tables.get(table_id)
        if t is None:
            raise EntryError("NOT_FOUND", f"no table with id {table_id}")
        return t

    def write_entry(self, op: WriteOp, entry: TableEntry) -> None:
        self._table(entry.table_id).write(op, entry)

    def write_entries(self, updates: Sequence[tuple[WriteOp, TableEntry]]) -> list[EntryError | None]:
        return write_each(self, updates)

    def read_entries(self, table_id: int = 0) -> list[TableEntry]:
        if table_id:
            return self._table(table_id).read()
        return [e for t in self.pipe.tables.values() for e in t.read()]

    def default_entry(self, table_id: int) -> TableEntry:
        return self._table(table_id).default_entry()

    def set_default_entry(self, entry: TableEntry) -> None:
        if entry.match:
            raise EntryError("INVALID_ARGUMENT", "a default entry has no match fields")
        self._table(entry.table_id).set_default(entry.action)

    def reset_default_entry(self, table_id: int) -> None:
        self._table(table_id).reset_default()

    def expired_entries(self) -> list[TableEntry]:
        return [e for t in self.pipe.tables.values() for e in t.expired()]

    # ------------------------------------------------------------ packet replication engine
    def _check_replicas(self, replicas: Sequence[Replica]) -> tuple[Replica, ...]:
        seen = set()
        for r in replicas:
            if not 0 <= r.port < 512:
                raise EntryError("INVALID_ARGUMENT", f"replica port {r.port} does not fit 9 bits")
            if (r.port, r.instance) in seen:
                raise EntryError(
                    "INVALID_ARGUMENT", f"duplicate replica (port {r.port}, instance {r.instance})"
                )
            seen.add((r.port, r.instance))
        return tuple(replicas)

    def set_multicast_group(self, group_id: int, replicas: Sequence[Replica]) -> None:
        if not 0 < group_id < 65536:
            raise EntryError("INVALID_ARGUMENT", f"multicast group id {group_id} must be 1..65535")
        self.pipe.groups[group_id] = self._check_replicas(replicas)

    def delete_multicast_group(self, group_id: int) -> None:
        if self.pipe.groups.pop(group_id, None) is None:
            raise EntryError("NOT_FOUND", f"no multicast group {group_id}")

    def multicast_groups(self) -> dict[int, tuple[Replica, ...]]:
        return dict(self.pipe.groups)

    def set_clone_session(self, session: CloneSession) -> None:
        if not 0 < session.session_id < 32768:
            raise EntryError("INVALID_ARGUMENT", f"clone session id {session.session_id} must be 1..32767")
        self._check_replicas(session.replicas)
        self.pipe.sessions[session.session_id] = session

    def delete_clone_session(self, session_id: int) -> None:
        if self.pipe.sessions.pop(session_id, None) is None:
            raise EntryError("NOT_FOUND", f"no clone session {session_id}")

    def clone_sessions(self) -> dict[int, CloneSession]:
        return dict(self.pipe.sessions)

    # ------------------------------------------------------------ externs
    def _extern(self, extern_id: int, kind: type) -> object:
        obj = self.pipe.externs.get(extern_id)
        if not isinstance(obj, kind):
            raise EntryError(
                "NOT_FOUND", f"no {kind.__name__.replace('Array', '').lower()} with id {extern_id}"
            )
        return obj

    def read_counter(self, counter_id: int, index: int) -> CounterValue:
        c = self._extern(counter_id, CounterArray)
        assert isinstance(c, CounterArray)
        c.check(index)
        v = c.cells[index]
        return CounterValue(v.packets, v.bytes)

    def write_counter(self, counter_id: int, index: int, value: CounterValue) -> None:
        c = self._extern(counter_id, CounterArray)
        assert isinstance(c, CounterArray)
        c.check(index)
        c.cells[index] = CounterValue(value.packets, value.bytes)

    def counter_size(self, counter_id: int) -> int:
        c = self._extern(counter_id, CounterArray)
        assert isinstance(c, CounterArray)
        return c.size

    def read_direct_counter(self, entry: TableEntry) -> CounterValue:
        e = self._table(entry.table_id).find(entry)
        if e.counter is None:
            raise EntryError("INVALID_ARGUMENT", "the table has no direct counter")
        return CounterValue(e.counter.packets, e.counter.bytes)

    def write_direct_counter(self, entry: TableEntry, value: CounterValue) -> None:
        e = self._table(entry.table_id).find(entry)
        if e.counter is None:
            raise EntryError("INVALID_ARGUMENT", "the table has no direct counter")
        e.counter.packets, e.counter.bytes = value.packets, value.bytes

    def set_meter(self, meter_id: int, index: int, config: MeterConfig | None) -> None:
        m = self._extern(meter_id, MeterArray)
        assert isinstance(m, MeterArray)
        m.configure(index, config)

    def set_direct_meter(self, entry: TableEntry, config: MeterConfig | None) -> None:
        self._table(entry.table_id).set_direct_meter(entry, config)

    def read_register(self, register_id: int, index: int) -> int:
        r = self._extern(register_id, RegisterArray)
        assert isinstance(r, RegisterArray)
        r.check(index)
        return r.cells[index]

    def write_register(self, register_id: int, index: int, value: int) -> None:
        r = self._extern(register_id, RegisterArray)
        assert isinstance(r, RegisterArray)
        r.check(index, value)
        r.cells[index] = value


if TYPE_CHECKING:  # mypy checks that Switch implements the Device protocol
    from .api import Device

    def _is_device(sw: Switch) -> Device:
        return sw


__all__ = ["ActionCall", "Switch"]
