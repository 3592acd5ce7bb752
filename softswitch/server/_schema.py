"""What the server needs to know about a P4Info, indexed by id, and bytestring rules.

P4Runtime carries values as big-endian bytestrings.  The canonical form (P4Runtime
>= 1.3, what PI emits) is the shortest encoding, with zero as a single ``\\x00``;
padded input is accepted as long as the value fits the declared bitwidth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.softswitch.api import MatchKind
from dysco.softswitch.server._errors import P4RuntimeError

_MATCH_KINDS: dict[int, MatchKind] = {
    p4info_pb2.MatchField.EXACT: "exact",
    p4info_pb2.MatchField.LPM: "lpm",
    p4info_pb2.MatchField.TERNARY: "ternary",
    p4info_pb2.MatchField.RANGE: "range",
    p4info_pb2.MatchField.OPTIONAL: "optional",
}


def decode_bytes(data: bytes, bitwidth: int, what: str) -> int:
    """The unsigned value of a P4Runtime bytestring of a ``bitwidth``-bit field."""
    if not data:
        raise P4RuntimeError("INVALID_ARGUMENT", f"{what}: empty bytestring")
    value = int.from_bytes(data, "big")
    if value.bit_length() > bitwidth:
        raise P4RuntimeError(
            "INVALID_ARGUMENT", f"{what}: Bytestring provided does not fit within {bitwidth} bits"
        )
    return value


def encode_bytes(value: int) -> bytes:
    """The canonical bytestring of a non-negative value."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


@dataclass(frozen=True, slots=True)
class MatchFieldInfo:
    id: int
    name: str
    bitwidth: int
    kind: MatchKind | None
    """None for match kinds the server does not know (e.g. ``selector``)."""


@dataclass(frozen=True, slots=True)
class ParamInfo:
    id: int
    name: str
    bitwidth: int


