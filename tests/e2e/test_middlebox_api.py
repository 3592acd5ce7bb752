"""The middlebox API on real Linux TCP: a proxy that adds bytes to the stream declares them and
steps out of the live session (examples/http_header_proxy.py on examples/splice.toml), and a
middlebox application chooses a further hop for the sessions it forwards
(examples/next_hop_chooser.py on examples/reconfig.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dysco.testbed import Process, Testbed

from .conftest import ROOT, WAIT_S, ctl, peer
from .test_reconfigure import closed_everywhere, rx_bytes

pytestmark = [pytest.mark.root]

PROXY, SERVER = "10.0.2.2", "10.0.3.2"
FW1, SCRUB = "10.0.2.2", "10.0.5.2"
VIA = len(b"Via: 1.1 dysco-http-proxy\r\n")
BEFORE, AFTER = [(0, 20_000), (1, 150_000), (2, 7)], [(3, 2_000_000), (4, 1), (5, 500_000)]
"""Requests (K, N) before the proxy steps out and after."""


def _example(tb: Testbed, host: str, script: str, *args: str) -> list[str]:
    mgmt = tb.plan.mgmt(tb.plan.host(host))
    return tb.netns_argv(host, [sys.executable, str(ROOT / "examples" / script), *args, "--mgmt", mgmt])


def _empty(tb: Testbed, names: tuple[str, ...]) -> None:
    for name in names:
        status = ctl(tb, name, "status")
        assert isinstance(status, dict) and status["sessions"] == 0, (name, status)
        assert {t: v["entries"] for t, v in status["tables"].items()} == {
            "session_out": 0,
            "subsession_in": 0,
        }, (name, status["tables"])
        assert status["errors"] == [], (name, status["errors"])


@pytest.mark.parametrize("testbed", ["splice"], indirect=True)
def test_a_proxy_that_added_bytes_declares_them_and_steps_out(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    args = ["--listen", f"{PROXY}:9000", "--server", f"{SERVER}:9000"]
    proxy_argv = _example(tb, "proxy", "http_header_proxy.py", *args)
    with (
        Process(proxy_argv, tmp_path / "proxy.log", "listening") as proxy,
        Process(peer(tb, "server", "keepalive-server", 9000), tmp_path / "server.log", "listening") as server,
        Process(
            peer(tb, "client", "keepalive-client", PROXY, 9000), tmp_path / "client.log", "connected"
        ) as client,
    ):
        proxy.wait_for("accepted 1", WAIT_S)
        for k, n in BEFORE:
            client.send_line(f"get {k} {n}")
            assert client.wait_for(f"response {k} ", WAIT_S).split()[4:] == ["yes", "ok"]
            proxy.wait_for(f"declared 1 {VIA * (k + 1):+d}", WAIT_S)
        proxy.send_line("splice")
        spliced = proxy.wait_for("splice", WAIT_S)  # "spliced 1 ..." or "splice failed 1: ..."
        assert spliced.startswith("spliced 1") and "3 responses changed, 0 passed untouched" in spliced, (
            spliced
        )
        rx_then = rx_bytes(tb, "proxy")
        for k, n in AFTER:  # the server's stream is 81 bytes short of the client's now
            client.send_line(f"get {k} {n}")
            assert client.wait_for(f"response {k} ", WAIT_S).split()[4:] == ["no", "ok"]
        client.send_line("end")
        got = client.wait_for("client sent", WAIT_S).split()
        sent = server.wait_for("server got", WAIT_S).split()
        assert got[2] == sent[2], "the server received other bytes than the client sent"
        assert got[4] == sent[4], "the client received other bytes than the server sent (Via lines aside)"
        assert got[5] == "3"
        assert client.wait_for("eof", WAIT_S).strip() == "eof"
        assert server.wait_for("eof", WAIT_S).strip() == "eof"
    rx = rx_bytes(tb, "proxy") - rx_then
    assert rx < sum(n for _, n in AFTER) // 10, f"{rx} bytes still reached the proxy's host after it left"
    for name in ("client", "server"):
        tb.agent_of(name).wait_for("session_closed: ", WAIT_S)
    _empty(tb, ("client", "server"))
    status = ctl(tb, "proxy", "status")
    assert isinstance(status, dict) and status["sessions"] == 0 and status["errors"] == []
    # what is left at the proxy: the drop entries of its two spliced sockets (they idle out)
    assert {t: v["entries"] for t, v in status["tables"].items()} == {"session_out": 2, "subsession_in": 2}
    assert status["core"]["splice.completed"] == 1 and status["core"]["delta.declared"] == 3


@pytest.mark.parametrize("testbed", ["reconfig"], indirect=True)
def test_a_middlebox_chooses_the_next_hop_of_a_session(testbed: Testbed, tmp_path: Path) -> None:
    """fw1 forwards the sessions; its application (NFQUEUE) puts the scrubber after it in each
    session to port 9003 before it lets the SYN go on.  The session is set up through the
    scrubber, which the policy never named, and carries its bytes there."""
    tb = testbed
    rule = ["-p", "tcp", "--syn", "--dport", "9003", "-j", "NFQUEUE", "--queue-num", "0"]
    subprocess.run(
        tb.netns_argv("fw1", ["iptables", "-I", "FORWARD", "1", *rule]), check=True, timeout=WAIT_S
    )
    chooser_argv = _example(tb, "fw1", "next_hop_chooser.py", "--hop", SCRUB, "--dport", "9003")
    size = 3 << 20
    scrub_then = rx_bytes(tb, "scrub")
    try:
        with (
            Process(chooser_argv, tmp_path / "chooser.log", "queue 0") as chooser,
            Process(peer(tb, "server", "blob-server", 9003), tmp_path / "server.log", "listening") as server,
            Process(
                peer(tb, "client", "blob-client", SERVER, 9003, size, size, "hold"),
                tmp_path / "client.log",
                "client sent",
            ) as client,
        ):
            got = client.ready_line.split()
            sent = server.wait_for("server got", WAIT_S).split()
            session = f"10.0.1.2:{got[5]}->{SERVER}:9003"
            assert (
                chooser.wait_for("chose", WAIT_S).strip() == f"chose {session}: on through {SCRUB} {SERVER}"
            )
            chains = {}
            for name in ("fw1", "scrub", "server"):
                rows = ctl(tb, name, "sessions")
                assert isinstance(rows, list)
                (row,) = [r for r in rows if r["five_tuple"]["dport"] == 9003]
                chains[name] = row["chain"]
                if name == "server":
                    (up,) = row["subsessions"]
                    assert up["five_tuple"]["src"] == SCRUB, row  # it came from the scrubber
            assert chains == {"fw1": [FW1, SCRUB, SERVER], "scrub": [SCRUB, SERVER], "server": [SERVER]}
            assert rx_bytes(tb, "scrub") - scrub_then > 2 * size, "the scrubber did not carry the session"
            client.send_line("close")
            assert client.wait_for("eof", WAIT_S).strip() == "eof"
            assert server.wait_for("eof", WAIT_S).strip() == "eof"
    finally:
        subprocess.run(
            tb.netns_argv("fw1", ["iptables", "-D", "FORWARD", *rule]), check=False, timeout=WAIT_S
        )
    assert got[2] == sent[2], "the server received other bytes than the client sent"
    assert got[4] == sent[4], "the client received other bytes than the server sent"
    closed_everywhere(tb, {name: [session] for name in ("client", "fw1", "scrub", "server")})
