"""A small in-memory Device with a hand-built P4Info, to test the server without the executor.

Program: ``fwd`` (exact on the destination MAC, idle timeout, direct counter, direct
meter) forwards with ``set_port(port)`` or drops; ``acl`` (ternary + range, needs
priorities) and ``route`` (lpm) are only written and read.  Frames from the CPU port
start with a 2-byte packet_out header (egress_port:9, pad:7) and go out on that
port; frames forwarded to the CPU port get a packet_in header (ingress_port:9,
pad:7, reason:8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dysco.errors import DyscoError
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.softswitch.api import (
    ActionCall,
    Clock,
    CloneSession,
    CounterValue,
    EntryError,
    MeterConfig,
    Replica,
    TableEntry,
    WriteOp,
    write_each,
)

T_FWD = 0x02000001
T_ACL = 0x02000002
T_ROUTE = 0x02000003
A_SET_PORT = 0x01000001
A_DROP = 0x01000002
A_NOACTION = 0x01000003
A_SET_PRIO = 0x01000004
C_COUNTER = 0x12000001
DC_FWD = 0x13000001
M_METER = 0x14000001
DM_FWD = 0x15000001
R_REG = 0x16000001
CPM_IN = 0x04000001
CPM_OUT = 0x04000002
CONFIG = b"fake-program-v1"


def _preamble(obj: object, ident: int, name: str) -> None:
    pre = obj.preamble  # type: ignore[attr-defined]
    pre.id = ident
    pre.name = name
    pre.alias = name.split(".")[-1]


def build_p4info() -> p4info_pb2.P4Info:
    info = p4info_pb2.P4Info()
    info.pkg_info.arch = "v1model"
    for ident, name, params in (
        (A_SET_PORT, "MyIngress.set_port", [("port", 9)]),
        (A_DROP, "MyIngress.drop", []),
        (A_NOACTION, "NoAction", []),
        (A_SET_PRIO, "MyIngress.set_prio", [("prio", 3), ("tag", 12)]),
    ):
        a = info.actions.add()
        _preamble(a, ident, name)
        for i, (pname, width) in enumerate(params, start=1):
            a.params.add(id=i, name=pname, bitwidth=width)
    mf = p4info_pb2.MatchField
    ref = p4info_pb2.ActionRef
    fwd = info.tables.add()
    _preamble(fwd, T_FWD, "MyIngress.fwd")
    fwd.match_fields.add(id=1, name="hdr.ethernet.dstAddr", bitwidth=48, match_type=mf.EXACT)
    fwd.action_refs.add(id=A_SET_PORT)
    fwd.action_refs.add(id=A_DROP)
    fwd.action_refs.add(id=A_NOACTION, scope=ref.DEFAULT_ONLY)
    fwd.idle_timeout_behavior = p4info_pb2.Table.NOTIFY_CONTROL
    fwd.direct_resource_ids.extend([DC_FWD, DM_FWD])
    fwd.size = 1024
    acl = info.tables.add()
    _preamble(acl, T_ACL, "MyIngress.acl")
    acl.match_fields.add(id=1, name="hdr.ethernet.etherType", bitwidth=16, match_type=mf.TERNARY)
    acl.match_fields.add(id=2, name="meta.l4_port", bitwidth=16, match_type=mf.RANGE)
    acl.match_fields.add(id=3, name="meta.flag", bitwidth=1, match_type=mf.OPTIONAL)
    acl.action_refs.add(id=A_SET_PRIO, scope=ref.TABLE_ONLY)
    acl.action_refs.add(id=A_NOACTION)
    acl.const_default_action_id = A_NOACTION
    acl.size = 64
    route = info.tables.add()
    _preamble(route, T_ROUTE, "MyIngress.route")
    route.match_fields.add(id=1, name="hdr.ipv4.dstAddr", bitwidth=32, match_type=mf.LPM)
    route.action_refs.add(id=A_SET_PORT)
    route.action_refs.add(id=A_DROP)
    route.size = 64
    c = info.counters.add()
    _preamble(c, C_COUNTER, "MyIngress.c")
    c.spec.unit = p4info_pb2.CounterSpec.BOTH
    c.size = 4
    dc = info.direct_counters.add()
    _preamble(dc, DC_FWD, "MyIngress.fwd_counter")
    dc.spec.unit = p4info_pb2.CounterSpec.BOTH
    dc.direct_table_id = T_FWD
    m = info.meters.add()
    _preamble(m, M_METER, "MyIngress.m")
    m.spec.unit = p4info_pb2.MeterSpec.BYTES
    m.size = 4
    dm = info.direct_meters.add()
    _preamble(dm, DM_FWD, "MyIngress.fwd_meter")
    dm.direct_table_id = T_FWD
    r = info.registers.add()
    _preamble(r, R_REG, "MyIngress.r")
    r.type_spec.bitstring.bit.bitwidth = 32
    r.size = 4
    cin = info.controller_packet_metadata.add()
    _preamble(cin, CPM_IN, "packet_in")
    cin.metadata.add(id=1, name="ingress_port", bitwidth=9)
    cin.metadata.add(id=2, name="_pad", bitwidth=7)
    cin.metadata.add(id=3, name="reason", bitwidth=8)
    cout = info.controller_packet_metadata.add()
    _preamble(cout, CPM_OUT, "packet_out")
    cout.metadata.add(id=1, name="egress_port", bitwidth=9)
    cout.metadata.add(id=2, name="_pad", bitwidth=7)
    return info


class FakeProgram:
    def __init__(self) -> None:
        self._p4info = build_p4info()

    @property
    def p4info(self) -> object:
        return self._p4info

    def device_config(self) -> bytes:
        return CONFIG


def load_fake_program(config: bytes) -> FakeProgram:
    if config != CONFIG:
        raise DyscoError(f"not a fake program: {config[:16]!r}")
    return FakeProgram()


Key = tuple[object, ...]


@dataclass
class _Slot:
    entry: TableEntry
    last_hit_ns: int
    reported: bool = False
    counter: CounterValue = field(default_factory=CounterValue)


class FakeDevice:
    """Implements :class:`dysco.softswitch.api.Device` for the fake program."""

    def __init__(self, clock: Clock, *, cpu_port: int | None = 64, drop_port: int = 511) -> None:
        self.cpu_port = cpu_port
        self.drop_port = drop_port
        self._clock = clock
        self._program: FakeProgram | None = None
        self.loads = 0
        self._reset()

    def _reset(self) -> None:
        self._tables: dict[int, dict[Key, _Slot]] = {T_FWD: {}, T_ACL: {}, T_ROUTE: {}}
        self._defaults: dict[int, TableEntry] = {}
        self._groups: dict[int, tuple[Replica, ...]] = {}
        self._sessions: dict[int, CloneSession] = {}
        self._counters: dict[tuple[int, int], CounterValue] = {}
        self._meters: dict[tuple[int, int], MeterConfig | None] = {}
        self._registers: dict[tuple[int, int], int] = {}
        self.processed: list[tuple[int, bytes]] = []

    @property
    def program(self) -> FakeProgram | None:
        return self._program

    def load(self, program: object) -> None:
        assert isinstance(program, FakeProgram)
        self._program = program
        self.loads += 1
        self._reset()

    def process(self, port: int, data: bytes) -> list[tuple[int, bytes]]:
        self.processed.append((port, data))
        if port == self.cpu_port:
            if len(data) < 2:
                raise DyscoError("short packet_out")
            out_port = int.from_bytes(data[:2], "big") >> 7
            return [(out_port, data[2:])]
        dst = int.from_bytes(data[:6], "big")
        slot = self._tables[T_FWD].get((T_FWD, dst))
        action = slot.entry.action if slot else self.default_entry(T_FWD).action
        if slot is not None:
            slot.last_hit_ns = self._clock()
            slot.reported = False
            slot.counter.packets += 1
            slot.counter.bytes += len(data)
        if action.action_id != A_SET_PORT:
            return []
        out = action.params[0]
        if out == self.cpu_port:
            header = ((port << 7) << 8 | 0x2A).to_bytes(3, "big")
            return [(out, header + data)]
        return [(out, data)]

    # tables
    def _key(self, entry: TableEntry) -> Key:
        if entry.table_id == T_FWD:
            if not entry.match:  # the default entry has no direct resources here, as in Switch
                raise EntryError("NOT_FOUND", "Cannot find match entry")
            return (T_FWD, entry.match[0].value)
        return (entry.table_id, entry.match, entry.priority)

    def write_entry(self, op: WriteOp, entry: TableEntry) -> None:
        table = self._tables[entry.table_id]
        key = self._key(entry)
        if op == "insert":
            if key in table:
                raise EntryError(
                    "ALREADY_EXISTS", "Match entry exists, use MODIFY if you wish to change action"
                )
            table[key] = _Slot(entry, self._clock())
        elif op == "modify":
            if key not in table:
                raise EntryError("NOT_FOUND", "Cannot find match entry")
            table[key] = _Slot(entry, self._clock(), counter=table[key].counter)
        else:
            if key not in table:
                raise EntryError("NOT_FOUND", "Cannot find match entry")
            del table[key]

    def write_entries(self, updates: Sequence[tuple[WriteOp, TableEntry]]) -> list[EntryError | None]:
        return write_each(self, updates)

    def read_entries(self, table_id: int = 0) -> list[TableEntry]:
        now = self._clock()
        ids = [table_id] if table_id else sorted(self._tables)
        return [
            replace(s.entry, time_since_last_hit_ns=now - s.last_hit_ns)
            for t in ids
            for s in self._tables[t].values()
        ]

    def default_entry(self, table_id: int) -> TableEntry:
        if table_id in self._defaults:
            return self._defaults[table_id]
        action = A_DROP if table_id == T_FWD else A_NOACTION
        return TableEntry(table_id, (), ActionCall(action), is_default_action=True)

    def set_default_entry(self, entry: TableEntry) -> None:
        self._defaults[entry.table_id] = entry

    def reset_default_entry(self, table_id: int) -> None:
        self._defaults.pop(table_id, None)

    def expired_entries(self) -> list[TableEntry]:
        now = self._clock()
        out = []
        for slot in self._tables[T_FWD].values():
            timeout = slot.entry.idle_timeout_ns
            if timeout and not slot.reported and now - slot.last_hit_ns >= timeout:
                slot.reported = True
                out.append(slot.entry)
        return out

    def _slot(self, entry: TableEntry) -> _Slot:
        slot = self._tables[entry.table_id].get(self._key(entry))
        if slot is None:
            raise EntryError("NOT_FOUND", "Cannot find match entry")
        return slot

    # packet replication engine
    def set_multicast_group(self, group_id: int, replicas: Sequence[Replica]) -> None:
        self._groups[group_id] = tuple(replicas)

    def delete_multicast_group(self, group_id: int) -> None:
        del self._groups[group_id]

    def multicast_groups(self) -> dict[int, tuple[Replica, ...]]:
        return dict(self._groups)

    def set_clone_session(self, session: CloneSession) -> None:
        self._sessions[session.session_id] = session

    def delete_clone_session(self, session_id: int) -> None:
        del self._sessions[session_id]

    def clone_sessions(self) -> dict[int, CloneSession]:
        return dict(self._sessions)

    # externs
    def read_counter(self, counter_id: int, index: int) -> CounterValue:
        v = self._counters.get((counter_id, index), CounterValue())
        return CounterValue(v.packets, v.bytes)

    def write_counter(self, counter_id: int, index: int, value: CounterValue) -> None:
        self._counters[(counter_id, index)] = value

    def counter_size(self, counter_id: int) -> int:
        return 4

    def read_direct_counter(self, entry: TableEntry) -> CounterValue:
        c = self._slot(entry).counter
        return CounterValue(c.packets, c.bytes)

    def write_direct_counter(self, entry: TableEntry, value: CounterValue) -> None:
        self._slot(entry).counter = CounterValue(value.packets, value.bytes)

    def set_meter(self, meter_id: int, index: int, config: MeterConfig | None) -> None:
        self._meters[(meter_id, index)] = config

    def set_direct_meter(self, entry: TableEntry, config: MeterConfig | None) -> None:
        self._slot(entry)

    def read_register(self, register_id: int, index: int) -> int:
        return self._registers.get((register_id, index), 0)

    def write_register(self, register_id: int, index: int, value: int) -> None:
        self._registers[(register_id, index)] = value
