"""Match-action tables at run time: entries, lookup, default entries, idle timeouts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ... import ir
from ...api import ActionCall, Clock, CounterValue, EntryError, FieldMatch, MeterConfig, TableEntry
from .externs_rt import MeterCell
from .runtime import PacketState

ActionFn = Callable[..., Any]


class Rec:
    """What a lookup returns to the generated code: the action to run and whether it hit."""

    __slots__ = ("action", "args", "entry", "fn", "hit")

    def __init__(
        self, fn: ActionFn, args: tuple[int, ...], action: str, hit: bool, entry: Entry | None
    ) -> None:
        self.fn = fn
        self.args = args
        self.action = action
        self.hit = hit
        self.entry = entry


@dataclass
class Entry:
    api: TableEntry
    key: tuple[Any, ...]  # identity: (match, priority)
    fields: list[tuple[str, int, int]]  # per key: (kind, value, mask|high)
    rec: Rec
    last_hit: int = 0
    reported: bool = False
    counter: CounterValue | None = None
    meter: MeterCell | None = None
    seq: int = 0


@dataclass
class ActionSpec:
    id: int
    name: str
    fn: ActionFn
    widths: list[int]
    scope: str


class Table:
    def __init__(
        self,
        info: ir.TableInfo,
        actions: list[ActionSpec],
        clock: Clock,
        ps: PacketState,
    ) -> None:
        self.info = info
        self.id = info.id
        self.clock = clock
        self.ps = ps
        self.by_id = {a.id: a for a in actions}
        self.by_name = {a.name: a for a in actions}
        self.kinds = [k.match_kind for k in info.keys]
        self.widths = [k.width for k in info.keys]
        self.needs_priority = any(k in ("ternary", "range", "optional") for k in self.kinds)
        self.lpm_index = self.kinds.index("lpm") if "lpm" in self.kinds else -1
        self.entries: dict[tuple[Any, ...], Entry] = {}
        # all-exact tables (per-session state) keep one index updated in place: O(1) writes
        self.exact_only = not self.needs_priority and self.lpm_index < 0
        self._exact: dict[tuple[int, ...], Entry] = {}
        self.seq = 0
        self.const = info.const_entries is not None
        self.meter_bytes = False
        self.initial_default = self.make_default(info.default_action, info.default_args)
        self.default = self.initial_default
        self.lookup: Callable[[tuple[int, ...]], Rec] = self._rebuild()
        if info.const_entries is not None:
            self.load_const(info.const_entries)

    # ------------------------------------------------------------ defaults
    def make_default(self, action: str, args: tuple[int, ...]) -> Rec:
        spec = self.by_name[action]
        return Rec(spec.fn, args, action, False, None)

    def default_entry(self) -> TableEntry:
        spec = self.by_name[self.default.action]
        return TableEntry(self.id, (), ActionCall(spec.id, self.default.args), is_default_action=True)

    def set_default(self, call: ActionCall) -> None:
        if self.info.default_const:
            raise EntryError("PERMISSION_DENIED", f"table {self.info.name} has a const default action")
        spec = self.check_action(call, default=True)
        self.default = Rec(spec.fn, call.params, spec.name, False, None)
        self._changed()

    def reset_default(self) -> None:
        self.default = self.initial_default
        self._changed()

    # ------------------------------------------------------------ writes
    def check_action(self, call: ActionCall, default: bool = False) -> ActionSpec:
        spec = self.by_id.get(call.action_id)
        if spec is None:
            raise EntryError(
                "INVALID_ARGUMENT", f"action id {call.action_id} is not an action of {self.info.name}"
            )
        if default and spec.scope == "TABLE_ONLY":
            raise EntryError(
                "INVALID_ARGUMENT", f"action {spec.name} cannot be a default action (@tableonly)"
            )
        if not default and spec.scope == "DEFAULT_ONLY":
            raise EntryError(
                "INVALID_ARGUMENT", f"action {spec.name} can only be a default action (@defaultonly)"
            )
        if len(call.params) != len(spec.widths):
            raise EntryError(
                "INVALID_ARGUMENT",
                f"action {spec.name} takes {len(spec.widths)} parameters, got {len(call.params)}",
            )
        for i, (v, w) in enumerate(zip(call.params, spec.widths, strict=True)):
            if not 0 <= v < (1 << w):
                raise EntryError(
                    "INVALID_ARGUMENT", f"action {spec.name} parameter {i + 1}: {v} does not fit {w} bits"
                )
        return spec

    def check_match(self, entry: TableEntry) -> list[tuple[str, int, int]]:
        fields: list[tuple[str, int, int]] = [("dontcare", 0, 0)] * len(self.kinds)
        seen: set[int] = set()
        for fm in entry.match:
            i = fm.field_id - 1
            if not 0 <= i < len(self.kinds):
                raise EntryError(
                    "INVALID_ARGUMENT", f"table {self.info.name} has no match field {fm.field_id}"
                )
            if i in seen:
                raise EntryError("INVALID_ARGUMENT", f"match field {fm.field_id} given twice")
            seen.add(i)
            kind, w = self.kinds[i], self.widths[i]
            name = self.info.keys[i].name
            full = (1 << w) - 1
            if fm.kind != kind:
                raise EntryError("INVALID_ARGUMENT", f"match field {name} is {kind}, not {fm.kind}")
            if not 0 <= fm.value <= full:
                raise EntryError("INVALID_ARGUMENT", f"match field {name}: value does not fit {w} bits")
            if kind == "lpm":
                if not 0 <= fm.prefix_len <= w:
                    raise EntryError("INVALID_ARGUMENT", f"match field {name}: prefix length {fm.prefix_len}")
                mask = full ^ ((1 << (w - fm.prefix_len)) - 1)
                if fm.value & ~mask:
                    raise EntryError("INVALID_ARGUMENT", f"match field {name}: bits set beyond the prefix")
                fields[i] = ("lpm", fm.value, fm.prefix_len) if fm.prefix_len else ("dontcare", 0, 0)
            elif kind == "ternary":
                if fm.mask & ~full or fm.value & ~fm.mask:
                    raise EntryError(
                        "INVALID_ARGUMENT", f"match field {name}: value has bits outside the mask"
                    )
                fields[i] = ("ternary", fm.value, fm.mask)
            elif kind == "range":
                if not fm.value <= fm.high <= full:
                    raise EntryError(
                        "INVALID_ARGUMENT", f"match field {name}: bad range {fm.value}..{fm.high}"
                    )
                fields[i] = ("range", fm.value, fm.high)
            else:
                fields[i] = (kind, fm.value, full)
        for i, kind in enumerate(self.kinds):
            if kind == "exact" and i not in seen:
                raise EntryError("INVALID_ARGUMENT", f"exact match field {self.info.keys[i].name} is missing")
        if self.needs_priority and entry.priority <= 0:
            raise EntryError("INVALID_ARGUMENT", f"table {self.info.name} needs a priority > 0")
        if not self.needs_priority and entry.priority != 0:
            raise EntryError("INVALID_ARGUMENT", f"table {self.info.name} takes no priority")
        if entry.idle_timeout_ns and not self.info.support_timeout:
            raise EntryError("INVALID_ARGUMENT", f"table {self.info.name} does not support idle timeouts")
        return fields

    @staticmethod
    def identity(entry: TableEntry) -> tuple[Any, ...]:
        match = sorted((m.field_id, m.kind, m.value, m.mask, m.prefix_len, m.high) for m in entry.match)
        return (tuple(match), entry.priority)

    def write(self, op: str, entry: TableEntry, *, const: bool = False) -> None:
        if self.const and not const:
            raise EntryError(
                "PERMISSION_DENIED", f"table {self.info.name} has const entries and cannot be written"
            )
        if entry.is_default_action:
            raise EntryError("INVALID_ARGUMENT", "use set_default_entry for default entries")
        if not self.kinds:
            raise EntryError(
                "INVALID_ARGUMENT", f"table {self.info.name} has no key: only its default entry can be set"
            )
        ident = self.identity(entry)
        if op == "delete":
            gone = self.entries.pop(ident, None)
            if gone is None:
                raise EntryError("NOT_FOUND", f"no such entry in table {self.info.name}")
            if self.exact_only:
                del self._exact[self._exact_key(gone)]
            else:
                self._changed()
            return
        fields = self.check_match(entry)
        spec = self.check_action(entry.action)
        old = self.entries.get(ident)
        if op == "insert":
            if old is not None:
                raise EntryError("ALREADY_EXISTS", f"the entry already exists in table {self.info.name}")
            if len(self.entries) >= self.info.size and not const:
                raise EntryError(
                    "RESOURCE_EXHAUSTED", f"table {self.info.name} is full ({self.info.size} entries)"
                )
        elif op == "modify":
            if old is None:
                raise EntryError("NOT_FOUND", f"no such entry in table {self.info.name}")
        else:
            raise EntryError("INVALID_ARGUMENT", f"unknown write operation {op!r}")
        stored = replace(
            entry, time_since_last_hit_ns=None, match=tuple(sorted(entry.match, key=lambda m: m.field_id))
        )
        self.seq += 1
        e = Entry(
            stored, ident, fields, Rec(spec.fn, entry.action.params, spec.name, True, None), self.clock()
        )
        e.seq = old.seq if old is not None else self.seq
        e.rec.entry = e
        if self.info.direct_counter is not None:
            e.counter = old.counter if old is not None and old.counter is not None else CounterValue()
        if self.info.direct_meter is not None:
            e.meter = old.meter if old is not None and old.meter is not None else MeterCell()
        self.entries[ident] = e
        if self.exact_only:
            self._exact[self._exact_key(e)] = e
        else:
            self._changed()

    @staticmethod
    def _exact_key(e: Entry) -> tuple[int, ...]:
        return tuple(f[1] for f in e.fields)

    def load_const(self, entries: list[ir.ConstEntryInfo]) -> None:
        for ce in entries:
            match: list[FieldMatch] = []
            for i, (kind, v, x) in enumerate(ce.match):
                if kind == "dontcare":
                    continue
                fid = i + 1
                if kind == "lpm":
                    match.append(FieldMatch(fid, "lpm", v, prefix_len=x))
                elif kind == "ternary":
                    match.append(FieldMatch(fid, "ternary", v & x, mask=x))
                elif kind == "range":
                    match.append(FieldMatch(fid, "range", v, high=x))
                else:
                    match.append(FieldMatch(fid, kind, v))  # type: ignore[arg-type]
            spec = self.by_name[ce.action]
            prio = ce.priority if self.needs_priority else 0
            self.write(
                "insert", TableEntry(self.id, tuple(match), ActionCall(spec.id, ce.args), prio), const=True
            )

    def find(self, entry: TableEntry) -> Entry:
        e = self.entries.get(self.identity(entry))
        if e is None:
            raise EntryError("NOT_FOUND", f"no such entry in table {self.info.name}")
        return e

    # ------------------------------------------------------------ lookup
    def _changed(self) -> None:
        """The entries changed: the next lookup builds the lookup function anew, so a Write of
        thousands of ternary entries builds it once, not once per entry (quadratic: 4,096
        classifier entries took 96 s).  Callers hold the device's lock, as lookups do."""
        self.lookup = self._lookup_after_change

    def _lookup_after_change(self, key: tuple[int, ...]) -> Rec:
        self.lookup = self._rebuild()
        return self.lookup(key)

    def _rebuild(self) -> Callable[[tuple[int, ...]], Rec]:
        """A lookup function specialised to the current entries."""
        default = self.default
        hit = self._hit
        if self.needs_priority:
            ordered = sorted(self.entries.values(), key=lambda e: (-e.api.priority, e.seq))
            checks = [
                (e, [(i, k, v, x) for i, (k, v, x) in enumerate(e.fields) if k != "dontcare"])
                for e in ordered
            ]

            def lookup_scan(key: tuple[int, ...]) -> Rec:
                for e, fs in checks:
                    for i, k, v, x in fs:
                        kv = key[i]
                        if k == "ternary":
                            if kv & x != v:
                                break
                        elif k == "range":
                            if not v <= kv <= x:
                                break
                        elif k == "lpm":
                            w = self.widths[i]
                            if kv >> (w - x) != v >> (w - x):
                                break
                        elif kv != v:
                            break
                    else:
                        return hit(e)
                return default

            return lookup_scan
        if self.lpm_index >= 0:
            li = self.lpm_index
            w = self.widths[li]
            levels: dict[int, dict[tuple[int, ...], Entry]] = {}
            for e in self.entries.values():
                kind, v, plen = e.fields[li]
                plen = plen if kind == "lpm" else 0
                k = tuple(f[1] if i != li else v for i, f in enumerate(e.fields))
                levels.setdefault(plen, {})[k] = e
            order = [(((1 << w) - 1) ^ ((1 << (w - p)) - 1), levels[p]) for p in sorted(levels, reverse=True)]
            if len(self.kinds) == 1:
                order1 = [(m, {k[0]: e for k, e in d.items()}) for m, d in order]

                def lookup_lpm1(key: tuple[int, ...]) -> Rec:
                    kv = key[0]
                    for m, d in order1:
                        e = d.get(kv & m)
                        if e is not None:
                            return hit(e)
                    return default

                return lookup_lpm1

            def lookup_lpm(key: tuple[int, ...]) -> Rec:
                for m, d in order:
                    k = (*key[:li], key[li] & m, *key[li + 1 :])
                    e = d.get(k)
                    if e is not None:
                        return hit(e)
                return default

            return lookup_lpm
        exact = self._exact  # the same dict writes update, so no rebuild per write

        def lookup_exact(key: tuple[int, ...]) -> Rec:
            e = exact.get(key)
            return default if e is None else hit(e)

        return lookup_exact

    def _hit(self, e: Entry) -> Rec:
        if self.info.support_timeout:
            e.last_hit = self.clock()
            e.reported = False
        if e.counter is not None:
            e.counter.packets += 1
            e.counter.bytes += self.ps.length
        if e.meter is not None:
            self.ps.meter_color = e.meter.execute(self.ps.length if self.meter_bytes else 1, self.clock())
        return e.rec

    def set_direct_meter(self, entry: TableEntry, config: MeterConfig | None) -> None:
        e = self.find(entry)
        if e.meter is None:
            raise EntryError("INVALID_ARGUMENT", f"table {self.info.name} has no direct meter")
        e.meter.configure(config, self.clock())

    # ------------------------------------------------------------ reads
    def read(self) -> list[TableEntry]:
        now = self.clock()
        out = []
        for e in sorted(self.entries.values(), key=lambda e: e.seq):
            if self.info.support_timeout:
                out.append(replace(e.api, time_since_last_hit_ns=max(0, now - e.last_hit)))
            else:
                out.append(e.api)
        return out

    def expired(self) -> list[TableEntry]:
        now = self.clock()
        out = []
        for e in self.entries.values():
            t = e.api.idle_timeout_ns
            if t and not e.reported and now - e.last_hit >= t:
                e.reported = True
                out.append(replace(e.api, time_since_last_hit_ns=now - e.last_hit))
        return out
