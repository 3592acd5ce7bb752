"""Write and Read of each P4Runtime entity kind against a :class:`Device`.

Called with the device lock held.  Everything here raises :class:`P4RuntimeError`;
``EntryError`` from the device is translated by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.softswitch.api import CounterValue, Device, MeterConfig, TableEntry, WriteOp
from dysco.softswitch.server._convert import (
    clone_session_from_proto,
    clone_session_to_proto,
    counter_value_from_proto,
    counter_value_to_proto,
    entry_key,
    meter_config_from_proto,
    meter_config_to_proto,
    replicas_from_proto,
    replicas_to_proto,
    table_entry_from_proto,
    table_entry_to_proto,
)
from dysco.softswitch.server._errors import P4RuntimeError
from dysco.softswitch.server._schema import ExternInfo, Schema, TableInfo, decode_bytes, encode_bytes

Entity: TypeAlias = "p4runtime_pb2.Entity"

_OPS: dict[int, WriteOp] = {
    p4runtime_pb2.Update.INSERT: "insert",
    p4runtime_pb2.Update.MODIFY: "modify",
    p4runtime_pb2.Update.DELETE: "delete",
}

EntryKey = tuple[object, ...]


@dataclass
class MeterStore:
    """Meter configurations as written (the Device contract has no meter read-back)."""

    indexed: dict[tuple[int, int], MeterConfig] = field(default_factory=dict)
    direct: dict[EntryKey, MeterConfig] = field(default_factory=dict)


def _invalid(message: str) -> P4RuntimeError:
    return P4RuntimeError("INVALID_ARGUMENT", message)


def _modify_only(op: WriteOp, what: str) -> None:
    if op != "modify":
        raise _invalid(f"{what} entries can only be modified (MODIFY), not {op}ed")


# --- Write ----------------------------------------------------------------------------------------


def write_update(device: Device, schema: Schema, meters: MeterStore, update: p4runtime_pb2.Update) -> None:
    op = _OPS.get(update.type)
    if op is None:
        raise _invalid("Update type is UNSPECIFIED")
    kind = update.entity.WhichOneof("entity")
    if kind == "table_entry":
        _write_table_entry(device, schema, meters, op, update.entity.table_entry)
    elif kind == "packet_replication_engine_entry":
        _write_pre(device, op, update.entity.packet_replication_engine_entry)
    elif kind == "counter_entry":
        _write_counter(device, schema, op, update.entity.counter_entry)
    elif kind == "direct_counter_entry":
        _modify_only(op, "DirectCounter")
        dce = update.entity.direct_counter_entry
        entry = _direct_entry(schema, dce.table_entry, "direct_counter_id")
        device.write_direct_counter(entry, counter_value_from_proto(dce.data))
    elif kind == "meter_entry":
        _write_meter(device, schema, meters, op, update.entity.meter_entry)
    elif kind == "direct_meter_entry":
        _modify_only(op, "DirectMeter")
        dme = update.entity.direct_meter_entry
        entry = _direct_entry(schema, dme.table_entry, "direct_meter_id")
        config = meter_config_from_proto(dme.config) if dme.HasField("config") else None
        device.set_direct_meter(entry, config)
        _remember(meters.direct, entry_key(entry), config)
    elif kind == "register_entry":
        _write_register(device, schema, op, update.entity.register_entry)
    elif kind is None:
        raise _invalid("Update has no entity")
    else:
        raise P4RuntimeError("UNIMPLEMENTED", f"Writing {kind} is not supported by softswitch")


def plain_table_write(schema: Schema, update: p4runtime_pb2.Update) -> tuple[WriteOp, TableEntry] | None:
    """The op and entry of an update the device takes as it is (an entry of a table without
    direct counters or meters, not the default entry), checked as :func:`write_update` checks
    it; None for any other update (:func:`write_update` applies those)."""
    entity = update.entity
    if entity.WhichOneof("entity") != "table_entry":
        return None
    msg = entity.table_entry
    if msg.is_default_action:
        return None
    op = _OPS.get(update.type)
    if op is None:
        raise _invalid("Update type is UNSPECIFIED")
    table = schema.table(msg.table_id)
    if table.direct_counter_id or table.direct_meter_id:
        return None
    entry = table_entry_from_proto(schema, msg, need_action=op != "delete")
    if table.is_const:
        raise P4RuntimeError("PERMISSION_DENIED", f"{table.name}: cannot write to a const table")
    return op, entry


def _remember(
    store: dict[EntryKey, MeterConfig] | dict[tuple[int, int], MeterConfig],
    key: object,
    config: MeterConfig | None,
) -> None:
    if config is None:
        store.pop(key, None)  # type: ignore[call-overload]
    else:
        store[key] = config  # type: ignore[index]


def _write_table_entry(
    device: Device, schema: Schema, meters: MeterStore, op: WriteOp, msg: p4runtime_pb2.TableEntry
) -> None:
    need_action = op == "insert" or (op == "modify" and not msg.is_default_action)
    entry = table_entry_from_proto(schema, msg, need_action=need_action)
    table = schema.table(entry.table_id)
    if entry.is_default_action:
        if op != "modify":
            raise _invalid(f"{table.name}: the default entry can only be modified (MODIFY)")
        if table.const_default_action_id:
            raise P4RuntimeError("PERMISSION_DENIED", f"{table.name}: cannot change a const default action")
        if msg.HasField("action"):
            device.set_default_entry(entry)
        else:
            device.reset_default_entry(entry.table_id)
        return
    if table.is_const:
        raise P4RuntimeError("PERMISSION_DENIED", f"{table.name}: cannot write to a const table")
    device.write_entry(op, entry)
    key = entry_key(entry)
    if op == "delete":
        meters.direct.pop(key, None)
        return
    if msg.HasField("counter_data") and table.direct_counter_id:
        device.write_direct_counter(entry, counter_value_from_proto(msg.counter_data))
    if msg.HasField("meter_config") and table.direct_meter_id:
        config = meter_config_from_proto(msg.meter_config)
        device.set_direct_meter(entry, config)
        meters.direct[key] = config


def _direct_entry(schema: Schema, msg: p4runtime_pb2.TableEntry, attr: str) -> TableEntry:
    table = schema.table(msg.table_id)
    if not getattr(table, attr):
        raise _invalid(f"{table.name}: the table has no direct {attr.split('_')[1]}")
    return table_entry_from_proto(schema, msg, need_action=False)


def _write_pre(device: Device, op: WriteOp, msg: p4runtime_pb2.PacketReplicationEngineEntry) -> None:
    kind = msg.WhichOneof("type")
    if kind == "multicast_group_entry":
        group = msg.multicast_group_entry
        gid = group.multicast_group_id
        if gid == 0:
            raise _invalid("0 is not a valid multicast group id")
        exists = gid in device.multicast_groups()
        if op == "insert" and exists:
            raise P4RuntimeError("ALREADY_EXISTS", f"Multicast group {gid} already exists")
        if op != "insert" and not exists:
            raise P4RuntimeError("NOT_FOUND", f"Multicast group {gid} does not exist")
        if op == "delete":
            device.delete_multicast_group(gid)
        else:
            device.set_multicast_group(gid, replicas_from_proto(group.replicas, f"multicast group {gid}"))
    elif kind == "clone_session_entry":
        sid = msg.clone_session_entry.session_id
        exists = sid in device.clone_sessions()
        if sid == 0:
            raise _invalid("0 is not a valid session id")
        if op == "insert" and exists:
            raise P4RuntimeError("ALREADY_EXISTS", f"Clone session {sid} already exists")
        if op != "insert" and not exists:
            raise P4RuntimeError("NOT_FOUND", f"Clone session {sid} does not exist")
        if op == "delete":
            device.delete_clone_session(sid)
        else:
            device.set_clone_session(clone_session_from_proto(msg.clone_session_entry))
    else:
        raise _invalid("PacketReplicationEngineEntry has no multicast group or clone session")


def _indices(info: ExternInfo, msg: object, what: str) -> range:
    """The indices an entry names: one if its ``index`` is set, else all of them."""
    if not msg.HasField("index"):  # type: ignore[attr-defined]
        return range(info.size)
    index: int = msg.index.index  # type: ignore[attr-defined]
    if not 0 <= index < info.size:
        raise P4RuntimeError("OUT_OF_RANGE", f"{what} {info.name}: index {index} outside 0..{info.size - 1}")
    return range(index, index + 1)


def _write_counter(device: Device, schema: Schema, op: WriteOp, msg: p4runtime_pb2.CounterEntry) -> None:
    _modify_only(op, "Counter")
    info = schema.counter(msg.counter_id)
    value = counter_value_from_proto(msg.data)
    for i in _indices(info, msg, "counter"):
        device.write_counter(info.id, i, CounterValue(value.packets, value.bytes))


def _write_meter(
    device: Device, schema: Schema, meters: MeterStore, op: WriteOp, msg: p4runtime_pb2.MeterEntry
) -> None:
    _modify_only(op, "Meter")
    info = schema.meter(msg.meter_id)
    config = meter_config_from_proto(msg.config) if msg.HasField("config") else None
    for i in _indices(info, msg, "meter"):
        device.set_meter(info.id, i, config)
        _remember(meters.indexed, (info.id, i), config)


def _write_register(device: Device, schema: Schema, op: WriteOp, msg: p4runtime_pb2.RegisterEntry) -> None:
    _modify_only(op, "Register")
    info = schema.register(msg.register_id)
    kind = msg.data.WhichOneof("data")
    if kind != "bitstring":
        raise _invalid(f"register {info.name}: data must be a bitstring")
    value = decode_bytes(msg.data.bitstring, info.bitwidth, f"register {info.name}")
    for i in _indices(info, msg, "register"):
        device.write_register(info.id, i, value)


# --- Read -----------------------------------------------------------------------------------------


def read_entity(
    device: Device, schema: Schema, meters: MeterStore, entity: p4runtime_pb2.Entity
) -> Iterator[Entity]:
    kind = entity.WhichOneof("entity")
    if kind == "table_entry":
        for te in _read_table_entries(device, schema, meters, entity.table_entry):
            yield p4runtime_pb2.Entity(table_entry=te)
    elif kind == "packet_replication_engine_entry":
        yield from _read_pre(device, entity.packet_replication_engine_entry)
    elif kind == "counter_entry":
        yield from _read_counters(device, schema, entity.counter_entry)
    elif kind == "direct_counter_entry":
        for te, entry in _selected_entries(
            device, schema, entity.direct_counter_entry.table_entry, "direct_counter_id"
        ):
            out = p4runtime_pb2.DirectCounterEntry(table_entry=te)
            counter_value_to_proto(device.read_direct_counter(entry), out.data)
            yield p4runtime_pb2.Entity(direct_counter_entry=out)
    elif kind == "meter_entry":
        yield from _read_meters(schema, meters, entity.meter_entry)
    elif kind == "direct_meter_entry":
        for te, entry in _selected_entries(
            device, schema, entity.direct_meter_entry.table_entry, "direct_meter_id"
        ):
            dm = p4runtime_pb2.DirectMeterEntry(table_entry=te)
            config = meters.direct.get(entry_key(entry))
            if config is not None:
                meter_config_to_proto(config, dm.config)
            yield p4runtime_pb2.Entity(direct_meter_entry=dm)
    elif kind == "register_entry":
        yield from _read_registers(device, schema, entity.register_entry)
    elif kind is None:
        raise _invalid("Read of an empty entity")
    else:
        raise P4RuntimeError("UNIMPLEMENTED", f"Reading {kind} is not supported by softswitch")


def _tables(schema: Schema, table_id: int) -> list[TableInfo]:
    return list(schema.tables.values()) if table_id == 0 else [schema.table(table_id)]


def _filter(
    schema: Schema, table: TableInfo, msg: p4runtime_pb2.TableEntry, entries: list[TableEntry]
) -> list[TableEntry]:
    if not msg.match:
        return entries
    probe = p4runtime_pb2.TableEntry(table_id=table.id, priority=msg.priority)
    probe.match.extend(msg.match)
    key = table_entry_from_proto(schema, probe, need_action=False)
    return [e for e in entries if e.match == key.match and e.priority == key.priority]


def _read_table_entries(
    device: Device, schema: Schema, meters: MeterStore, msg: p4runtime_pb2.TableEntry
) -> Iterator[p4runtime_pb2.TableEntry]:
    with_hit = msg.HasField("time_since_last_hit")
    if msg.is_default_action:
        if msg.table_id == 0:
            raise _invalid("Reading default entries needs a table id")
        table = schema.table(msg.table_id)
        entries = [device.default_entry(table.id)]
    else:
        entries = []
        for table in _tables(schema, msg.table_id):
            entries.extend(_filter(schema, table, msg, device.read_entries(table.id)))
    for entry in entries:
        table = schema.table(entry.table_id)
        te = table_entry_to_proto(schema, entry, with_time_since_last_hit=with_hit)
        if msg.is_default_action:
            te.is_default_action = True
        if msg.HasField("counter_data") and table.direct_counter_id and not entry.is_default_action:
            counter_value_to_proto(device.read_direct_counter(entry), te.counter_data)
        if msg.HasField("meter_config") and table.direct_meter_id:
            config = meters.direct.get(entry_key(entry))
            if config is not None:
                meter_config_to_proto(config, te.meter_config)
        yield te


def _selected_entries(
    device: Device, schema: Schema, msg: p4runtime_pb2.TableEntry, attr: str
) -> Iterator[tuple[p4runtime_pb2.TableEntry, TableEntry]]:
    if msg.table_id == 0:
        tables = [t for t in schema.tables.values() if getattr(t, attr)]
    else:
        table = schema.table(msg.table_id)
        if not getattr(table, attr):
            raise _invalid(f"{table.name}: the table has no direct {attr.split('_')[1]}")
        tables = [table]
    for table in tables:
        for entry in _filter(schema, table, msg, device.read_entries(table.id)):
            yield table_entry_to_proto(schema, entry, with_action=False), entry


def _read_pre(device: Device, msg: p4runtime_pb2.PacketReplicationEngineEntry) -> Iterator[Entity]:
    kind = msg.WhichOneof("type")
    if kind == "multicast_group_entry":
        gid = msg.multicast_group_entry.multicast_group_id
        for group_id, replicas in sorted(device.multicast_groups().items()):
            if gid in (0, group_id):
                out = p4runtime_pb2.MulticastGroupEntry(multicast_group_id=group_id)
                replicas_to_proto(replicas, out.replicas)
                pre = p4runtime_pb2.PacketReplicationEngineEntry(multicast_group_entry=out)
                yield p4runtime_pb2.Entity(packet_replication_engine_entry=pre)
    elif kind == "clone_session_entry":
        sid = msg.clone_session_entry.session_id
        for session_id, session in sorted(device.clone_sessions().items()):
            if sid in (0, session_id):
                pre = p4runtime_pb2.PacketReplicationEngineEntry(
                    clone_session_entry=clone_session_to_proto(session)
                )
                yield p4runtime_pb2.Entity(packet_replication_engine_entry=pre)
    else:
        raise _invalid("PacketReplicationEngineEntry has no multicast group or clone session")


def _externs(table: dict[int, ExternInfo], ident: int, what: str) -> list[ExternInfo]:
    if ident == 0:
        return list(table.values())
    info = table.get(ident)
    if info is None:
        raise _invalid(f"Invalid {what} id {ident}")
    return [info]


def _read_counters(device: Device, schema: Schema, msg: p4runtime_pb2.CounterEntry) -> Iterator[Entity]:
    for info in _externs(schema.counters, msg.counter_id, "counter"):
        for i in _indices(info, msg, "counter"):
            out = p4runtime_pb2.CounterEntry(counter_id=info.id)
            out.index.index = i
            counter_value_to_proto(device.read_counter(info.id, i), out.data)
            yield p4runtime_pb2.Entity(counter_entry=out)


def _read_meters(schema: Schema, meters: MeterStore, msg: p4runtime_pb2.MeterEntry) -> Iterator[Entity]:
    for info in _externs(schema.meters, msg.meter_id, "meter"):
        for i in _indices(info, msg, "meter"):
            out = p4runtime_pb2.MeterEntry(meter_id=info.id)
            out.index.index = i
            config = meters.indexed.get((info.id, i))
            if config is not None:
                meter_config_to_proto(config, out.config)
            yield p4runtime_pb2.Entity(meter_entry=out)


def _read_registers(device: Device, schema: Schema, msg: p4runtime_pb2.RegisterEntry) -> Iterator[Entity]:
    for info in _externs(schema.registers, msg.register_id, "register"):
        for i in _indices(info, msg, "register"):
            out = p4runtime_pb2.RegisterEntry(register_id=info.id)
            out.index.index = i
            out.data.bitstring = encode_bytes(device.read_register(info.id, i))
            yield p4runtime_pb2.Entity(register_entry=out)
