"""Malformed programs give a located UserError, never a crash: mutations of valid programs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dysco.errors import SourceError, UserError
from dysco.softswitch import P4Program
from dysco.softswitch.frontend.preprocess import SourceMap, preprocess

HERE = Path(__file__).parent
SOURCES = [HERE / "programs" / "router.p4", HERE / "stf" / "control.p4", HERE / "stf" / "parser.p4"]
TOKENS = (
    '{ } ( ) ; < > bit<8> x hdr . = 1 8w3 apply table action state transition select @name("n")'
    " &&& .. ++ int true ,"
)
TOKENS_LIST = TOKENS.split()


@cache
def source(i: int) -> SourceMap:
    return preprocess(SOURCES[i])


@settings(max_examples=150)
@given(
    which=st.integers(0, len(SOURCES) - 1),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 12), st.sampled_from([*TOKENS_LIST, ""])),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_programs_fail_cleanly(which: int, edits: list[tuple[float, int, str]]) -> None:
    sm = source(which)
    text = sm.text
    for where, delete, insert in edits:
        # mutate only the program itself (after the included architecture files)
        start = text.rfind("\n", 0, int(len(text) * 0.6))
        pos = start + int((len(text) - start) * where)
        text = text[:pos] + insert + text[pos + delete :]
    lines = sm.lines + tuple(sm.lines[-1:]) * max(0, text.count("\n") + 1 - len(sm.lines))
    try:
        P4Program("mutant.p4", SourceMap(text, lines))
    except SourceError as exc:
        assert exc.pos.line >= 1
    except UserError:
        pass
