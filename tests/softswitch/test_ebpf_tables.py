"""The ebpf target's exact and lpm tables: a run of updates reaches the kernel in one batch, yet
every update is answered as if written on its own (the python back end is the oracle); entries
read back as written; the idle sweep looks only at entries that may be idle."""

from __future__ import annotations

import dataclasses
import errno
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dysco.p4names import SESSION_OUT, SUBSESSION_IN
from dysco.softswitch import Switch, load_program
from dysco.softswitch.api import ActionCall, EntryError, FieldMatch, TableEntry, WriteOp
from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig, unavailable
from dysco.softswitch.targets.ebpf._hashtable import HashTable

ROOT = Path(__file__).resolve().parents[2]
DYSCO = ROOT / "p4src" / "dysco.p4"
ROUTER = Path(__file__).parent / "programs" / "router.p4"
SIZE = 4
WHY = unavailable()
pytestmark = [pytest.mark.root, pytest.mark.skipif(WHY is not None, reason=WHY or "")]

Updates = list[tuple[WriteOp, TableEntry]]


@pytest.fixture(scope="module")
def small_dysco() -> Any:
    """dysco.p4 with session tables of SIZE entries (a full table is quick to reach)."""
    return load_program(DYSCO, defines=[f"DYSCO_SESSION_TABLE_SIZE={SIZE}"])


@pytest.fixture
def rig() -> Iterator[VethRig]:
    with VethRig([1, 2], tag=f"{time.monotonic_ns() % 100000}t") as r:
        yield r


def ebpf(rig: VethRig, program: Any) -> EbpfSwitch:
    return EbpfSwitch(program, ports={p: rig.switch_if(p) for p in rig.ports}, netns=rig.name, rig=rig)


def ids(program: Any) -> dict[str, int]:
    info = program.p4info
    return {o.preamble.name: o.preamble.id for group in (info.tables, info.actions) for o in group}


def session(program: Any, n: int, table: str = SESSION_OUT.table, **kw: Any) -> TableEntry:
    """The n-th session entry of ``table``: rewrite with session id n."""
    names = ids(program)
    values = (0x0A000000 + n, 0x0A630001, 6, 1000 + n, 80)
    match = tuple(FieldMatch(i, "exact", v) for i, v in enumerate(values, start=1))
    args = (0x0A000001, 0x0B000001, 2000 + n, 8080, n, 2 * n, 0, 0, 0, 0, n)
    return TableEntry(names[table], match, ActionCall(names[SESSION_OUT.rewrite_action], args), **kw)


def punt(entry: TableEntry, program: Any, sid: int) -> TableEntry:
    return dataclasses.replace(entry, action=ActionCall(ids(program)[SESSION_OUT.punt_action], (sid,)))


def codes(results: list[EntryError | None]) -> list[str | None]:
    return [None if r is None else r.code for r in results]


def as_written(entries: list[TableEntry]) -> list[TableEntry]:
    return [dataclasses.replace(e, time_since_last_hit_ns=None) for e in entries]


def test_a_write_is_answered_update_by_update_as_the_python_backend_does(
    rig: VethRig, small_dysco: Any
) -> None:
    p = small_dysco
    a, b, c, d, e = (session(p, n, idle_timeout_ns=60 * 10**9) for n in range(1, 6))
    bad_action = dataclasses.replace(c, action=ActionCall(ids(p)[SUBSESSION_IN.table], ()))
    updates: Updates = [
        ("insert", a),
        ("insert", a),  # ALREADY_EXISTS
        ("modify", b),  # NOT_FOUND
        ("insert", b),
        ("modify", punt(b, p, 77)),
        ("insert", bad_action),  # INVALID_ARGUMENT
        ("delete", a),
        ("delete", a),  # NOT_FOUND
        ("insert", a),
        ("insert", c),
        ("insert", d),  # the fourth entry: the table is full now
        ("insert", e),  # RESOURCE_EXHAUSTED
        ("delete", c),
        ("insert", e),
        ("modify", dataclasses.replace(e, controller_metadata=9, metadata=b"note")),
    ]
    python = Switch(p)
    sw = ebpf(rig, p)
    try:
        want = codes(python.write_entries(updates))
        assert want == [None, "ALREADY_EXISTS", "NOT_FOUND", None, None, "INVALID_ARGUMENT", None,
                        "NOT_FOUND", None, None, None, "RESOURCE_EXHAUSTED", None, None, None]  # fmt: skip
        assert codes(sw.write_entries(updates)) == want
        got = as_written(sw.read_entries())
        assert sorted(got, key=repr) == sorted(as_written(python.read_entries()), key=repr)
        assert len(got) == SIZE
    finally:
        sw.close()


