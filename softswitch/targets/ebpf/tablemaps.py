"""One table's maps as the control plane sees them: entry keys and values encoded in the layout
the C generator chose (:class:`~.cgen.TableLayout`), scan-table slots, and the last-hit time of
tables with idle timeouts."""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ...api import ActionCall, EntryError, FieldMatch, TableEntry
from . import cgen
from .libbpf import BpfMap, BpfObject


class TableMaps:
    """One table's maps and the entries written into them (the control plane's view)."""

    def __init__(self, obj: BpfObject, lay: cgen.TableLayout, info: Any) -> None:
        self.lay = lay
        self.info = info  # ir.TableInfo (numbered)
        self.nargs = max(lay.max_params, 1)
        nk = max(len(lay.keys), 1)
        kb = lay.key_bytes
        if lay.kind == "scan":
            self.key_size = 4
            self.value_size = 16 + 16 * nk + 8 * self.nargs
        else:
            self.key_size = (4 + kb + 3) // 4 * 4 if lay.kind == "lpm" else max(kb, 1)
            self.value_size = 8 + 8 * self.nargs
        if lay.timeout:
            self.value_size += 8  # hit_ns, last
        self.raw_keys: dict[tuple[tuple[FieldMatch, ...], int], bytes] = {}  # hash/lpm: each entry's map key
        # support_timeout: per entry, the hit time its last expiry report saw (one report per idle period)
        self.reported: dict[tuple[tuple[FieldMatch, ...], int], int] = {}
        self.map = BpfMap(obj, lay.map_name, self.key_size, self.value_size)
        self.default = BpfMap(obj, lay.default_map, 4, self.value_size)
        self.entries: dict[tuple[tuple[FieldMatch, ...], int], TableEntry] = {}
        self.slots: dict[tuple[tuple[FieldMatch, ...], int], int] = {}
        self.free = list(range(lay.size - 1, -1, -1)) if lay.kind == "scan" else []
        self.field_pos = {k.id: i for i, k in enumerate(info.keys)}
        self.default_call = ActionCall(0)

    def _by_name(self, match: Sequence[FieldMatch]) -> dict[str, FieldMatch]:
        try:
            return {self.info.keys[self.field_pos[m.field_id]].name: m for m in match}
        except KeyError:
            raise EntryError("INVALID_ARGUMENT", f"unknown match field in {self.lay.name}") from None

    def key(self, match: Sequence[FieldMatch]) -> bytes:
        """The map key of a hash/lpm entry."""
        by_name = self._by_name(match)
        data = b""
        plen = 0
        for kf in self.lay.keys:
            m = by_name.get(kf.name)
            if kf.match_kind == "exact":
                if m is None:
                    raise EntryError("INVALID_ARGUMENT", f"exact field {kf.name} is missing")
                plen += 8 * kf.nbytes
                data += m.value.to_bytes(kf.nbytes, "big")
            else:
                value, pl = (m.value, m.prefix_len) if m is not None else (0, 0)
                plen += pl
                data += value.to_bytes(kf.nbytes, "big")
        if self.lay.kind == "lpm":
            raw = struct.pack("=I", plen) + data
            return raw + bytes(self.key_size - len(raw))
        return data or b"\0"

    def _call(self, action: ActionCall, actions_by_id: Mapping[int, str]) -> tuple[int, list[int]]:
        name = actions_by_id.get(action.action_id)
        if name is None or name not in self.lay.actions:
            raise EntryError(
                "INVALID_ARGUMENT", f"action {action.action_id} is not an action of {self.lay.name}"
            )
        return self.lay.actions.index(name), list(action.params) + [0] * (self.nargs - len(action.params))

    def value(self, action: ActionCall, actions_by_id: Mapping[int, str]) -> bytes:
        """A hash/lpm value, or a default entry's (for every kind)."""
        index, args = self._call(action, actions_by_id)
        if self.lay.kind == "scan":
            nk = max(len(self.lay.keys), 1)
            raw = struct.pack(f"=IIII{2 * nk}Q{len(args)}Q", 1, 0, index, 0, *[0] * (2 * nk), *args)
        else:
            raw = struct.pack(f"=II{len(args)}Q", index, 0, *args)
        return raw + self.hit_now()

    def hit_now(self) -> bytes:
        """The last-hit field of a value written now: an entry's idle time starts when it is written
        (bpf_ktime_get_ns and time.monotonic_ns are both CLOCK_MONOTONIC)."""
        return struct.pack("=Q", time.monotonic_ns()) if self.lay.timeout else b""

    def last_hits(self) -> dict[tuple[tuple[FieldMatch, ...], int], int]:
        """When the program last hit each entry (monotonic ns), read in batches: the server's
        sweep reads a session table of 2^20 entries this way."""
        by_key = {
            bytes(k): int(struct.unpack_from("=Q", v, self.value_size - 8)[0]) for k, v in self.map.items()
        }
        out: dict[tuple[tuple[FieldMatch, ...], int], int] = {}
        for ident in self.entries:
            raw_key = (
                struct.pack("=I", self.slots[ident]) if self.lay.kind == "scan" else self.raw_keys[ident]
            )
            hit = by_key.get(raw_key)
            if hit is None:
                raise EntryError("INTERNAL", f"an entry of {self.lay.name} is missing from its map")
            out[ident] = hit
        return out

    def slot(
        self, priority: int, match: Sequence[FieldMatch], action: ActionCall, actions_by_id: Mapping[int, str]
    ) -> bytes:
        """A scan table's slot: valid, priority, action, per key (value, mask) or (low, high), args."""
        index, args = self._call(action, actions_by_id)
        by_name = self._by_name(match)
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
        nk = max(len(self.lay.keys), 1)
        lo += [0] * (nk - len(lo))
        hi += [0] * (nk - len(hi))
        return (
            struct.pack(f"=IIII{nk}Q{nk}Q{len(args)}Q", 1, priority, index, 0, *lo, *hi, *args)
            + self.hit_now()
        )
