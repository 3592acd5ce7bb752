"""Checking the P4Info of a SetForwardingPipelineConfig against itself and against the program.

The server answers every later Read and Write from the P4Info a client pushes, so a P4Info that
contradicts itself or the program (two objects with one id, a table naming an action that is not
there, a 4,096-bit key for a 32-bit field, no tables at all) is refused at VERIFY with
INVALID_ARGUMENT and a message naming the first problem; the running pipeline stays.  What is
compared: ids (unique, and the same objects as the program's), names, widths, match kinds, the
actions a table may run, sizes of counters, meters and registers, and the controller headers.
Documentation fields (annotations, doc strings, ``pkg_info``) may differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dysco.softswitch.server._errors import P4RuntimeError

# the P4Info lists whose objects have a preamble (P4Runtime spec, "P4Info objects")
_KINDS = (
    ("tables", "table"),
    ("actions", "action"),
    ("action_profiles", "action profile"),
    ("counters", "counter"),
    ("direct_counters", "direct counter"),
    ("meters", "meter"),
    ("direct_meters", "direct meter"),
    ("controller_packet_metadata", "controller header"),
    ("value_sets", "value set"),
    ("registers", "register"),
    ("digests", "digest"),
)


def _refuse(message: str) -> P4RuntimeError:
    return P4RuntimeError("INVALID_ARGUMENT", f"P4Info: {message}")


def _objects(info: Any) -> Iterable[tuple[str, Any]]:
    for field, kind in _KINDS:
        for obj in getattr(info, field):
            yield kind, obj


def _describe(kind: str, obj: Any) -> str:
    return f"{kind} '{obj.preamble.name}' (id {obj.preamble.id:#010x})"


def check_self(info: Any) -> None:
    """The P4Info on its own: every id unique and non-zero, every reference resolves, every
    width positive."""
    seen: dict[int, str] = {}
    for kind, obj in _objects(info):
        pid = obj.preamble.id
        if pid == 0:
            raise _refuse(f"{kind} '{obj.preamble.name}' has id 0")
        if pid in seen:
            raise _refuse(f"id {pid:#010x} is used twice: by {seen[pid]} and by {_describe(kind, obj)}")
        seen[pid] = _describe(kind, obj)
    actions = {a.preamble.id for a in info.actions}
    direct = {d.preamble.id for d in info.direct_counters} | {d.preamble.id for d in info.direct_meters}
    tables = {t.preamble.id for t in info.tables}
    for t in info.tables:
        where = _describe("table", t)
        ids = [mf.id for mf in t.match_fields]
        if len(set(ids)) != len(ids):
            raise _refuse(f"{where} has two match fields with one id")
        for mf in t.match_fields:
            if mf.bitwidth <= 0:
                raise _refuse(f"{where}: match field '{mf.name}' has width {mf.bitwidth}")
        for ref in t.action_refs:
            if ref.id not in actions:
                raise _refuse(f"{where} names action id {ref.id:#010x}, which the P4Info does not have")
        if t.const_default_action_id and t.const_default_action_id not in actions:
            raise _refuse(
                f"{where}: its const default action {t.const_default_action_id:#010x} is not an action"
            )
        for rid in t.direct_resource_ids:
            if rid not in direct:
                raise _refuse(f"{where} names direct resource {rid:#010x}, which the P4Info does not have")
    for kind, objs in (("direct counter", info.direct_counters), ("direct meter", info.direct_meters)):
        for d in objs:
            if d.direct_table_id not in tables:
                raise _refuse(
                    f"{_describe(kind, d)} belongs to table {d.direct_table_id:#010x}, which is not there"
                )
    for a in info.actions:
        for p in a.params:
            if p.bitwidth <= 0:
                raise _refuse(f"{_describe('action', a)}: parameter '{p.name}' has width {p.bitwidth}")


def _fields(objs: Iterable[Any]) -> dict[int, tuple[str, int, int]]:
    """Match fields, action parameters or header fields by id: (name, width, match kind)."""
    return {f.id: (f.name, f.bitwidth, getattr(f, "match_type", 0)) for f in objs}


def _shape(kind: str, obj: Any) -> dict[str, object]:
    """What of an object must agree with the program (documentation fields left out)."""
    shape: dict[str, object] = {"name": obj.preamble.name}
    if kind == "table":
        shape["match fields"] = _fields(obj.match_fields)
        shape["actions"] = sorted(r.id for r in obj.action_refs)
        shape["const default action"] = obj.const_default_action_id
        shape["direct resources"] = sorted(obj.direct_resource_ids)
        shape["idle timeout"] = obj.idle_timeout_behavior
        shape["const entries"] = obj.is_const_table
    elif kind == "action":
        shape["parameters"] = _fields(obj.params)
    elif kind == "controller header":
        shape["fields"] = _fields(obj.metadata)
    elif kind in ("counter", "meter", "register"):
        shape["size"] = obj.size
        if kind == "register":
            shape["width"] = obj.type_spec.bitstring.bit.bitwidth or obj.type_spec.bitstring.int.bitwidth
    elif kind in ("direct counter", "direct meter"):
        shape["table"] = obj.direct_table_id
    return shape


def check_against(info: Any, program_info: Any) -> None:
    """The pushed P4Info describes the program: the same objects under the same ids, each with the
    program's names, widths, kinds, references and sizes."""
    mine = {(k, o.preamble.id): o for k, o in _objects(program_info)}
    theirs = {(k, o.preamble.id): o for k, o in _objects(info)}
    for key, obj in mine.items():  # in the P4Info's order of kinds: tables first
        if key not in theirs:
            raise _refuse(f"the program's {_describe(key[0], obj)} is missing")
    for key, obj in theirs.items():
        if key not in mine:
            raise _refuse(f"{_describe(key[0], obj)} is not in the program")
    for key, obj in sorted(theirs.items(), key=lambda kv: kv[0][1]):
        kind, _ = key
        want, got = _shape(kind, mine[key]), _shape(kind, obj)
        for what, value in got.items():
            if value != want[what]:
                raise _refuse(f"{_describe(kind, obj)}: {_difference(what, value, want[what])}")


def _difference(what: str, got: object, want: object) -> str:
    """The first thing that differs, said plainly."""
    if isinstance(got, dict) and isinstance(want, dict):
        for fid in sorted(got.keys() | want.keys()):
            if fid not in want:
                return f"{what}: id {fid} ('{got[fid][0]}') is not in the program"
            if fid not in got:
                return f"{what}: the program's id {fid} ('{want[fid][0]}') is missing"
            (gn, gw, gk), (wn, ww, wk) = got[fid], want[fid]
            if gn != wn:
                return f"{what}: id {fid} is '{gn}', the program's is '{wn}'"
            if gw != ww:
                return f"{what}: '{gn}' is {gw} bits, the program's is {ww}"
            return f"{what}: '{gn}' has match kind {gk}, the program's has {wk}"
    return f"{what} is {got!r}, the program's is {want!r}"
