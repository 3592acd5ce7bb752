"""Conversion between P4Runtime protobuf messages and the softswitch API dataclasses.

Every value crossing here is checked against the P4Info (ids, bitwidths, match
kinds, don't-care rules); a bad one raises :class:`P4RuntimeError` with the code PI
gives (INVALID_ARGUMENT almost always).  Outgoing values are canonical bytestrings.
"""

from __future__ import annotations

from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.softswitch.api import (
    ActionCall,
    CloneSession,
    CounterValue,
    FieldMatch,
    MeterConfig,
    Replica,
    TableEntry,
)
from dysco.softswitch.server._errors import P4RuntimeError
from dysco.softswitch.server._schema import Schema, TableInfo, decode_bytes, encode_bytes

_PORT_BITS = 32
_TABLE_ONLY, _DEFAULT_ONLY = p4info_pb2.ActionRef.TABLE_ONLY, p4info_pb2.ActionRef.DEFAULT_ONLY
"""Replica ``port`` bytestrings: P4Runtime SDN port numbers are 32-bit."""


def _invalid(message: str) -> P4RuntimeError:
    return P4RuntimeError("INVALID_ARGUMENT", message)


# --- table entries -------------------------------------------------------------------------------


def table_entry_from_proto(schema: Schema, msg: p4runtime_pb2.TableEntry, *, need_action: bool) -> TableEntry:
    """An API entry from a P4Runtime one; ``need_action`` for INSERT and non-default MODIFY."""
    table = schema.table(msg.table_id)
    match = _match_from_proto(table, msg)
    # each field read once: with upb every read is a call into C
    default, priority, timeout = msg.is_default_action, msg.priority, msg.idle_timeout_ns
    if default:
        if match or priority:
            raise _invalid(f"{table.name}: a default entry has no match key and no priority")
    elif table.needs_priority:
        if priority <= 0:
            raise _invalid(f"{table.name}: entries of a ternary, range or optional table need a priority > 0")
    elif priority != 0:
        raise _invalid(f"{table.name}: priority must be 0 in a table without ternary, range or optional keys")
    if timeout < 0:
        raise _invalid(f"{table.name}: negative idle_timeout_ns")
    if timeout and not table.supports_timeout:
        raise _invalid(f"{table.name}: idle_timeout_ns set but the table does not support idle timeout")
    action = ActionCall(0)
    if msg.HasField("action"):
        action = _action_from_proto(schema, table, msg.action, default=default)
    elif need_action:
        raise _invalid(f"{table.name}: entry has no action")
    return TableEntry(
        table.id, match, action, priority, timeout, msg.controller_metadata, msg.metadata, default
    )


def _match_from_proto(table: TableInfo, msg: p4runtime_pb2.TableEntry) -> tuple[FieldMatch, ...]:
    fields = table.exact_fields
    if fields and len(msg.match) == len(fields):
        # the common case of an exact table: every field, in id order, its value in its width
        out: list[FieldMatch] = []
        for fm, (fid, width) in zip(msg.match[:], fields, strict=True):  # a slice: one list, not an iterator
            data = fm.exact.value  # not empty: the field is an exact match
            if fm.field_id != fid or not data:
                break
            value = int.from_bytes(data, "big")
            if value >> width:
                break
            out.append(FieldMatch(fid, "exact", value))
        else:
            return tuple(out)
    # anything else, and every error, the long way
    seen: dict[int, FieldMatch] = {}
    for fm in msg.match:
        info = table.match_fields.get(fm.field_id)
        if info is None:
            raise _invalid(f"{table.name}: invalid match field id {fm.field_id}")
        if fm.field_id in seen:
            raise _invalid(f"{table.name}: match field {info.name} given twice")
        what = f"{table.name}, field {info.name}"
        given = fm.WhichOneof("field_match_type")
        if info.kind is None:
            raise P4RuntimeError("UNIMPLEMENTED", f"{what}: match kind not supported by softswitch")
        if given != info.kind:
            raise _invalid(f"{what}: expected a {info.kind} match, got {given}")
        w = info.bitwidth
        full = (1 << w) - 1
        if given == "exact":
            seen[fm.field_id] = FieldMatch(fm.field_id, "exact", decode_bytes(fm.exact.value, w, what))
        elif given == "optional":
            seen[fm.field_id] = FieldMatch(fm.field_id, "optional", decode_bytes(fm.optional.value, w, what))
        elif given == "lpm":
            plen = fm.lpm.prefix_len
            if not 0 <= plen <= w:
                raise _invalid(f"{what}: prefix length {plen} outside 0..{w}")
            if plen == 0:
                raise _invalid(f"{what}: an lpm prefix length of 0 is a don't care; omit the field")
            value = decode_bytes(fm.lpm.value, w, what)
            if value & (full >> plen):
                raise _invalid(f"{what}: lpm value has bits set beyond the prefix length {plen}")
            seen[fm.field_id] = FieldMatch(fm.field_id, "lpm", value, prefix_len=plen)
        elif given == "ternary":
            value = decode_bytes(fm.ternary.value, w, what)
            mask = decode_bytes(fm.ternary.mask, w, what)
            if mask == 0:
                raise _invalid(f"{what}: a ternary mask of 0 is a don't care; omit the field")
            if value & ~mask:
                raise _invalid(f"{what}: ternary value has bits set outside the mask")
            seen[fm.field_id] = FieldMatch(fm.field_id, "ternary", value, mask=mask)
        else:  # range
            low = decode_bytes(fm.range.low, w, what)
            high = decode_bytes(fm.range.high, w, what)
            if low > high:
                raise _invalid(f"{what}: range low end is above the high end")
            if low == 0 and high == full:
                raise _invalid(f"{what}: a full range is a don't care; omit the field")
            seen[fm.field_id] = FieldMatch(fm.field_id, "range", low, high=high)
    if not msg.is_default_action:
        for info in table.match_fields.values():
            if info.kind == "exact" and info.id not in seen:
                raise _invalid(f"{table.name}: exact match field {info.name} is missing")
    return tuple(seen[k] for k in sorted(seen))


