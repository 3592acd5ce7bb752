"""The STF conformance suite: every tests/softswitch/stf/*.stf runs against its program.

``NAME.stf`` runs ``NAME.p4``; ``NAME-variant.stf`` runs ``NAME.p4`` when there is no
``NAME-variant.p4``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.cli import main
from dysco.softswitch import load_program
from dysco.softswitch.stf import run_stf

STF_DIR = Path(__file__).parent / "stf"
CASES = sorted(STF_DIR.glob("*.stf"))


def program_for(stf: Path) -> Path:
    own = stf.with_suffix(".p4")
    if own.exists():
        return own
    return STF_DIR / (stf.stem.split("-", 1)[0] + ".p4")


def test_the_suite_is_not_empty() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("stf", CASES, ids=[c.stem for c in CASES])
def test_stf(stf: Path) -> None:
    result = run_stf(load_program(program_for(stf)), stf)
    assert result.passed, result.report


def test_dysco_stf_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stf", str(STF_DIR / "router.p4"), str(STF_DIR / "router.stf")]) == 0
    assert "passed" in capsys.readouterr().out


def test_dysco_stf_fails_a_wrong_expectation_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.stf"
    text = (STF_DIR / "router.stf").read_text().replace("expect 2 0a0b0c0d0e0f", "expect 2 0a0b0c0d0e0e")
    wrong.write_text(text + "expect 7\n")
    assert main(["stf", str(STF_DIR / "router.p4"), str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "port 2, packet 1 (expect on line 9): bytes differ from byte 5" in out
    assert "expected 0A0B0C0D0E0E" in out and "received 0A0B0C0D0E0F" in out
    assert "port 7: expected packet 1 (line 12) did not arrive" in out


def test_dysco_stf_reports_bad_statements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.stf"
    bad.write_text("add no_such_table x:1 a()\n")
    assert main(["stf", str(STF_DIR / "router.p4"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.stf:1:1: unknown table 'no_such_table'" in err


def test_validity_key_spellings() -> None:
    from dysco.softswitch.stf import valid_key

    assert valid_key("valid") == "isValid()"
    assert valid_key("hdr.ipv4.valid") == "hdr.ipv4.isValid()"
    assert valid_key("ipv4$valid$") == "ipv4.isValid()"
    assert valid_key("ipv4.$valid$") == "ipv4.isValid()"
    assert valid_key("hdr.ipv4.dst") == "hdr.ipv4.dst"
