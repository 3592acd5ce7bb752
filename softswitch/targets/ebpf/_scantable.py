"""Ternary, range and optional tables: an ARRAY of ``size`` slots ``{valid, priority, action,
lo[], hi[], args[]}`` the program scans.  An insert takes a free slot (O(1)); the control plane
keeps each entry as written, by (match, priority), with its slot."""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ...api import ActionCall, EntryError, FieldMatch, TableEntry, WriteOp
from . import cgen
from ._idle import IdleTimer
from .libbpf import BpfObject
from .tablemaps import ActionSig, TableMaps

log = logging.getLogger("dysco.softswitch.ebpf")

Ident = tuple[tuple[FieldMatch, ...], int]
_SLOT = struct.Struct("=I")


class ScanTable(TableMaps):
    def __init__(
        self, obj: BpfObject, lay: cgen.TableLayout, info: Any, actions: Mapping[str, ActionSig]
    ) -> None:
        super().__init__(obj, lay, info, actions)
        self.entries: dict[Ident, TableEntry] = {}
        self.slots: dict[Ident, int] = {}
        self.by_slot: dict[int, Ident] = {}
        self.free = list(range(lay.size - 1, -1, -1))
        self.timer: IdleTimer[int] = IdleTimer()
        self._names = {k.id: k.name for k in info.keys}
        self._nk = max(len(lay.keys), 1)

    def __len__(self) -> int:
        return len(self.entries)

    def value(self, action: ActionCall, now: int) -> bytes:
        """The default entry's value: a valid slot without keys."""
        index, args = self.call(action)
        raw = struct.pack(f"=IIII{2 * self._nk}Q{len(args)}Q", 1, 0, index, 0, *[0] * (2 * self._nk), *args)
        return raw + (struct.pack("=Q", now) if self.lay.timeout else b"")

    def slot(self, priority: int, match: Sequence[FieldMatch], action: ActionCall, now: int) -> bytes:
        """A slot: valid, priority, action, per key (value, mask) or (low, high), args, last hit."""
        index, args = self.call(action)
        try:
            by_name = {self._names[m.field_id]: m for m in match}
        except KeyError:
            raise EntryError("INVALID_ARGUMENT", f"unknown match field in {self.lay.name}") from None
        lo: list[int] = []
        hi: list[int] = []
        for kf in self.lay.keys:
            full = (1 << kf.width) - 1
            m = by_name.get(kf.name)
            if m is None:
                if kf.match_kind == "exact":
                    raise EntryError("INVALID_ARGUMENT", f"exact field {kf.name} is missing")
                lo.append(0)
                hi.append(full if kf.match_kind == "range" else 0)
            elif kf.match_kind == "range":
                lo.append(m.value)
                hi.append(m.high)
            elif kf.match_kind == "ternary":
                lo.append(m.value & m.mask)
                hi.append(m.mask)
            elif kf.match_kind == "lpm":
                mask = full ^ ((1 << (kf.width - m.prefix_len)) - 1)
                lo.append(m.value & mask)
                hi.append(mask)
            else:  # exact, optional
                lo.append(m.value)
                hi.append(full)
        nk = self._nk
        lo += [0] * (nk - len(lo))
        hi += [0] * (nk - len(hi))
        raw = struct.pack(f"=IIII{nk}Q{nk}Q{len(args)}Q", 1, priority, index, 0, *lo, *hi, *args)
        return raw + (struct.pack("=Q", now) if self.lay.timeout else b"")

    def write(self, updates: Sequence[tuple[WriteOp, TableEntry]], now: int) -> list[EntryError | None]:
        out: list[EntryError | None] = []
        for op, entry in updates:
            try:
                self._write_one(op, entry, now)
                out.append(None)
            except EntryError as exc:
                out.append(exc)
        return out

    def _write_one(self, op: WriteOp, entry: TableEntry, now: int) -> None:
        self.check_timeout(self.lay, entry)
        ident = (entry.match, entry.priority)
        if op == "delete":
            if ident not in self.entries:
                raise EntryError("NOT_FOUND", "no such entry")
            slot = self.slots.pop(ident)
            self.map.update(_SLOT.pack(slot), bytes(self.value_size))
            self.free.append(slot)
            del self.entries[ident], self.by_slot[slot]
            self.timer.stop(slot)
            return
        if op == "insert" and ident in self.entries:
            raise EntryError("ALREADY_EXISTS", "the entry exists already")
        if op == "modify" and ident not in self.entries:
            raise EntryError("NOT_FOUND", "no such entry")
        if op == "insert" and not self.free:
            raise EntryError("RESOURCE_EXHAUSTED", f"table {self.lay.name} is full ({self.lay.size} entries)")
        value = self.slot(entry.priority, entry.match, entry.action, now)
        slot = self.slots[ident] if op == "modify" else self.free.pop()
        self.map.update(_SLOT.pack(slot), value)
        self.slots[ident] = slot
        self.by_slot[slot] = ident
        self.entries[ident] = entry
        if entry.idle_timeout_ns:
            self.timer.start(slot, now + entry.idle_timeout_ns)
        else:
            self.timer.stop(slot)

    def _hits(self) -> dict[int, int]:
        return {_SLOT.unpack(k)[0]: self.last_hit(v) for k, v in self.map.items()}

    def read(self, now: int) -> list[TableEntry]:
        if not self.lay.timeout:
            return list(self.entries.values())
        hits = self._hits()
        return [
            replace(e, time_since_last_hit_ns=max(0, now - hits[self.slots[ident]]))
            for ident, e in self.entries.items()
        ]

    def expired(self, now: int, budget: int) -> list[TableEntry]:
        slots = self.timer.pop_due(now, budget)
        if not slots:
            return []
        hits = self._hits()
        out: list[TableEntry] = []
        for slot in slots:
            ident = self.by_slot.get(slot)
            if ident is None:
                log.warning("%s: an entry with an idle timeout is missing (bug)", self.lay.name)
                continue
            e = self.entries[ident]
            hit = hits[slot]
            if now - hit < e.idle_timeout_ns:
                self.timer.schedule(slot, hit + e.idle_timeout_ns)
                continue
            if self.timer.reported.get(slot) != hit:
                self.timer.reported[slot] = hit
                out.append(replace(e, time_since_last_hit_ns=now - hit))
            self.timer.schedule(slot, now + e.idle_timeout_ns)
        return out
