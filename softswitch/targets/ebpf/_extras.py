"""What a table entry carries that its map value has no field for: the idle timeout, the
controller metadata and the metadata (:data:`Extras`), kept where a restarted switch finds them.

Each distinct :data:`Extras` gets a small id; an entry's value holds the id in the ``pad`` word
the C generator leaves after the action index (the program never reads it), and the pinned
HASH map ``dysco_extras`` holds id -> record.  A table's entries normally share one timeout and
no metadata, so a million session entries cost one record; a Write makes a record only for
Extras it has not seen.  Id 0 is "no timeout, no metadata" and has no record.

Records of Extras no entry uses any more are deleted when the map fills (:meth:`ExtrasStore.
collect`, given what is in use), or at re-adoption.  Record layout (the wire format, one
:data:`RECORD` plus the metadata bytes, zero-padded)::

    idle_timeout_ns u64 | controller_metadata u64 | metadata length u32 | pad u32 | metadata
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

from ...api import EntryError
from .libbpf import BpfMap, Loaded, create_map

log = logging.getLogger("dysco.softswitch.ebpf")

Extras = tuple[int, int, bytes]
"""idle_timeout_ns, controller_metadata, metadata."""
NONE: Extras = (0, 0, b"")
RECORD = struct.Struct("=QQII")
META_MAX = 1000
"""Metadata bytes an entry may carry on the ebpf back end."""
VALUE_SIZE = RECORD.size + META_MAX
CAPACITY = 1 << 16
"""Distinct Extras in use at once (records are made for distinct ones only)."""
BPF_MAP_TYPE_HASH = 1
BPF_F_NO_PREALLOC = 1
_ID = struct.Struct("=I")


def create(pin: Path) -> int:
    """The (empty) map, pinned at ``pin``; its fd."""
    return create_map(BPF_MAP_TYPE_HASH, pin.name, 4, VALUE_SIZE, CAPACITY, pin, BPF_F_NO_PREALLOC)


class ExtrasStore:
    """Ids for Extras, written through to the map.  ``in_use`` says which Extras entries use
    now (asked when the map is full)."""

    def __init__(self, obj: Loaded, name: str, in_use: Callable[[], Iterable[Extras]]) -> None:
        self.map = BpfMap(obj, name, 4, VALUE_SIZE)
        self._in_use = in_use
        self.ids: dict[Extras, int] = {NONE: 0}
        self.by_id: dict[int, Extras] = {0: NONE}
        self._by_timeout: dict[int, int] = {0: 0}
        self._next = 1

    def id_of(self, timeout: int, cmeta: int, meta: bytes) -> int:
        """The id of these Extras, made (and written to the map) if new."""
        if not cmeta and not meta:
            found = self._by_timeout.get(timeout)
            if found is not None:
                return found
        extras = (timeout, cmeta, meta)
        xid = self.ids.get(extras)
        if xid is not None:
            return xid
        if len(meta) > META_MAX:
            raise EntryError(
                "INVALID_ARGUMENT", f"metadata of {len(meta)} bytes: the ebpf back end keeps {META_MAX}"
            )
        if len(self.ids) > CAPACITY:
            self.collect(self._in_use())
        if len(self.ids) > CAPACITY:
            raise EntryError(
                "RESOURCE_EXHAUSTED", f"more than {CAPACITY} distinct idle timeouts and metadata"
            )
        xid = self._take_id()
        value = RECORD.pack(timeout, cmeta & (2**64 - 1), len(meta), 0) + meta
        try:
            self.map.update(_ID.pack(xid), value + bytes(VALUE_SIZE - len(value)))
        except OSError as exc:
            raise EntryError("RESOURCE_EXHAUSTED", f"cannot keep an entry's metadata: {exc}") from None
        self._remember(xid, extras)
        return xid

    def _take_id(self) -> int:
        while self._next in self.by_id or self._next == 0:
            self._next = (self._next + 1) & 0xFFFFFFFF
        xid = self._next
        self._next = (self._next + 1) & 0xFFFFFFFF
        return xid

    def _remember(self, xid: int, extras: Extras) -> None:
        self.ids[extras] = xid
        self.by_id[xid] = extras
        if not extras[1] and not extras[2]:
            self._by_timeout[extras[0]] = xid

    def get(self, xid: int) -> Extras | None:
        return self.by_id.get(xid)

    def load(self) -> None:
        """Read every record (re-adoption)."""
        for raw, value in self.map.items():
            (xid,) = _ID.unpack(raw)
            timeout, cmeta, n, _ = RECORD.unpack_from(value)
            meta = bytes(value[RECORD.size : RECORD.size + min(n, META_MAX)])
            self._remember(xid, (timeout, cmeta, meta))
        self._next = (max(self.by_id) + 1) & 0xFFFFFFFF

    def collect(self, in_use: Iterable[Extras]) -> int:
        """Delete the records of Extras not in ``in_use``; how many went."""
        keep = set(in_use) | {NONE}
        gone = [x for x in self.ids if x not in keep]
        for extras in gone:
            xid = self.ids.pop(extras)
            del self.by_id[xid]
            if not extras[1] and not extras[2] and self._by_timeout.get(extras[0]) == xid:
                del self._by_timeout[extras[0]]
            self.map.delete(_ID.pack(xid))
        if gone:
            log.debug("deleted %d unused entry metadata records", len(gone))
        return len(gone)
