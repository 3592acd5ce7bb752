"""One table's maps as the control plane sees them: values encoded in the layout the C
generator chose (:class:`~.cgen.TableLayout`), the default entry, and what every kind of table
offers the device (:class:`TableMaps`).  The kinds are :class:`~._hashtable.HashTable` (exact
and lpm tables: a HASH or LPM_TRIE) and :class:`~._scantable.ScanTable` (ternary, range,
optional: an ARRAY of slots the program scans)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...api import ActionCall, EntryError, TableEntry, WriteOp
from . import cgen
from ._extras import NONE, Extras, ExtrasStore
from .libbpf import BpfMap, Loaded

log = logging.getLogger("dysco.softswitch.ebpf")

_U32, _U64 = struct.Struct("=I"), struct.Struct("=Q")
ActionSig = tuple[int, int]
"""An action's P4Info id and how many parameters it takes."""


class TableMaps:
    """The maps of one table and what every kind does with them."""

    def __init__(
        self,
        obj: Loaded,
        lay: cgen.TableLayout,
        info: Any,
        actions: Mapping[str, ActionSig],
        store: ExtrasStore,
    ) -> None:
        self.lay = lay
        self.store = store
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
        self.map = BpfMap(obj, lay.map_name, self.key_size, self.value_size)
        self.default = BpfMap(obj, lay.default_map, 4, self.value_size)
        self.default_call = ActionCall(0)
        # action id -> (index in the value, parameters); index -> (action id, parameters)
        self._by_id = {actions[a][0]: (i, actions[a][1]) for i, a in enumerate(lay.actions)}
        self._by_index = [actions[a] for a in lay.actions]
        self._args = struct.Struct(f"={self.nargs}Q")
        # where a value holds the action's index and its arguments
        self._index_at, self._args_at = (8, 16 + 16 * nk) if lay.kind == "scan" else (0, 8)
        self._hash_value = struct.Struct(f"=II{self.nargs}Q" + ("Q" if lay.timeout else ""))

    def __len__(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------ what a kind implements
    def write(self, updates: Sequence[tuple[WriteOp, TableEntry]], now: int) -> list[EntryError | None]:
        """Apply the updates in order, as :meth:`Device.write_entry` would one by one; the error
        of each (None: applied).  ``now`` is the write's time (monotonic ns)."""
        raise NotImplementedError

    def read(self, now: int) -> list[TableEntry]:
        """Every entry, in the order written; with idle timeouts, the time since its last hit."""
        raise NotImplementedError

    def expired(self, now: int, budget: int) -> list[TableEntry]:
        """Entries idle for their timeout and not reported since their last hit; at most
        ``budget`` entries are looked at (the rest wait for the next sweep)."""
        raise NotImplementedError

    def adopt(self) -> None:
        """Rebuild the control plane's view from the maps (a pinned table re-adopted after a
        restart): entries with their Extras, idle timers from each entry's last hit, the
        default entry."""
        raise NotImplementedError

    def in_use(self) -> Iterable[Extras]:
        """The Extras the table's entries carry now."""
        raise NotImplementedError

    def extras_of(self, xid: int) -> Extras:
        found = self.store.get(xid)
        if found is None:
            log.warning("%s: an entry names metadata record %d, which is gone", self.lay.name, xid)
            return NONE
        return found

    def adopt_default(self) -> None:
        raw = self.default.lookup(_U32.pack(0))
        if raw is not None and any(raw):
            self.default_call = self.call_of(raw)

    # ------------------------------------------------------------ values
    def call(self, action: ActionCall) -> tuple[int, tuple[int, ...]]:
        """The action's index in the value and its arguments, padded to the value's size."""
        found = self._by_id.get(action.action_id)
        if found is None:
            raise EntryError(
                "INVALID_ARGUMENT", f"action {action.action_id} is not an action of {self.lay.name}"
            )
        index, nparams = found
        params = action.params
        if len(params) != nparams:
            raise EntryError(
                "INVALID_ARGUMENT",
                f"action {action.action_id} of {self.lay.name} takes {nparams} parameters, not {len(params)}",
            )
        return index, params + (0,) * (self.nargs - nparams)

    def value(self, action: ActionCall, now: int, xid: int = 0) -> bytes:
        """A hash/lpm value, or a default entry's: the action, the id of the entry's Extras
        (:mod:`._extras`), its arguments, the last hit."""
        index, args = self.call(action)
        if self.lay.timeout:
            return self._hash_value.pack(index, xid, *args, now)
        return self._hash_value.pack(index, xid, *args)

    def call_of(self, value: bytes) -> ActionCall:
        """The action written in a value (an entry's, or the default's)."""
        (index,) = _U32.unpack_from(value, self._index_at)
        action_id, nparams = self._by_index[index]
        return ActionCall(action_id, self._args.unpack_from(value, self._args_at)[:nparams])

    def last_hit(self, value: bytes) -> int:
        """When the program last hit the entry (monotonic ns), from its value."""
        return int(_U64.unpack_from(value, self.value_size - 8)[0])

    def write_default(self, action: ActionCall, now: int) -> None:
        self.default.update(struct.pack("=I", 0), self.value(action, now))
        self.default_call = action

    @staticmethod
    def check_timeout(lay: cgen.TableLayout, entry: TableEntry) -> None:
        if entry.idle_timeout_ns and not lay.timeout:
            raise EntryError("INVALID_ARGUMENT", f"table {lay.name} does not support idle timeouts")
