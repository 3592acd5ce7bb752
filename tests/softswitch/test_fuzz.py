"""Totality: random bytes on random ports never crash the executor, for every test program."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dysco.softswitch import Switch, load_program
from dysco.softswitch.api import ActionCall, CloneSession, FieldMatch, Replica, TableEntry
from dysco.softswitch.targets.python.runtime import P4AssertionError

HERE = Path(__file__).parent
PROGRAMS = sorted(p for p in [*HERE.glob("stf/*.p4"), *HERE.glob("programs/*.p4")] if p.name != "common.p4")


@cache
def switches() -> tuple[Switch, ...]:
    out = []
    for path in PROGRAMS:
        prog = load_program(path)
        sw = Switch(prog, cpu_port=255)
        sw.set_clone_session(CloneSession(5, (Replica(4, 0),)))
        sw.set_multicast_group(1, (Replica(2, 10), Replica(3, 10)))
        if path.stem == "router":
            t = prog.p4info.tables[0].preamble.id
            a = next(x.preamble.id for x in prog.p4info.actions if x.preamble.name.endswith("ipv4_forward"))
            sw.write_entry(
                "insert", TableEntry(t, (FieldMatch(1, "lpm", 0, prefix_len=0),), ActionCall(a, (1, 2)))
            )
        out.append(sw)
    return tuple(out)


@given(
    which=st.integers(min_value=0, max_value=len(PROGRAMS) - 1),
    port=st.integers(min_value=0, max_value=511),
    data=st.one_of(
        st.binary(max_size=200),
        # mostly-valid Ethernet + a few bytes, to reach deeper parser states
        st.tuples(
            st.sampled_from([b"\x08\x00", b"\x1a\xbc", b"\x20\x05", b"\x30\x01", b"\x00\x01", b"\x00\x02"]),
            st.binary(max_size=80),
        ).map(lambda t: bytes(12) + t[0] + t[1]),
    ),
)
def test_random_packets_never_crash(which: int, port: int, data: bytes) -> None:
    sw = switches()[which]
    try:
        out = sw.process(port, data)
    except P4AssertionError:
        assert PROGRAMS[which].stem == "v1model"  # the only program with an assert that can fail
        return
    for p, frame in out:
        assert 0 <= p < 512
        assert isinstance(frame, bytes)
