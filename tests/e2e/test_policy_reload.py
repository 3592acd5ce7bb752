"""Live policy changes on the namespace testbed (issue 21): while a session streams both ways
through the middlebox, the client's agent gets a new policy file (`dysco ctl policies reload`):
the live session is untouched (both digests agree at the end), new SYNs follow the new policies
(port 81 now through the middlebox, port 80 now straight), a bad file is refused with its
position and leaves the policies in force, and SIGHUP reloads the agent's own file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dysco.testbed import Process, Testbed

from .conftest import WAIT_S, blob, ctl, peer

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["chain"], indirect=True)]


def reload(tb: Testbed, path: Path | None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dysco", "ctl", "policies", "reload", *([str(path)] if path else [])]
    argv += ["--mgmt", tb.plan.mgmt(tb.plan.host("client")), "--json"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False)


def chains(tb: Testbed) -> dict[int, list[str]]:
    """dport -> chain of the client agent's sessions."""
    rows = ctl(tb, "client", "sessions")
    assert isinstance(rows, list)
    return {row["five_tuple"]["dport"]: row["chain"] for row in rows}


def test_policies_change_under_a_live_session(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    mbox, server = tb.plan.host("mbox").address, tb.plan.host("server").address
    new = tmp_path / "new.dysco"
    new.write_text(f"middlebox fw {{ instances {mbox}; }}\npolicy alt: tcp dst port 81 -> fw\n")
    bad = tmp_path / "bad.dysco"
    bad.write_text(
        f"middlebox fw {{ instances {mbox}; }}\npolicy web: tcp dst port 80 -> fw\npolicy x: tcp dts\n"
    )
    with (
        Process(peer(tb, "server", "stream-server", 80), tmp_path / "server.log", "listening") as s,
        Process(peer(tb, "client", "stream-client", server, 80), tmp_path / "client.log", "connected") as c,
    ):
        c.wait_for("progress ", WAIT_S)
        assert chains(tb) == {80: [mbox, server]}

        out = reload(tb, new)
        assert out.returncode == 0, out.stderr
        done = json.loads(out.stdout)
        assert (done["policies"], done["added"], done["removed"]) == (1, done["entries"], 1)

        at = int(c.wait_for("progress ", WAIT_S).split()[1])
        while int(c.wait_for("progress ", WAIT_S).split()[1]) < at + 1:  # still flowing
            pass
        assert chains(tb) == {80: [mbox, server]}, "the live session kept its chain"

        blob(tb, tmp_path, 81, 1000, 1000)  # the new policy: through the middlebox
        assert chains(tb)[81] == [mbox, server]
        # no policy for port 80 now: a second connection to the stream server's port (the kernel
        # completes it from the listen backlog) gets no session at the client's agent
        with Process(peer(tb, "client", "connect", server, 80, 5), tmp_path / "c80.log", "connect") as p:
            assert p.ready_line.strip() == "connect: connected"
        sessions = ctl(tb, "client", "sessions")
        assert isinstance(sessions, list)
        assert [row["five_tuple"]["dport"] for row in sessions].count(80) == 1, sessions  # the live one

        refused = reload(tb, bad)
        assert refused.returncode != 0
        assert f"{bad}:3:15: unexpected 'dts'" in refused.stderr, refused.stderr
        status = ctl(tb, "client", "status")
        assert isinstance(status, dict) and status["config"]["policies"] == str(new)

        c.send_line("stop")
        client = c.wait_for("client sent", WAIT_S).split()
        got = s.wait_for("server got", WAIT_S).split()
        assert client[2] == got[2], "the server received other bytes than the client sent"
        assert client[4] == got[4], "the client received other bytes than the server sent"


def test_sighup_reloads_the_agents_own_file(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    mbox = tb.plan.host("mbox").address
    status = ctl(tb, "client", "status")
    assert isinstance(status, dict)
    own = status["config"]["policies"]  # the file in force: the last one reloaded, else --policies
    Path(own).write_text(f"middlebox fw {{ instances {mbox}; }}\npolicy alt2: tcp dst port 82 -> fw\n")
    agent = tb.agent_of("client")
    assert agent.proc is not None
    agent.drain()
    agent.proc.send_signal(signal.SIGHUP)
    line = agent.wait_for("SIGHUP: policies ", WAIT_S)
    assert "policies reloaded" in line, line
    assert json.loads(line.split("reloaded: ", 1)[1])["file"] == own
    blob(tb, tmp_path, 82, 1000, 1000)
    assert 82 in chains(tb)
