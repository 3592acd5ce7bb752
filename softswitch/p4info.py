"""P4Info from the compiled program, with p4c's names and ids.

Ids are ``prefix << 24 | (jenkins_one_at_a_time(name) & 0xFFFFFF)``; names of one
kind are processed in sorted order and a collision moves to the next free
suffix (linear probing).  ``@id`` annotations are honoured first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from dysco.errors import UserError
from dysco.proto.p4.config.v1 import p4info_pb2

from . import ir

PREFIX: Mapping[str, int] = MappingProxyType(
    {
        "action": 0x01,
        "table": 0x02,
        "controller_header": 0x04,
        "counter": 0x12,
        "direct_counter": 0x13,
        "meter": 0x14,
        "direct_meter": 0x15,
        "register": 0x16,
        "digest": 0x17,
    }
)


def jenkins_one_at_a_time(data: bytes) -> int:
    h = 0
    for b in data:
        h = (h + b) & 0xFFFFFFFF
        h = (h + (h << 10)) & 0xFFFFFFFF
        h ^= h >> 6
    h = (h + (h << 3)) & 0xFFFFFFFF
    h ^= h >> 11
    h = (h + (h << 15)) & 0xFFFFFFFF
    return h


def assign_ids(prefix: int, names: Iterable[str], fixed: dict[str, int] | None = None) -> dict[str, int]:
    """Ids for ``names`` of one kind: ``@id`` values first, then hashes in sorted name order."""
    out: dict[str, int] = {}
    used: set[int] = set()
    for name, value in sorted((fixed or {}).items()):
        top = value >> 24
        if top not in (0, prefix):
            raise UserError(f"@id({value:#x}) of {name} has the wrong prefix (expected {prefix:#04x})")
        full = (prefix << 24) | (value & 0xFFFFFF)
        if full in used:
            raise UserError(f"@id({value}) of {name} is used twice")
        used.add(full)
        out[name] = full
    for name in sorted(set(names) - set(out)):
        suffix = jenkins_one_at_a_time(name.encode()) & 0xFFFFFF
        while (prefix << 24) | suffix in used or suffix == 0:
            suffix = (suffix + 1) & 0xFFFFFF
        full = (prefix << 24) | suffix
        used.add(full)
        out[name] = full
    return out


def _fixed(objs: Iterable[Any]) -> dict[str, int]:
    out = {}
    for o in objs:
        v = o.annotations.get("id")
        if v and isinstance(v[0], int):
            out[o.name] = v[0]
    return out


def aliases(names: Iterable[str]) -> dict[str, str]:
    """The shortest dotted suffix of each name that no other name ends with."""
    names = list(names)
    out = {}
    for n in names:
        parts = n.split(".")
        for i in range(len(parts) - 1, -1, -1):
            cand = ".".join(parts[i:])
            if sum(1 for m in names if m == cand or m.endswith("." + cand)) == 1:
                out[n] = cand
                break
        else:
            out[n] = n
    return out


def number(info: ir.ProgramInfo) -> None:
    """Fill in the ``id`` of every object (and of match fields and parameters)."""
    # Every action the program uses is a control-plane object, as in p4c: those of tables and
    # those only called directly (a hidden action, or one only in @hidden tables, is not).
    for a in info.actions.values():
        a.published = "hidden" not in a.annotations
        for i, prm in enumerate(a.params):
            prm.id = i + 1
    published = [a for a in info.actions.values() if a.published]
    ids = assign_ids(PREFIX["action"], [a.name for a in published], _fixed(published))
    taken = set(ids.values())
    for a in info.actions.values():
        if a.published:
            a.id = ids[a.name]
            continue
        suffix = jenkins_one_at_a_time(a.name.encode()) & 0xFFFFFF
        while (PREFIX["action"] << 24) | suffix in taken:
            suffix = (suffix + 1) & 0xFFFFFF
        a.id = (PREFIX["action"] << 24) | suffix
        taken.add(a.id)
    ids = assign_ids(PREFIX["table"], info.tables, _fixed(info.tables.values()))
    for t in info.tables.values():
        t.id = ids[t.name]
        for i, k in enumerate(t.keys):
            k.id = i + 1
    for kind in ("counter", "direct_counter", "meter", "direct_meter", "register"):
        objs = [e for e in info.externs.values() if e.kind == kind]
        ids = assign_ids(PREFIX[kind], [e.name for e in objs], _fixed(objs))
        for e in objs:
            e.id = ids[e.name]
    ids = assign_ids(PREFIX["controller_header"], [h.type_name for h in info.controller_headers])
    for h in info.controller_headers:
        h.id = ids[h.type_name]
    ids = assign_ids(PREFIX["digest"], info.digests)
    for d in info.digests.values():
        d.id = ids[d.name]


# Annotations that say how to name or show an object: p4c applies them and does not repeat them.
_APPLIED = frozenset({"name", "id", "hidden", "brief", "description"})


def annotation_texts(annotations: Mapping[str, tuple[object, ...]]) -> list[str]:
    """The annotations of an object as p4c writes them in its preamble: ``@noWarn("unused")``."""
    out = []
    for name, args in annotations.items():
        if name in _APPLIED or any(a is None for a in args):
            continue  # applied, or an argument we do not keep the text of (an expression)
        texts = [f'"{a}"' if isinstance(a, str) else str(a) for a in args]
        out.append(f"@{name}({', '.join(texts)})" if texts else f"@{name}")
    return out


def describe(preamble: p4info_pb2.Preamble, annotations: Mapping[str, tuple[object, ...]]) -> None:
    """Annotations into a preamble as p4c puts them: ``@brief``/``@description`` as ``doc``."""
    preamble.annotations.extend(annotation_texts(annotations))
    for name in ("brief", "description"):
        args = annotations.get(name)
        if args and isinstance(args[0], str):
            setattr(preamble.doc, name, args[0])


def build(info: ir.ProgramInfo) -> p4info_pb2.P4Info:
    """The P4Info message (ids must have been assigned with :func:`number`)."""
    p = p4info_pb2.P4Info()
    p.pkg_info.arch = "v1model"
    p.type_info.SetInParent()  # p4c writes it even when no digest needs a type
    action_alias = aliases(a.name for a in info.actions.values() if a.published)
    in_tables = {r.name for t in info.tables.values() for r in t.actions}
    for t in info.tables.values():  # in declaration order, as p4c lists them
        if "hidden" in t.annotations:
            continue
        m = p.tables.add()
        m.preamble.id, m.preamble.name = t.id, t.name
        m.preamble.alias = aliases(info.tables)[t.name]
        describe(m.preamble, t.annotations)
        for k in t.keys:
            f = m.match_fields.add()
            f.id, f.name, f.bitwidth = k.id, k.name, k.width
            f.match_type = getattr(p4info_pb2.MatchField, k.match_kind.upper())
        for r in t.actions:
            ar = m.action_refs.add()
            ar.id = info.actions[r.name].id
            if r.scope:
                ar.scope = getattr(p4info_pb2.ActionRef, r.scope)
                ar.annotations.append("@defaultonly" if r.scope == "DEFAULT_ONLY" else "@tableonly")
        if t.default_const:
            m.const_default_action_id = info.actions[t.default_action].id
        default = info.actions[t.default_action]
        m.initial_default_action.action_id = default.id
        for prm, value in zip(default.params, t.default_args, strict=False):
            arg = m.initial_default_action.arguments.add()
            width = (prm.width + 7) // 8  # p4c writes the parameter's full width, not canonical bytes
            arg.param_id, arg.value = prm.id, value.to_bytes(width, "big")
        for d in (t.direct_counter, t.direct_meter):
            if d is not None:
                m.direct_resource_ids.append(info.externs[d].id)
        m.size = t.size
        if t.support_timeout:
            m.idle_timeout_behavior = p4info_pb2.Table.NOTIFY_CONTROL
        if t.const_entries is not None:
            m.is_const_table = True
            m.has_initial_entries = bool(t.const_entries)
    for a in sorted(info.actions.values(), key=lambda a: a.name):
        if not a.published:
            continue
        action = p.actions.add()
        action.preamble.id, action.preamble.name, action.preamble.alias = a.id, a.name, action_alias[a.name]
        describe(action.preamble, a.annotations)
        if a.name not in in_tables:
            continue  # only called directly: every parameter is bound by the call
        for prm in a.params:
            pp = action.params.add()
            pp.id, pp.name, pp.bitwidth = prm.id, prm.name, prm.width
    ext_alias = aliases(info.externs)
    units = {"packets": "PACKETS", "bytes": "BYTES", "packets_and_bytes": "BOTH"}
    for e in info.externs.values():  # in declaration order, as p4c lists them
        if e.kind == "counter":
            counter = p.counters.add()
            counter.spec.unit = getattr(p4info_pb2.CounterSpec, units[e.unit])
            counter.size = e.size
            preamble = counter.preamble
        elif e.kind == "direct_counter":
            dcounter = p.direct_counters.add()
            dcounter.spec.unit = getattr(p4info_pb2.CounterSpec, units[e.unit])
            dcounter.direct_table_id = info.tables[e.table].id if e.table else 0
            preamble = dcounter.preamble
        elif e.kind == "meter":
            meter = p.meters.add()
            meter.spec.unit = getattr(p4info_pb2.MeterSpec, units[e.unit])
            meter.size = e.size
            preamble = meter.preamble
        elif e.kind == "direct_meter":
            dmeter = p.direct_meters.add()
            dmeter.spec.unit = getattr(p4info_pb2.MeterSpec, units[e.unit])
            dmeter.direct_table_id = info.tables[e.table].id if e.table else 0
            preamble = dmeter.preamble
        else:
            register = p.registers.add()
            register.type_spec.bitstring.bit.bitwidth = e.width
            register.size = e.size
            preamble = register.preamble
        preamble.id, preamble.name, preamble.alias = e.id, e.name, ext_alias[e.name]
        describe(preamble, e.annotations)
    for h in sorted(info.controller_headers, key=lambda h: h.name):
        cpm = p.controller_packet_metadata.add()
        cpm.preamble.id, cpm.preamble.name, cpm.preamble.alias = h.id, h.name, h.name
        cpm.preamble.annotations.append(f'@controller_header("{h.name}")')
        for i, (fname, width) in enumerate(h.fields):
            md = cpm.metadata.add()
            md.id, md.name, md.bitwidth = i + 1, fname, width
    for dg in sorted(info.digests.values(), key=lambda x: x.name):
        digest = p.digests.add()
        digest.preamble.id, digest.preamble.name, digest.preamble.alias = dg.id, dg.name, dg.name
        digest.type_spec.struct.name = dg.name
        st = p.type_info.structs[dg.name]
        for fname, width in dg.fields:
            mem = st.members.add()
            mem.name = fname
            mem.type_spec.bitstring.bit.bitwidth = width
    return p
