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


def test_demo_output_shown_is_what_compile_prints() -> None:
    shown = next(b for b in _blocks() if b.startswith("classifier ("))
    out = subprocess.run(
        [sys.executable, "-m", "dysco", "compile", str(ROOT / "examples/policies.dysco"), "--format", "text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == shown


def test_policy_snippet_is_the_example_file() -> None:
    snippet = next(b for b in _blocks() if b.startswith("middlebox firewall"))
    example = (ROOT / "examples/policies.dysco").read_text()
    code = "\n".join(ln for ln in example.splitlines() if ln and not ln.startswith("#"))
    assert [ln for ln in snippet.splitlines() if ln] == code.splitlines()


def test_makefile_demo_and_ci_run_what_the_readme_says() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()
