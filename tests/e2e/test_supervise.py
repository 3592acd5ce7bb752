"""The testbed supervises what it started: an agent that dies is reaped and reported at once,
and can be started again by name, after which sessions through its host work again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.testbed import Testbed

from .conftest import WAIT_S, blob

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["chain"], indirect=True)]


def test_a_killed_agent_is_reaped_reported_and_restarted_by_name(
    testbed: Testbed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = testbed.agent_of("mbox")
    assert agent.proc is not None
    pid = agent.proc.pid
    os.kill(pid, signal.SIGKILL)

    gone = testbed.wait_exit(WAIT_S)
    assert gone is agent and gone.name == "agent mbox"
    assert gone.returncode == -signal.SIGKILL
    # reaped: no zombie is left behind (a zombie keeps its /proc entry until waited for)
    assert not Path(f"/proc/{pid}").exists()
    assert f"testbed: agent mbox exited with code -9; see {agent.log_path}" in capsys.readouterr().err

    with pytest.raises(UserError, match="no agent on a host of that name"):
        testbed.restart("agent nosuch")
    again = testbed.restart("agent mbox")
    assert testbed.agent_of("mbox") is again and again.returncode is None
    assert "dysco agent: ready" in again.ready_line
    # a new session through the middlebox's host, byte for byte, both ways
    blob(testbed, tmp_path, 80, 200_000, 300_000)
    assert "session_closed: " in again.wait_for("session_closed: ", WAIT_S)  # it went through mbox's agent
    assert testbed.exits.empty()
