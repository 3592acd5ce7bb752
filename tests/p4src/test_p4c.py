"""The real p4c (bmv2 back end) on every P4 program the project ships or tests.

Each program must compile with no error and no warning, and ``dysco p4c``'s P4Info must equal
p4c's: the same entities, matched by name, each message equal field by field (ids, widths, sizes,
annotations, default actions), tables and meters in the same order.

p4c exists only where the folder ``shared/`` sits beside the repository (our machines and CI);
elsewhere, or where its Debian runtime libraries are missing, these tests skip with one line
(tests/real_p4c.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.softswitch import load_program
from tests.real_p4c import P4C, p4c_unusable, p4info_differences, run_p4c

ROOT = Path(__file__).resolve().parents[2]

# Programs with a main: what p4src/ ships, the test programs of the softswitch and its server
# (tests/softswitch/stf/common.p4 is an include file), and what the PTF suite loads (p4src/dysco.p4).
PROGRAMS = sorted(
    [
        *ROOT.glob("p4src/*.p4"),
        *ROOT.glob("tests/softswitch/programs/*.p4"),
        *ROOT.glob("tests/softswitch/stf/*.p4"),
        *ROOT.glob("tests/softswitch_server/programs/*.p4"),
    ]
)
PROGRAMS = [p for p in PROGRAMS if p.name != "common.p4"]
INCLUDES = [ROOT / "p4src"]


@pytest.fixture(scope="module")
def p4c() -> Path:
    reason = p4c_unusable()
    if reason:
        pytest.skip(reason)
    return P4C


@pytest.mark.parametrize("program", PROGRAMS, ids=[str(p.relative_to(ROOT)) for p in PROGRAMS])
def test_p4c_accepts_without_warnings_and_p4info_matches(p4c: Path, program: Path, tmp_path: Path) -> None:
    rc, messages, theirs = run_p4c(p4c, program, tmp_path, INCLUDES)
    assert rc == 0 and not messages, f"p4c on {program.relative_to(ROOT)} (exit {rc}):\n{messages}"
    ours = load_program(program, include_dirs=[str(d) for d in INCLUDES]).p4info
    diffs = p4info_differences(ours, theirs)
    assert not diffs, "P4Info differs from p4c's:\n" + "\n".join(diffs)


def test_comparison_sees_a_difference() -> None:
    """The comparison itself: a changed width, a missing action and a reordered table all show."""
    a = p4info_pb2.P4Info()
    for name in ("I.t1", "I.t2"):
        t = a.tables.add()
        t.preamble.name = name
        t.size = 1024
    a.actions.add().preamble.name = "I.x"
    b = p4info_pb2.P4Info()
    b.CopyFrom(a)
    assert p4info_differences(a, b) == []
    b.tables[0].size = 512
    del b.actions[0]
    diffs = p4info_differences(a, b)
    assert any("I.t1 differs" in d for d in diffs)
    assert "actions: I.x only in ours" in diffs
    c = p4info_pb2.P4Info()
    c.tables.add().CopyFrom(a.tables[1])
    c.tables.add().CopyFrom(a.tables[0])
    c.actions.add().CopyFrom(a.actions[0])
    assert [d for d in p4info_differences(a, c) if d.startswith("tables: order")]


def test_p4info_point_tests_agree_with_p4c(p4c: Path, tmp_path: Path) -> None:
    """The program of tests/softswitch/test_p4info_like_p4c.py (which p4c warns about: unused
    parameters on purpose) gets the same P4Info from both compilers."""
    from tests.softswitch.test_p4info_like_p4c import PROGRAM

    path = tmp_path / "prog.p4"
    path.write_text(PROGRAM)
    rc, messages, theirs = run_p4c(p4c, path, tmp_path)
    assert rc == 0, messages
    diffs = p4info_differences(load_program(path).p4info, theirs)
    assert not diffs, "P4Info differs from p4c's:\n" + "\n".join(diffs)


# Must-fail programs whose error the front end words as p4c does: p4c must refuse them the same way.
LIKE_P4C = ["duplicate", "extern_method", "extern_type_args", "last_index"]


@pytest.mark.parametrize("name", LIKE_P4C)
def test_p4c_refuses_our_must_fail_programs_with_our_words(p4c: Path, name: str, tmp_path: Path) -> None:
    path = ROOT / "tests" / "softswitch" / "fail" / f"{name}.p4"
    ours = path.read_text().splitlines()[0].removeprefix("// error: ")
    line, message = ours.split(":")[1], ours.split(": ", 1)[1].split(" (declared first at")[0]
    rc, messages, _ = run_p4c(p4c, path, tmp_path)
    assert rc != 0, messages
    assert f"{path.name}({line}): [--Werror=" in messages and f"error: {message}" in messages, messages
