"""Classifier entries -> P4Runtime ``p4.v1.TableEntry`` messages for a given P4Info.

Values are encoded as canonical bytestrings (no leading zero bytes, zero as one
byte), and don't-care fields are left out, as the P4Runtime specification
requires.  Each field is encoded by the match kind the P4Info gives it: ternary,
range, lpm (contiguous masks only), optional, or exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from dysco.compiler.boxes import PRange, Ternary
from dysco.compiler.entries import Entry
from dysco.compiler.output import PROTOCOL_TCP
from dysco.errors import UserError
from dysco.p4names import CLASSIFIER, ClassifierNames
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2


class EmitError(UserError):
    """The P4Info does not fit the classifier entries."""


def canonical(value: int) -> bytes:
    """The P4Runtime canonical bytestring of a non-negative integer."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _find(objs: Any, name: str, what: str) -> Any:
    for obj in objs:
        if obj.preamble.name == name or obj.preamble.alias == name:
            return obj
    known = ", ".join(sorted(o.preamble.name for o in objs)) or "none"
    raise EmitError(f"P4Info has no {what} '{name}' (it has: {known})")


@dataclass(frozen=True, slots=True)
class _Field:
    id: int
    name: str
    bitwidth: int
    kind: int  # p4info_pb2.MatchField.MatchType


class ClassifierEmitter:
    """Looks the names up once in a P4Info; then turns entries into TableEntry messages."""

    def __init__(self, p4info: p4info_pb2.P4Info, names: ClassifierNames = CLASSIFIER) -> None:
        table = _find(p4info.tables, names.table, "table")
        self.table_id: int = table.preamble.id
        fields = {mf.name: mf for mf in table.match_fields}

        def field(name: str) -> _Field:
            if name not in fields:
                raise EmitError(
                    f"table '{names.table}' has no match field '{name}' (has: {', '.join(fields)})"
                )
            mf = fields[name]
            return _Field(mf.id, name, mf.bitwidth, mf.match_type)

        self.src = field(names.src_addr)
        self.dst = field(names.dst_addr)
        self.proto = field(names.protocol)
        self.sport = field(names.src_port)
        self.dport = field(names.dst_port)
        chain = _find(p4info.actions, names.chain_action, "action")
        self.chain_action_id: int = chain.preamble.id
        params = {p.name: p for p in chain.params}
        if names.chain_param not in params:
            raise EmitError(f"action '{names.chain_action}' has no parameter '{names.chain_param}'")
        self.chain_param_id: int = params[names.chain_param].id
        self.chain_param_width: int = params[names.chain_param].bitwidth
        self.bypass_action_id: int = _find(p4info.actions, names.bypass_action, "action").preamble.id
        ids = {ref.id for ref in table.action_refs}
        for action_id, action_name in ((self.chain_action_id, names.chain_action),
                                       (self.bypass_action_id, names.bypass_action)):  # fmt: skip
            if action_id not in ids:
                raise EmitError(f"action '{action_name}' is not an action of table '{names.table}'")

    def entry(self, e: Entry) -> p4runtime_pb2.TableEntry:
        msg = p4runtime_pb2.TableEntry(table_id=self.table_id, priority=e.priority)
        for fld, c in (
            (self.src, e.src),
            (self.dst, e.dst),
            (self.proto, Ternary(PROTOCOL_TCP, 0xFF)),
            (self.sport, e.sport),
            (self.dport, e.dport),
        ):
            fm = self._match(fld, c)
            if fm is not None:
                msg.match.append(fm)
        action = msg.action.action
        if e.action == "bypass":
            action.action_id = self.bypass_action_id
        else:  # a chain, or a software entry (its policy id has the software flag)
            if e.policy_id >= 1 << self.chain_param_width:
                raise EmitError(f"policy id {e.policy_id:#x} does not fit {self.chain_param_width} bits")
            action.action_id = self.chain_action_id
            action.params.add(param_id=self.chain_param_id, value=canonical(e.policy_id))
        return msg

    def _match(self, fld: _Field, c: Ternary | PRange) -> p4runtime_pb2.FieldMatch | None:
        full = (1 << fld.bitwidth) - 1
        fm = p4runtime_pb2.FieldMatch(field_id=fld.id)
        mt = p4info_pb2.MatchField
        if isinstance(c, PRange):
            if fld.kind != mt.RANGE:
                raise EmitError(
                    f"field '{fld.name}' is not a range match in the P4Info; "
                    "compile with --port-match ternary"
                )
            if (c.low, c.high) == (0, full):
                return None
            fm.range.low, fm.range.high = canonical(c.low), canonical(c.high)
            return fm
        mask = c.mask & full
        if mask == 0:
            return None
        inv = full & ~mask
        is_prefix = inv & (inv + 1) == 0
        if fld.kind == mt.TERNARY:
            fm.ternary.value, fm.ternary.mask = canonical(c.value & mask), canonical(mask)
        elif fld.kind == mt.RANGE:
            if not is_prefix:
                raise EmitError(f"field '{fld.name}' is a range match; a mask of {mask:#x} is not a range")
            low = c.value & mask
            fm.range.low, fm.range.high = canonical(low), canonical(low | inv)
        elif fld.kind == mt.LPM:
            if not is_prefix:
                raise EmitError(f"field '{fld.name}' is an lpm match; mask {mask:#x} is not a prefix")
            fm.lpm.value, fm.lpm.prefix_len = canonical(c.value & mask), fld.bitwidth - inv.bit_length()
        elif fld.kind in (mt.EXACT, mt.OPTIONAL):
            if mask != full:
                kind = "exact" if fld.kind == mt.EXACT else "optional"
                raise EmitError(f"field '{fld.name}' is an {kind} match; it cannot take mask {mask:#x}")
            if fld.kind == mt.EXACT:
                fm.exact.value = canonical(c.value)
            else:
                fm.optional.value = canonical(c.value)
        else:
            raise EmitError(f"field '{fld.name}' has a match kind the classifier cannot use")
        return fm


def table_entries(
    entries: list[Entry] | tuple[Entry, ...], p4info: p4info_pb2.P4Info, names: ClassifierNames = CLASSIFIER
) -> list[p4runtime_pb2.TableEntry]:
    """The TableEntry messages for ``entries``, in priority order."""
    emitter = ClassifierEmitter(p4info, names)
    return [emitter.entry(e) for e in entries]


def classifier_capacity(p4info: p4info_pb2.P4Info, names: ClassifierNames = CLASSIFIER) -> int:
    """The classifier table's size in the P4Info: how many entries the target holds."""
    table = _find(p4info.tables, names.table, "table")
    size = int(table.size)
    if size < 1:
        raise EmitError(f"table '{names.table}' has no size in the P4Info; give --capacity")
    return size


def read_p4info(path: str) -> p4info_pb2.P4Info:
    """A P4Info file: binary if it ends in ``.bin``, else protobuf text (as p4c writes it)."""
    from google.protobuf import text_format

    info = p4info_pb2.P4Info()
    try:
        if path.endswith(".bin"):
            info.ParseFromString(Path(path).read_bytes())
        else:
            text_format.Parse(Path(path).read_text(), info, allow_unknown_field=True)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (text_format.ParseError, DecodeError) as exc:
        raise UserError(f"{path}: not a P4Info file: {exc}") from None
    return info
