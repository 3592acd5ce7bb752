"""Exact and lpm tables: a HASH or LPM_TRIE keyed by the key fields big-endian (exact first,
the lpm field last, behind the trie's prefix length).

The map is the store of record for what an entry does (its action and arguments); the control
plane keeps, per map key, only what the map has no room for: the idle timeout, the controller
metadata and the metadata (:data:`Extras`, one tuple per distinct value, shared between entries
that agree on them; the value's ``pad`` word holds its id in :mod:`._extras`, so a restarted
switch rebuilds this view from the maps alone, :meth:`HashTable.adopt`).  A million session
entries thus cost a dict slot and a 13-byte key each in the server, and no object the garbage
collector has to walk.

A Write's inserts and modifies reach the kernel in one BPF_MAP_UPDATE_BATCH per run (deletes in
one BPF_MAP_DELETE_BATCH), after each update was checked against the control plane's view in
order, so the per-update answers (ALREADY_EXISTS, NOT_FOUND, RESOURCE_EXHAUSTED) are those of
writing them one by one.  If the kernel refuses an element of a batch, the elements before it
stand, and it and the ones after it are written one by one, each with its own answer.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ...api import EntryError, FieldMatch, TableEntry, WriteOp
from . import cgen
from ._extras import Extras, ExtrasStore
from ._idle import IdleTimer
from .libbpf import Loaded
from .tablemaps import ActionSig, TableMaps

log = logging.getLogger("dysco.softswitch.ebpf")
FULL_READ_FRACTION = 8
"""A sweep with more than this fraction of the table's entries due reads the whole map in
batches instead of looking each one up (a lookup costs a system call, a full read a few
hundred nanoseconds per entry of the table)."""
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
_FULL = (errno.E2BIG, errno.ENOMEM)
_PLEN = _PAD = struct.Struct("=I")

# one pending kernel write: update index, op, entry, map key, value (b"" for a delete), and the
# control plane's view of the key before it (None: no entry), to undo if the kernel refuses
_Pending = tuple[int, WriteOp, TableEntry, bytes, bytes, "Extras | None"]


class HashTable(TableMaps):
    def __init__(
        self,
        obj: Loaded,
        lay: cgen.TableLayout,
        info: Any,
        actions: Mapping[str, ActionSig],
        store: ExtrasStore,
    ) -> None:
        super().__init__(obj, lay, info, actions, store)
        self.entries: dict[bytes, Extras] = {}
        self.timer: IdleTimer[bytes] = IdleTimer()
        ids = {k.name: k.id for k in info.keys}
        # map-key order: (field id, bytes, match kind)
        self._fields = [(ids[k.name], k.nbytes, k.match_kind) for k in lay.keys]
        self._pos = {fid: i for i, (fid, _, _) in enumerate(self._fields)}
        self._exact_bits = sum(8 * nb for _, nb, kind in self._fields if kind == "exact")
        # the common case: every field exact, field ids in key order (what a match tuple holds)
        self._in_order = tuple(fid for fid, _, _ in self._fields)
        self._nbytes = tuple(nb for _, nb, _ in self._fields)
        self._direct = lay.kind == "hash" and list(self._in_order) == sorted(self._in_order)

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------ keys
    def key(self, match: Sequence[FieldMatch]) -> bytes:
        """The map key of an entry's match."""
        if self._direct and len(match) == len(self._in_order):
            parts = []
            for m, fid, nb in zip(match, self._in_order, self._nbytes, strict=True):
                if m.field_id != fid:
                    break
                parts.append(m.value.to_bytes(nb, "big"))
            else:
                return b"".join(parts)
        parts = [b""] * len(self._fields)
        plen = 0
        for m in match:
            pos = self._pos.get(m.field_id)
            if pos is None:
                raise EntryError("INVALID_ARGUMENT", f"unknown match field {m.field_id} in {self.lay.name}")
            _, nb, kind = self._fields[pos]
            if kind == "lpm":
                plen += m.prefix_len
                value = m.value & ~((1 << (8 * nb - m.prefix_len)) - 1)  # the bits the trie compares
            else:
                value = m.value
            parts[pos] = value.to_bytes(nb, "big")
        for (fid, _, kind), part in zip(self._fields, parts, strict=True):
            if not part and kind == "exact":
                name = next(k.name for k in self.info.keys if k.id == fid)
                raise EntryError("INVALID_ARGUMENT", f"exact field {name} is missing")
        data = b"".join(p or bytes(nb) for p, (_, nb, _) in zip(parts, self._fields, strict=True))
        if self.lay.kind == "lpm":
            raw = _PLEN.pack(self._exact_bits + plen) + data
            return raw + bytes(self.key_size - len(raw))
        return data or b"\0"

    def match_of(self, raw: bytes) -> tuple[FieldMatch, ...]:
        """The match of the entry whose map key is ``raw`` (sorted by field id)."""
        out: list[FieldMatch] = []
        at = plen = 0
        if self.lay.kind == "lpm":
            (plen,) = _PLEN.unpack_from(raw)
            at = 4
        for fid, nb, kind in self._fields:
            value = int.from_bytes(raw[at : at + nb], "big")
            at += nb
            if kind == "exact":
                out.append(FieldMatch(fid, "exact", value))
            elif plen > self._exact_bits:
                out.append(FieldMatch(fid, "lpm", value, prefix_len=plen - self._exact_bits))
        return tuple(sorted(out, key=lambda m: m.field_id))

    def _xid(self, entry: TableEntry) -> int:
        """The id of the entry's Extras (made if new)."""
        return self.store.id_of(entry.idle_timeout_ns, entry.controller_metadata, entry.metadata)

    def _checked_key(self, entry: TableEntry) -> bytes:
        """The entry's map key (its identity here: a priority, which only const entries carry in
        such a table, does not tell entries apart)."""
        self.check_timeout(self.lay, entry)
        try:
            return self.key(entry.match)
        except OverflowError:
            raise EntryError(
                "INVALID_ARGUMENT", f"{self.lay.name}: a match value is wider than its field"
            ) from None

    # ------------------------------------------------------------ writes
    def write(self, updates: Sequence[tuple[WriteOp, TableEntry]], now: int) -> list[EntryError | None]:
        results: list[EntryError | None] = [None] * len(updates)
        entries = self.entries
        run: list[_Pending] = []
        run_deletes = False
        for i, (op, entry) in enumerate(updates):
            try:
                raw = self._checked_key(entry)
                prev = entries.get(raw)
                value = b""
                xid = 0
                if op == "delete":
                    if prev is None:
                        raise EntryError("NOT_FOUND", "no such entry")
                elif op == "insert":
                    if prev is not None:
                        raise EntryError("ALREADY_EXISTS", "the entry exists already")
                    if len(entries) >= self.lay.size:
                        raise EntryError(
                            "RESOURCE_EXHAUSTED", f"table {self.lay.name} is full ({self.lay.size} entries)"
                        )
                    xid = self._xid(entry)
                    value = self.value(entry.action, now, xid)
                elif prev is None:
                    raise EntryError("NOT_FOUND", "no such entry")
                else:
                    xid = self._xid(entry)
                    value = self.value(entry.action, now, xid)
            except EntryError as exc:
                results[i] = exc
                continue
            deleting = op == "delete"
            if run and deleting != run_deletes:
                self._flush(run, run_deletes, results, now)
                run = []
            run_deletes = deleting
            run.append((i, op, entry, raw, value, prev))
            if deleting:
                del entries[raw]
            else:
                entries[raw] = self.store.by_id[xid]
        if run:
            self._flush(run, run_deletes, results, now)
        return results

    def _flush(self, run: list[_Pending], deletes: bool, results: list[EntryError | None], now: int) -> None:
        """Write a run of updates (or of deletes) into the map in one system call."""
        keys = b"".join([p[3] for p in run])
        if deletes:
            done, err = self.map.delete_batch(keys)
        else:
            done, err = self.map.update_batch(keys, b"".join([p[4] for p in run]))
        if self.lay.timeout:  # else no entry has a timeout to track
            timer = self.timer
            for _, _, entry, raw, _, _ in run[:done]:
                timeout = 0 if deletes else entry.idle_timeout_ns
                if timeout:
                    timer.start(raw, now + timeout)
                else:
                    timer.stop(raw)
        if not err:
            return
        log.debug("%s: the kernel stopped a batch at %d of %d (errno %d)", self.lay.name, done, len(run), err)
        rest = run[done:]
        for _, _, _, raw, _, prev in reversed(rest):
            if prev is None:
                self.entries.pop(raw, None)
            else:
                self.entries[raw] = prev
        for i, op, entry, *_ in rest:
            results[i] = self._write_one(op, entry, now)

    def _write_one(self, op: WriteOp, entry: TableEntry, now: int) -> EntryError | None:
        """One update, checked and written on its own (a system call of its own)."""
        try:
            raw = self._checked_key(entry)
            prev = self.entries.get(raw)
            if op == "delete":
                if prev is None or not self.map.delete(raw):
                    raise EntryError("NOT_FOUND", "no such entry")
                del self.entries[raw]
            else:
                if op == "insert" and prev is not None:
                    raise EntryError("ALREADY_EXISTS", "the entry exists already")
                if op == "modify" and prev is None:
                    raise EntryError("NOT_FOUND", "no such entry")
                if op == "insert" and len(self.entries) >= self.lay.size:
                    raise EntryError(
                        "RESOURCE_EXHAUSTED", f"table {self.lay.name} is full ({self.lay.size} entries)"
                    )
                xid = self._xid(entry)
                try:
                    self.map.update(
                        raw, self.value(entry.action, now, xid), BPF_NOEXIST if op == "insert" else BPF_EXIST
                    )
                except OSError as exc:
                    code = "RESOURCE_EXHAUSTED" if exc.errno in _FULL else "INTERNAL"
                    raise EntryError(code, str(exc)) from None
                self.entries[raw] = self.store.by_id[xid]
        except EntryError as exc:
            return exc
        self._track(op, entry, raw, now)
        return None

    def _track(self, op: WriteOp, entry: TableEntry, raw: bytes, now: int) -> None:
        if op != "delete" and entry.idle_timeout_ns:
            self.timer.start(raw, now + entry.idle_timeout_ns)
        elif self.lay.timeout:
            self.timer.stop(raw)

    # ------------------------------------------------------------ re-adoption
    def adopt(self) -> None:
        self.entries.clear()
        for raw, value in self.map.items():
            extras = self.extras_of(_PAD.unpack_from(value, 4)[0])
            self.entries[raw] = extras
            if extras[0]:
                self.timer.start(raw, self.last_hit(value) + extras[0])
        self.adopt_default()

    def in_use(self) -> Iterable[Extras]:
        return set(self.entries.values())

    # ------------------------------------------------------------ reads
    def _entry(self, raw: bytes, value: bytes, extras: Extras, now: int) -> TableEntry:
        timeout, cmeta, meta = extras
        since = max(0, now - self.last_hit(value)) if self.lay.timeout else None
        return TableEntry(self.info.id, self.match_of(raw), self.call_of(value), 0, timeout, cmeta, meta,
                          time_since_last_hit_ns=since)  # fmt: skip

    def read(self, now: int) -> list[TableEntry]:
        values = dict(self.map.items())
        out: list[TableEntry] = []
        for raw, extras in self.entries.items():
            value = values.get(raw)
            if value is None:
                raise EntryError("INTERNAL", f"an entry of {self.lay.name} is missing from its map")
            out.append(self._entry(raw, value, extras, now))
        return out

    def expired(self, now: int, budget: int) -> list[TableEntry]:
        keys = self.timer.pop_due(now, budget)
        if not keys:
            return []
        get: Callable[[bytes], bytes | None]
        full = len(keys) * FULL_READ_FRACTION > len(self.entries)
        get = dict(self.map.items()).get if full else self.map.lookup
        out: list[TableEntry] = []
        for raw in keys:
            extras, value = self.entries.get(raw), get(raw)
            if extras is None or value is None or not extras[0]:
                log.warning("%s: an entry with an idle timeout is missing (bug)", self.lay.name)
                continue
            timeout, hit = extras[0], self.last_hit(value)
            if now - hit < timeout:
                self.timer.schedule(raw, hit + timeout)
                continue
            if self.timer.reported.get(raw) != hit:
                self.timer.reported[raw] = hit
                out.append(self._entry(raw, value, extras, now))
            self.timer.schedule(raw, now + timeout)
        return out