def _action_from_proto(
    schema: Schema, table: TableInfo, msg: p4runtime_pb2.TableAction, *, default: bool
) -> ActionCall:
    kind = msg.WhichOneof("type")
    if kind != "action":
        raise P4RuntimeError("UNIMPLEMENTED", f"{table.name}: action profiles are not supported")
    return action_call_from_proto(schema, table, msg.action, default=default)


def action_call_from_proto(
    schema: Schema, table: TableInfo, msg: p4runtime_pb2.Action, *, default: bool
) -> ActionCall:
    action = schema.action(msg.action_id)
    scope = table.action_scopes.get(action.id)
    if scope is None:
        raise _invalid(f"{table.name}: action {action.name} is not an action of this table")
    if default and scope == _TABLE_ONLY:
        raise _invalid(f"{table.name}: action {action.name} cannot be the default action (@tableonly)")
    if not default and scope == _DEFAULT_ONLY:
        raise _invalid(f"{table.name}: action {action.name} can only be the default action (@defaultonly)")
    params = msg.params[:]
    if len(params) == len(action.shape):
        # the common case: every parameter, in id order, its value in its width
        args: list[int] = []
        for p, (pid, width) in zip(params, action.shape, strict=True):
            data = p.value
            if p.param_id != pid or not data:
                break
            value = int.from_bytes(data, "big")
            if value >> width:
                break
            args.append(value)
        else:
            return ActionCall(action.id, tuple(args))
    # anything else, and every error, the long way
    values: dict[int, int] = {}
    for p in msg.params:
        info = action.param(p.param_id)
        if info is None:
            raise _invalid(f"action {action.name}: invalid param id {p.param_id}")
        if p.param_id in values:
            raise _invalid(f"action {action.name}: param {info.name} given twice")
        values[p.param_id] = decode_bytes(p.value, info.bitwidth, f"action {action.name}, param {info.name}")
    missing = [p.name for p in action.params if p.id not in values]
    if missing:
        raise _invalid(f"action {action.name}: missing params {', '.join(missing)}")
    return ActionCall(action.id, tuple(values[p.id] for p in action.params))


