"""A NIC restarts without losing a session (issue 20): the middlebox's ``dysco switch`` (ebpf) is
SIGKILLed in the middle of a TCP session through it; the session keeps flowing while no switch
runs, the switch is started again with the same command, re-adopts its pinned pipeline, and the
agent, reconnecting, finds its pipeline (the cookie) and keeps its sessions: the transfer ends
with both ends' digests equal."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from dysco.testbed import Process, Testbed

from .conftest import WAIT_S, peer

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["chain"], indirect=True)]

PORT = 80  # chain.toml's policy sends tcp port 80 through the middlebox
MB_WHILE_DOWN = 2
"""Megabytes the client must receive while the middlebox's NIC has no switch process."""


def progress(c: Process) -> int:
    """The next ``progress K`` line of a stream client: K megabytes received so far."""
    return int(c.wait_for("progress ", WAIT_S).split()[1])


def test_a_nic_killed_mid_session_comes_back_and_the_session_goes_on(
    testbed: Testbed, tmp_path: Path
) -> None:
    if testbed.plan.backend != "ebpf":
        pytest.skip(f"the {testbed.plan.backend} backend keeps no data path through a restart")
    names = [h.name for h in testbed.plan.with_nic()]
    nic = testbed.switches[names.index("mbox")]
    agent = testbed.agent_of("mbox")
    server_argv = peer(testbed, "server", "stream-server", PORT)
    client_argv = peer(testbed, "client", "stream-client", "10.0.3.2", PORT)
    with (
        Process(server_argv, tmp_path / "server.log", "listening") as s,
        Process(client_argv, tmp_path / "client.log", "connected") as c,
    ):
        progress(c)
        assert nic.proc is not None
        nic.proc.send_signal(signal.SIGKILL)
        assert testbed.wait_exit(WAIT_S) is nic and nic.returncode == -signal.SIGKILL
        # no switch process on the middlebox's NIC now: the kernel carries the session on its own
        at_kill = progress(c)
        while progress(c) < at_kill + MB_WHILE_DOWN:
            pass
        assert nic.returncode == -signal.SIGKILL and testbed.exits.empty()

        again = testbed.restart("switch mbox")
        assert "ebpf backend" in again.ready_line
        agent.wait_for("the target already runs the pipeline", WAIT_S)  # reconnected, pushed nothing
        at_restart = progress(c)
        while progress(c) < at_restart + 1:  # and the session goes on through the new switch
            pass
        c.send_line("stop")
        client = c.wait_for("client sent", WAIT_S).split()
        server = s.wait_for("server got", WAIT_S).split()
        assert client[2] == server[2], "the server received other bytes than the client sent"
        assert client[4] == server[4], "the client received other bytes than the server sent"
        assert c.wait_for("eof", WAIT_S).strip() == "eof"
    lost = [line for line in agent.drain() if "sessions forgotten" in line]
    assert lost == []
    assert "session_closed: 10.0.1.2:" in agent.wait_for("session_closed: ", WAIT_S)
