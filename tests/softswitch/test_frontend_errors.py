"""Must-fail programs: each tests/softswitch/fail/*.p4 starts with ``// error: FILE:LINE:COL: message``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.errors import SourceError, UserError
from dysco.softswitch import load_program

FAIL_DIR = Path(__file__).parent / "fail"
CASES = sorted(FAIL_DIR.glob("*.p4"))


@pytest.mark.parametrize("path", CASES, ids=[c.stem for c in CASES])
def test_must_fail(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("// error: ")
    with pytest.raises(UserError) as info:
        load_program(path)
    exc = info.value
    assert isinstance(exc, SourceError), f"expected a located error, got {exc!r}"
    lines = str(exc).splitlines()
    assert f"{Path(exc.pos.file).name}:{exc.pos.line}:{exc.pos.column}: {exc.message}" == expected, lines[0]
    assert lines[0].endswith(expected.split(": ", 1)[1])
    assert len(lines) == 3 and lines[2].strip() == "^", str(exc)  # the source line and a caret


def test_caret_points_at_the_column() -> None:
    with pytest.raises(SourceError) as info:
        load_program(FAIL_DIR / "no_field.p4")
    _, src, caret = str(info.value).splitlines()
    assert src[caret.index("^") :].startswith("h.data.zz")


def test_missing_file_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no such P4 program"):
        load_program(FAIL_DIR / "does_not_exist.p4")
