"""A process the testbed waits on: a failed wait quotes the end of its log, so a report that
has only the error (a CI run's) still shows what the process said last."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.testbed import Process

SCRIPT = "import sys\nfor i in range(40): print('line', i)\nprint('gave up: timed out')\nsys.stdout.flush()\n"


def test_a_process_that_ends_without_its_line_is_quoted(tmp_path: Path) -> None:
    with (
        pytest.raises(UserError) as caught,
        Process([sys.executable, "-c", SCRIPT], tmp_path / "p.log", "exchanged"),
    ):
        pass
    message = str(caught.value)
    assert "ended without a line with 'exchanged'" in message and str(tmp_path / "p.log") in message
    quoted = message.split(str(tmp_path / "p.log"), 1)[1].split("\n")[1:]
    assert quoted == [f"  | line {i}" for i in range(26, 40)] + ["  | gave up: timed out"]


def test_a_wait_that_times_out_is_quoted(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('ready', flush=True); print('still here', flush=True); input()"]
    with Process(argv, tmp_path / "p.log", "ready") as p:
        assert "still here" in p.wait_for("still", 5)
        with pytest.raises(UserError) as caught:
            p.wait_for("never", 0.2)
        p.send_line("")
    assert "no line with 'never' in 0.2s" in str(caught.value)
    assert str(caught.value).endswith("  | ready\n  | still here")
