"""Real processes: three ``dysco switch`` NICs and their ``dysco agent``s steer a TCP session between
Linux sockets in network namespaces through a middlebox host (Linux forwarding), byte-exact both
ways; ``dysco ctl sessions`` shows the session at every agent and shows it gone after the FINs."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.testbed import Plan, Process, Testbed

from .tcp_peer import request, respond

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("tcp_peer.py")
WAIT_S = 30.0
N = 100_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# which hosts run an agent; then the chain and role each agent reports for the session
DEPLOYMENTS = {
    "three-agents": (
        "cms",
        {
            "client": (["10.0.2.2", "10.0.3.2"], "left"),
            "mbox": (["10.0.2.2", "10.0.3.2"], "middle"),
            "server": (["10.0.3.2"], "right"),
        },
    ),
    "two-agents": ("cm", {"client": (["10.0.2.2"], "left"), "mbox": (["10.0.2.2"], "right")}),
}


@pytest.fixture(params=list(DEPLOYMENTS))
def testbed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Testbed]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, raw sockets)")
    plan = Plan.chain(
        agents=DEPLOYMENTS[request.param][0],
        prefix=f"dy{os.getpid() % 10000}",
        ports=(free_port(), free_port(), free_port()),
        p4=str(ROOT / "p4src" / "dysco.p4"),
        policies=str(tmp_path / "chain.dysco"),
        linger=0.5,
    )
    with Testbed(plan, tmp_path) as tb:
        yield tb


def ctl(tb: Testbed, name: str, what: str) -> object:
    host = next(h for h in tb.hosts() if h.name == name)
    argv = [sys.executable, "-m", "dysco", "ctl", what, "--mgmt", tb.plan.mgmt(host), "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=WAIT_S)
    return json.loads(out.stdout)


def test_tcp_session_through_a_middlebox(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    for h in tb.hosts():
        assert Path(tb.plan.mgmt(h)).stat().st_mode & 0o777 == 0o600
    py = sys.executable
    server_argv = tb.netns_argv("s", [py, str(PEER), "server", "80"])
    with Process(server_argv, tmp_path / "server.log", "listening") as server:
        client_argv = tb.netns_argv("c", [py, str(PEER), "client", "10.0.3.2", "80", str(N)])
        with Process(client_argv, tmp_path / "client.log", "exchanged") as client:
            got = server.wait_for("request", WAIT_S).split()
            assert got[1] == hashlib.sha256(request(N)).hexdigest(), "the server got other bytes"
            assert got[2] == "10.0.1.2", "the server sees the client's own address"
            answer = client.ready_line.split()
            assert answer[1] == hashlib.sha256(respond(request(N))).hexdigest(), "the client got other bytes"
            session = {"src": "10.0.1.2", "dst": "10.0.3.2", "dport": 80, "proto": 6}
            expected = next(exp for agents, exp in DEPLOYMENTS.values() if agents == tb.plan.agents)
            assert sorted(expected) == sorted(h.name for h in tb.hosts())
            for name, (chain, role) in expected.items():
                rows = ctl(tb, name, "sessions")
                assert isinstance(rows, list) and len(rows) == 1, (name, rows)
                row = rows[0]
                assert {k: v for k, v in row["five_tuple"].items() if k != "sport"} == session, (name, row)
                assert row["state"] == "established", (name, row)
                assert (row["chain"], row["role"]) == (chain, role), (name, row)
                assert row["five_tuple"]["sport"] == int(answer[2]), (name, row)

            client.send_line("close")
            client.wait_for("eof", WAIT_S)
            server.wait_for("eof", WAIT_S)
        for name in (h.name for h in tb.hosts()):
            tb.agent_of(name).wait_for("session_closed", WAIT_S)
            assert ctl(tb, name, "sessions") == [], name
            status = ctl(tb, name, "status")
            assert isinstance(status, dict)
            assert status["sessions"] == 0
            assert {t: v["entries"] for t, v in status["tables"].items()} == {
                "session_out": 0,
                "subsession_in": 0,
            }
            assert status["errors"] == [], (name, status["errors"])