def test_a_run_reaches_the_kernel_in_one_batch(rig: VethRig, monkeypatch: pytest.MonkeyPatch) -> None:
    p = load_program(DYSCO)
    sw = ebpf(rig, p)
    try:
        t = sw._tables[ids(p)[SESSION_OUT.table]]
        assert isinstance(t, HashTable)
        calls: list[int] = []
        batch = t.map.update_batch

        def counted(keys: bytes, values: bytes) -> tuple[int, int]:
            calls.append(len(keys) // t.key_size)
            return batch(keys, values)

        monkeypatch.setattr(t.map, "update_batch", counted)
        entries = [session(p, n) for n in range(1000)]
        assert codes(sw.write_entries([("insert", e) for e in entries])) == [None] * 1000
        assert calls == [1000]
        assert as_written(sw.read_entries(ids(p)[SESSION_OUT.table])) == entries
        assert len(dict(t.map.items())) == 1000
    finally:
        sw.close()


def test_what_the_kernel_refuses_mid_batch_is_answered_one_by_one(
    rig: VethRig, small_dysco: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel stops a batch at its third element (out of memory, say): the first two stand;
    the third and every later one are written on their own, so the third is refused and a later
    modify of it finds no entry."""
    p = small_dysco
    sw = ebpf(rig, p)
    try:
        t = sw._tables[ids(p)[SESSION_OUT.table]]
        assert isinstance(t, HashTable)
        a, b, c, d = (session(p, n) for n in range(4))
        doomed = t.key(c.match)
        batch, single = t.map.update_batch, t.map.update

        def stops_at_c(keys: bytes, values: bytes) -> tuple[int, int]:
            n = keys.index(doomed) // t.key_size if doomed in keys else len(keys) // t.key_size
            done, err = batch(keys[: n * t.key_size], values[: n * t.value_size])
            return done, err or (errno.ENOMEM if doomed in keys else 0)

        def refuses_c(key: bytes, value: bytes, flags: int = 0) -> None:
            if key == doomed:
                raise OSError(errno.ENOMEM, "no memory")
            single(key, value, flags)

        monkeypatch.setattr(t.map, "update_batch", stops_at_c)
        monkeypatch.setattr(t.map, "update", refuses_c)
        updates: Updates = [
            ("insert", a),
            ("insert", b),
            ("insert", c),
            ("modify", punt(c, p, 5)),
            ("insert", d),
        ]
        assert codes(sw.write_entries(updates)) == [None, None, "RESOURCE_EXHAUSTED", "NOT_FOUND", None]
        assert as_written(sw.read_entries(ids(p)[SESSION_OUT.table])) == [a, b, d]
        assert sorted(dict(t.map.items())) == sorted(t.key(e.match) for e in (a, b, d))
    finally:
        sw.close()


def test_lpm_entries_read_back_as_written(rig: VethRig) -> None:
    p = load_program(ROUTER)
    sw = ebpf(rig, p)
    try:
        info: Any = p.p4info
        table = info.tables[0].preamble.id
        fwd = next(a.preamble.id for a in info.actions if a.preamble.name == "MyIngress.ipv4_forward")
        entries = [
            TableEntry(
                table,
                (FieldMatch(1, "lpm", value, prefix_len=plen),),
                ActionCall(fwd, (0xA0 + plen, 2)),
                controller_metadata=plen,
            )
            for value, plen in ((0x0A000000, 8), (0x0A010000, 16), (0x0A010200, 24), (0x0A010203, 32))
        ]
        assert codes(sw.write_entries([("insert", e) for e in entries])) == [None] * 4
        assert sw.read_entries(table) == entries
        assert codes(sw.write_entries([("delete", entries[1]), ("delete", entries[1])])) == [
            None,
            "NOT_FOUND",
        ]
        assert sw.read_entries(table) == [entries[0], *entries[2:]]
    finally:
        sw.close()


def test_the_sweep_looks_only_at_entries_that_may_be_idle(
    rig: VethRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = load_program(DYSCO)
    sw = ebpf(rig, p)
    try:
        t = sw._tables[ids(p)[SESSION_OUT.table]]
        assert isinstance(t, HashTable)
        second = 10**9
        quick = [session(p, n, idle_timeout_ns=second) for n in range(3)]
        slow = [session(p, n, idle_timeout_ns=300 * second) for n in range(3, 2003)]
        written = time.monotonic_ns()
        assert codes(sw.write_entries([("insert", e) for e in quick + slow])) == [None] * 2003
        looked: list[bytes] = []
        lookup = t.map.lookup

        def counted(key: bytes) -> bytes | None:
            looked.append(key)
            return lookup(key)

        def no_full_read(batch: int = 4096) -> Any:
            raise AssertionError("the sweep read the whole map")

        monkeypatch.setattr(t.map, "lookup", counted)
        monkeypatch.setattr(t.map, "items", no_full_read)
        assert t.expired(written, budget=100) == []
        assert looked == []
        later = time.monotonic_ns() + 2 * second  # no packet hits them meanwhile: idle by then
        expired = t.expired(later, budget=100)
        assert sorted(looked) == sorted(t.key(e.match) for e in quick)
        assert as_written(expired) == quick
        assert all(
            e.time_since_last_hit_ns is not None and e.time_since_last_hit_ns >= second for e in expired
        )
        assert t.expired(later, budget=100) == []  # once per idle period
        assert t.expired(later + 2 * second, budget=100) == []  # still not hit since: not again
    finally:
        sw.close()