def table_entry_to_proto(
    schema: Schema,
    entry: TableEntry,
    *,
    with_action: bool = True,
    with_time_since_last_hit: bool = False,
) -> p4runtime_pb2.TableEntry:
    msg = p4runtime_pb2.TableEntry(
        table_id=entry.table_id,
        priority=entry.priority,
        controller_metadata=entry.controller_metadata,
        idle_timeout_ns=entry.idle_timeout_ns,
        metadata=entry.metadata,
        is_default_action=entry.is_default_action,
    )
    for fm in entry.match:
        out = msg.match.add(field_id=fm.field_id)
        if fm.kind == "exact":
            out.exact.value = encode_bytes(fm.value)
        elif fm.kind == "optional":
            out.optional.value = encode_bytes(fm.value)
        elif fm.kind == "lpm":
            out.lpm.value = encode_bytes(fm.value)
            out.lpm.prefix_len = fm.prefix_len
        elif fm.kind == "ternary":
            out.ternary.value = encode_bytes(fm.value)
            out.ternary.mask = encode_bytes(fm.mask)
        else:
            out.range.low = encode_bytes(fm.value)
            out.range.high = encode_bytes(fm.high)
    if with_action and entry.action.action_id:
        action = msg.action.action
        action.action_id = entry.action.action_id
        info = schema.actions.get(entry.action.action_id)
        ids = [p.id for p in info.params] if info else list(range(1, len(entry.action.params) + 1))
        for pid, value in zip(ids, entry.action.params, strict=False):
            action.params.add(param_id=pid, value=encode_bytes(value))
    if with_time_since_last_hit and entry.time_since_last_hit_ns is not None:
        msg.time_since_last_hit.elapsed_ns = entry.time_since_last_hit_ns
    return msg


def entry_key(entry: TableEntry) -> tuple[int, tuple[FieldMatch, ...], int]:
    """What insert/modify/delete identify an entry by."""
    return (entry.table_id, entry.match, entry.priority)


# --- packet replication engine ---------------------------------------------------------------------


def replicas_from_proto(replicas: object, what: str) -> tuple[Replica, ...]:
    out: list[Replica] = []
    seen: set[tuple[int, int]] = set()
    for r in replicas:  # type: ignore[attr-defined]
        kind = r.WhichOneof("port_kind")
        if kind == "port":
            port = decode_bytes(r.port, _PORT_BITS, f"{what}, replica port")
        else:
            port = r.egress_port
        if (port, r.instance) in seen:
            raise _invalid(f"{what}: duplicate replica (port {port}, instance {r.instance})")
        seen.add((port, r.instance))
        out.append(Replica(port, r.instance))
    return tuple(out)


def replicas_to_proto(replicas: tuple[Replica, ...], target: object) -> None:
    for r in replicas:
        target.add(egress_port=r.port, instance=r.instance)  # type: ignore[attr-defined]


def clone_session_from_proto(msg: p4runtime_pb2.CloneSessionEntry) -> CloneSession:
    if msg.session_id == 0:
        raise _invalid("0 is not a valid session id")
    if msg.packet_length_bytes < 0:
        raise _invalid(f"clone session {msg.session_id}: negative packet_length_bytes")
    what = f"clone session {msg.session_id}"
    return CloneSession(
        msg.session_id,
        replicas_from_proto(msg.replicas, what),
        class_of_service=msg.class_of_service,
        packet_length_bytes=msg.packet_length_bytes,
    )


def clone_session_to_proto(session: CloneSession) -> p4runtime_pb2.CloneSessionEntry:
    msg = p4runtime_pb2.CloneSessionEntry(
        session_id=session.session_id,
        class_of_service=session.class_of_service,
        packet_length_bytes=session.packet_length_bytes,
    )
    replicas_to_proto(session.replicas, msg.replicas)
    return msg


# --- counters and meters ------------------------------------------------------------------------------


def counter_value_from_proto(msg: p4runtime_pb2.CounterData) -> CounterValue:
    if msg.packet_count < 0 or msg.byte_count < 0:
        raise _invalid("negative counter value")
    return CounterValue(packets=msg.packet_count, bytes=msg.byte_count)


def counter_value_to_proto(value: CounterValue, target: p4runtime_pb2.CounterData) -> None:
    target.packet_count = value.packets
    target.byte_count = value.bytes


def meter_config_from_proto(msg: p4runtime_pb2.MeterConfig) -> MeterConfig:
    if min(msg.cir, msg.cburst, msg.pir, msg.pburst) < 0:
        raise _invalid("negative meter rate or burst")
    if msg.pir < msg.cir:
        raise _invalid("meter peak rate (pir) below committed rate (cir)")
    return MeterConfig(cir=msg.cir, cburst=msg.cburst, pir=msg.pir, pburst=msg.pburst)


def meter_config_to_proto(config: MeterConfig, target: p4runtime_pb2.MeterConfig) -> None:
    target.cir = config.cir
    target.cburst = config.cburst
    target.pir = config.pir
    target.pburst = config.pburst