@dataclass(frozen=True, slots=True)
class ActionInfo:
    id: int
    name: str
    params: tuple[ParamInfo, ...]
    by_id: dict[int, ParamInfo] = field(init=False, compare=False, repr=False)
    shape: tuple[tuple[int, int], ...] = field(init=False, compare=False, repr=False)
    """(id, bitwidth) of the parameters in order: what a call that lists them in order carries."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {p.id: p for p in self.params})
        object.__setattr__(self, "shape", tuple((p.id, p.bitwidth) for p in self.params))

    def param(self, param_id: int) -> ParamInfo | None:
        return self.by_id.get(param_id)


@dataclass(frozen=True, slots=True)
class TableInfo:
    id: int
    name: str
    match_fields: dict[int, MatchFieldInfo]
    action_scopes: dict[int, int]
    """action id -> ActionRef.Scope"""
    const_default_action_id: int
    supports_timeout: bool
    is_const: bool
    direct_counter_id: int = 0
    direct_meter_id: int = 0
    exact_fields: tuple[tuple[int, int], ...] = field(init=False, compare=False, repr=False)
    """(id, bitwidth) of every match field by id when all are exact (what an entry of such a
    table lists, in that order, if its client sorts them as PI does); else empty."""

    needs_priority: bool = field(init=False, compare=False, repr=False)
    """Entries need a priority: the table has ternary, range or optional fields."""

    def __post_init__(self) -> None:
        fields = sorted(self.match_fields.values(), key=lambda f: f.id)
        exact = all(f.kind == "exact" for f in fields)
        object.__setattr__(self, "exact_fields", tuple((f.id, f.bitwidth) for f in fields) if exact else ())
        priority = any(f.kind in ("ternary", "range", "optional") for f in fields)
        object.__setattr__(self, "needs_priority", priority)


@dataclass(frozen=True, slots=True)
class ExternInfo:
    """An indexed counter, meter or register: its size and (registers) value width."""

    id: int
    name: str
    size: int
    bitwidth: int = 0


@dataclass(frozen=True, slots=True)
class ControllerHeader:
    """A ``@controller_header`` as P4Info lists it: fields in declaration order."""

    id: int
    name: str
    fields: tuple[ParamInfo, ...]

    @property
    def bits(self) -> int:
        return sum(f.bitwidth for f in self.fields)

    @property
    def nbytes(self) -> int:
        return (self.bits + 7) // 8


@dataclass(slots=True)
class Schema:
    """A P4Info indexed for the server; built once per committed pipeline."""

    p4info: p4info_pb2.P4Info
    tables: dict[int, TableInfo] = field(default_factory=dict)
    actions: dict[int, ActionInfo] = field(default_factory=dict)
    counters: dict[int, ExternInfo] = field(default_factory=dict)
    meters: dict[int, ExternInfo] = field(default_factory=dict)
    registers: dict[int, ExternInfo] = field(default_factory=dict)
    direct_counters: dict[int, int] = field(default_factory=dict)
    """direct counter id -> table id"""
    direct_meters: dict[int, int] = field(default_factory=dict)
    """direct meter id -> table id"""
    packet_in: ControllerHeader | None = None
    packet_out: ControllerHeader | None = None

    @classmethod
    def from_p4info(cls, p4info: Any) -> Schema:
        info: p4info_pb2.P4Info = p4info
        schema = cls(p4info=info)
        for a in info.actions:
            params = tuple(ParamInfo(p.id, p.name, p.bitwidth) for p in a.params)
            schema.actions[a.preamble.id] = ActionInfo(a.preamble.id, a.preamble.name, params)
        for dc in info.direct_counters:
            schema.direct_counters[dc.preamble.id] = dc.direct_table_id
        for dm in info.direct_meters:
            schema.direct_meters[dm.preamble.id] = dm.direct_table_id
        for t in info.tables:
            fields = {
                mf.id: MatchFieldInfo(mf.id, mf.name, mf.bitwidth, _MATCH_KINDS.get(mf.match_type))
                for mf in t.match_fields
            }
            direct = set(t.direct_resource_ids)
            schema.tables[t.preamble.id] = TableInfo(
                id=t.preamble.id,
                name=t.preamble.name,
                match_fields=fields,
                action_scopes={ref.id: ref.scope for ref in t.action_refs},
                const_default_action_id=t.const_default_action_id,
                supports_timeout=t.idle_timeout_behavior == p4info_pb2.Table.NOTIFY_CONTROL,
                is_const=t.is_const_table,
                direct_counter_id=next((i for i in direct if i in schema.direct_counters), 0),
                direct_meter_id=next((i for i in direct if i in schema.direct_meters), 0),
            )
        for c in info.counters:
            schema.counters[c.preamble.id] = ExternInfo(c.preamble.id, c.preamble.name, c.size)
        for m in info.meters:
            schema.meters[m.preamble.id] = ExternInfo(m.preamble.id, m.preamble.name, m.size)
        for r in info.registers:
            width = r.type_spec.bitstring.bit.bitwidth or r.type_spec.bitstring.int.bitwidth
            schema.registers[r.preamble.id] = ExternInfo(r.preamble.id, r.preamble.name, r.size, width)
        for cpm in info.controller_packet_metadata:
            header = ControllerHeader(
                cpm.preamble.id,
                cpm.preamble.name,
                tuple(ParamInfo(m.id, m.name, m.bitwidth) for m in cpm.metadata),
            )
            if cpm.preamble.name == "packet_in":
                schema.packet_in = header
            elif cpm.preamble.name == "packet_out":
                schema.packet_out = header
        return schema

    def table(self, table_id: int) -> TableInfo:
        info = self.tables.get(table_id)
        if info is None:
            raise P4RuntimeError("INVALID_ARGUMENT", f"Invalid table id {table_id}")
        return info

    def action(self, action_id: int) -> ActionInfo:
        info = self.actions.get(action_id)
        if info is None:
            raise P4RuntimeError("INVALID_ARGUMENT", f"Invalid action id {action_id}")
        return info

    def counter(self, counter_id: int) -> ExternInfo:
        return _lookup(self.counters, counter_id, "counter")

    def meter(self, meter_id: int) -> ExternInfo:
        return _lookup(self.meters, meter_id, "meter")

    def register(self, register_id: int) -> ExternInfo:
        return _lookup(self.registers, register_id, "register")


def _lookup(table: dict[int, ExternInfo], ident: int, what: str) -> ExternInfo:
    info = table.get(ident)
    if info is None:
        raise P4RuntimeError("INVALID_ARGUMENT", f"Invalid {what} id {ident}")
    return info
