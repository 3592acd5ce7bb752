"""The README's snippets are what the code does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks() -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", README, re.S)


def test_exactly_two_setup_commands() -> None:
    commands = [b for b in _blocks() if b.startswith("make ")]
    assert len(commands) == 1
    assert [ln.split("#")[0].strip() for ln in commands[0].strip().splitlines()] == ["make demo", "make test"]


def test_compile_output_shown_is_what_compile_prints() -> None:
    shown = next(b for b in _blocks() if b.startswith("classifier ("))
    out = subprocess.run(
        [sys.executable, "-m", "dysco", "compile", str(ROOT / "examples/policies.dysco"), "--format", "text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == shown


def _shape(summary: str) -> list[str]:
    """A demo summary without its numbers: the row labels, the table's header, how many rows."""
    labels = [ln[:19].strip() or "..." for ln in summary.splitlines() if ln.startswith("  ")]
    rows = [ln for ln in summary.splitlines() if re.match(r"\d+ ", ln)]
    header = next(ln for ln in summary.splitlines() if ln.startswith("session "))
    return [*labels, header, f"{len(rows)} rows"]


def test_demo_summary_shown_is_what_the_demo_prints(tmp_path: Path) -> None:
    """The README shows a run as root; the same demo in the simulation prints the same summary
    (rows, table) for the same four sessions, and the sample's own numbers agree."""
    shown = next(b for b in _blocks() if b.startswith("summary (testbed"))
    argv = [sys.executable, "-m", "dysco", "demo", "--sim", "--out", str(tmp_path), "--size", "0.5"]
    run = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    printed = run[run.index("summary (simulation") :].split("\n\n(done")[0] + "\n"
    assert _shape(printed) == _shape(shown)
    assert "plots            demo-out/goodput.png, demo-out/reconfig_cdf.png" in shown
    assert "4 of 4 complete, 4 of 4 verified" in shown and "spliced          4 of 4 sessions" in shown
    assert "proxy after      relayed 0 B, 0.00 s CPU" in shown
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: setup\n\t\$\(BIN\)/dysco demo --out demo-out$", makefile, re.M)


def test_policy_snippet_is_the_example_file() -> None:
    snippet = next(b for b in _blocks() if b.startswith("middlebox firewall"))
    example = (ROOT / "examples/policies.dysco").read_text()
    code = "\n".join(ln for ln in example.splitlines() if ln and not ln.startswith("#"))
    assert [ln for ln in snippet.splitlines() if ln] == code.splitlines()


def test_makefile_demo_and_ci_run_what_the_readme_says() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()
