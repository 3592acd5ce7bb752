"""Ternary, range and optional tables: an ARRAY of ``size`` slots ``{valid, priority, action,
pad, lo[], hi[], args[]}`` the program scans.  An insert takes a free slot (O(1)); the control
plane keeps each entry as written, by (match, priority), with its slot.  ``pad`` holds the id of
the entry's Extras (:mod:`._extras`), and every match kind can be read back from ``lo``/``hi``
(the P4Runtime rules leave one way to write each), so :meth:`ScanTable.adopt` rebuilds the
entries from the slots."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ...api import ActionCall, EntryError, FieldMatch, TableEntry, WriteOp
from . import cgen
from ._extras import Extras, ExtrasStore
from ._idle import IdleTimer
from .libbpf import Loaded
from .tablemaps import ActionSig, TableMaps

log = logging.getLogger("dysco.softswitch.ebpf")

Ident = tuple[tuple[FieldMatch, ...], int]
_SLOT = struct.Struct("=I")
_HEAD = struct.Struct("=IIII")  # valid, priority, action, pad (the Extras id)


class ScanTable(TableMaps):
    def __init__(
        self,
        obj: Loaded,
        lay: cgen.TableLayout,
        info: Any,
        actions: Mapping[str, ActionSig],
        store: ExtrasStore,
    ) -> None:
        super().__init__(obj, lay, info, actions, store)
        self.entries: dict[Ident, TableEntry] = {}
        self.slots: dict[Ident, int] = {}
        self.by_slot: dict[int, Ident] = {}
        self.free = list(range(lay.size - 1, -1, -1))
        self.timer: IdleTimer[int] = IdleTimer()
        self._names = {k.id: k.name for k in info.keys}
        self._ids = {k.name: k.id for k in info.keys}
        self._nk = max(len(lay.keys), 1)

    def __len__(self) -> int:
        return len(self.entries)

    def value(self, action: ActionCall, now: int, xid: int = 0) -> bytes:
        """The default entry's value: a valid slot without keys."""
        index, args = self.call(action)
        raw = struct.pack(f"=IIII{2 * self._nk}Q{len(args)}Q", 1, 0, index, xid, *[0] * (2 * self._nk), *args)
        return raw + (struct.pack("=Q", now) if self.lay.timeout else b"")

    def slot(
        self, priority: int, match: Sequence[FieldMatch], action: ActionCall, now: int, xid: int = 0
    ) -> bytes:
        """A slot: valid, priority, action, Extras id, per key (value, mask) or (low, high),
        args, last hit."""
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
        raw = struct.pack(f"=IIII{nk}Q{nk}Q{len(args)}Q", 1, priority, index, xid, *lo, *hi, *args)
        return raw + (struct.pack("=Q", now) if self.lay.timeout else b"")

    def match_of(self, value: bytes) -> tuple[FieldMatch, ...]:
        """The match a slot was written for (sorted by field id), as :meth:`slot` encodes it."""
        nk = self._nk
        lo = struct.unpack_from(f"={nk}Q", value, _HEAD.size)
        hi = struct.unpack_from(f"={nk}Q", value, _HEAD.size + 8 * nk)
        out: list[FieldMatch] = []
        for kf, low, high in zip(self.lay.keys, lo, hi, strict=False):
            fid = self._ids[kf.name]
            full = (1 << kf.width) - 1
            kind = kf.match_kind
            if kind == "range":
                if (low, high) != (0, full):
                    out.append(FieldMatch(fid, "range", low, high=high))
            elif not high:  # mask 0: a ternary, lpm or optional field left out
                continue
            elif kind == "ternary":
                out.append(FieldMatch(fid, "ternary", low, mask=high))
            elif kind == "lpm":
                out.append(FieldMatch(fid, "lpm", low, prefix_len=bin(high).count("1")))
            elif kind == "optional":
                out.append(FieldMatch(fid, "optional", low))
            else:
                out.append(FieldMatch(fid, "exact", low))
        return tuple(sorted(out, key=lambda m: m.field_id))

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
        value = self.slot(entry.priority, entry.match, entry.action, now, self._xid(entry))
        slot = self.slots[ident] if op == "modify" else self.free.pop()
        self.map.update(_SLOT.pack(slot), value)
        self.slots[ident] = slot
        self.by_slot[slot] = ident
        self.entries[ident] = entry
        if entry.idle_timeout_ns:
            self.timer.start(slot, now + entry.idle_timeout_ns)
        else:
            self.timer.stop(slot)

    def _xid(self, entry: TableEntry) -> int:
        return self.store.id_of(entry.idle_timeout_ns, entry.controller_metadata, entry.metadata)

    def adopt(self) -> None:
        self.entries.clear()
        self.slots.clear()
        self.by_slot.clear()
        for raw, value in self.map.items():
            valid, priority, _, xid = _HEAD.unpack_from(value)
            if not valid:
                continue
            (slot,) = _SLOT.unpack(raw)
            timeout, cmeta, meta = self.extras_of(xid)
            match = self.match_of(value)
            entry = TableEntry(self.info.id, match, self.call_of(value), priority, timeout, cmeta, meta)
            ident = (match, priority)
            self.entries[ident] = entry
            self.slots[ident] = slot
            self.by_slot[slot] = ident
            if timeout:
                self.timer.start(slot, self.last_hit(value) + timeout)
        self.free = [s for s in range(self.lay.size - 1, -1, -1) if s not in self.by_slot]
        self.adopt_default()

    def in_use(self) -> Iterable[Extras]:
        return {(e.idle_timeout_ns, e.controller_metadata, e.metadata) for e in self.entries.values()}

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
