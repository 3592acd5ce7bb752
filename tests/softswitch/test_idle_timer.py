"""The ebpf target's idle timer: which entries a sweep looks at, and when."""

from __future__ import annotations

from dysco.softswitch.targets.ebpf._idle import COMPACT_AT, IdleTimer


def test_only_entries_due_come_out_earliest_first_within_the_budget() -> None:
    t: IdleTimer[bytes] = IdleTimer()
    t.start(b"late", 300)
    t.start(b"b", 20)
    t.start(b"a", 10)
    assert t.pop_due(5, budget=10) == []
    assert t.pop_due(20, budget=1) == [b"a"]
    assert t.pop_due(20, budget=10) == [b"b"]
    assert len(t) == 1  # what came out is no longer scheduled until the caller says so
    t.schedule(b"b", 40)
    assert t.pop_due(299, budget=10) == [b"b"]


def test_a_rewrite_moves_the_due_time_and_a_delete_drops_it() -> None:
    t: IdleTimer[int] = IdleTimer()
    t.start(1, 10)
    t.start(1, 50)  # written again: the first due time is stale
    t.start(2, 10)
    t.stop(2)
    assert t.pop_due(10, budget=10) == []
    assert t.pop_due(50, budget=10) == [1]


def test_a_write_forgets_the_last_report() -> None:
    t: IdleTimer[int] = IdleTimer()
    t.start(7, 10)
    t.reported[7] = 3
    t.start(7, 20)
    assert 7 not in t.reported
    t.reported[7] = 4
    t.stop(7)
    assert 7 not in t.reported


def test_stale_items_do_not_pile_up() -> None:
    t: IdleTimer[int] = IdleTimer()
    for i in range(10 * COMPACT_AT):
        t.start(i % 4, i + 1)  # four entries, rewritten over and over
    assert len(t) == 4
    assert len(t._heap) <= 2 * 4 + COMPACT_AT + 1
    assert sorted(t.pop_due(10**9, budget=100)) == [0, 1, 2, 3]
