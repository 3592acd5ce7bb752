"""dysco.p4's session tables in the kernel: 2^20 entries each, memory allocated per entry written
(BPF_F_NO_PREALLOC), not for the whole table at load."""

from __future__ import annotations

from typing import Any

import pytest

from dysco.p4names import SESSION_OUT, SESSION_TABLE_SIZE, SUBSESSION_IN
from dysco.softswitch import P4Program
from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry

from .conftest import EBPF_WHY
from .dataplane import ids

pytestmark = [pytest.mark.root, pytest.mark.skipif(EBPF_WHY is not None, reason=EBPF_WHY or "")]

BPF_F_NO_PREALLOC = 1
EMPTY_MAX = 32 << 20
"""An empty session table may cost its hash buckets (16 bytes a slot: 16 MB), not 184 bytes a
slot as a preallocated one does (193 MB)."""
ENTRIES = 2_000


def test_session_tables_allocate_memory_per_entry(ebpf_dysco: Any, dysco_program: P4Program) -> None:
    sw = ebpf_dysco
    sw.load(dysco_program)
    names = ids(dysco_program)
    for table in (SESSION_OUT.table, SUBSESSION_IN.table):
        maps = sw._tables[names[table].preamble.id].map
        empty = maps.fdinfo()
        assert empty["max_entries"] == SESSION_TABLE_SIZE, table
        assert empty["map_flags"] & BPF_F_NO_PREALLOC, f"{table}: {empty}"
        assert empty["memlock"] < EMPTY_MAX, f"{table}: an empty table locks {empty['memlock']} bytes"
        rewrite = names[SESSION_OUT.rewrite_action].preamble.id
        for i in range(ENTRIES):
            match = tuple(
                FieldMatch(fid, "exact", v)
                for fid, v in enumerate((0x0A000000 + i, 0x0B000001, 6, 10000 + i % 50000, 80), start=1)
            )
            call = ActionCall(rewrite, (0x0A000001, 0x0C000001, 20000, 8080, 0, 7, 0, 0, 0, 0, i))
            sw.write_entry("insert", TableEntry(names[table].preamble.id, match, call))
        per_entry = (maps.fdinfo()["memlock"] - empty["memlock"]) / ENTRIES
        # an element: the kernel's header, the 13-byte key and the 104-byte value, rounded up
        assert 104 < per_entry < 512, f"{table}: {per_entry:.0f} bytes per entry"
