"""A TCP-terminating proxy splices itself out mid-transfer on real Linux TCP (examples/splice.toml,
examples/splice_proxy.py): through ``dysco.runtime.splice`` after N bytes, and by hand with
``dysco ctl splice``.  The session goes on without a reset, both ends' SHA-256 digests agree,
and from the splice on the proxy relays nothing, uses no CPU and its host receives (almost)
nothing: the client's and the server's anchors carry the bytes between them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dysco.testbed import Process, Testbed

from .conftest import ROOT, WAIT_S, ctl, peer
from .test_reconfigure import rx_bytes

pytestmark = [
    pytest.mark.root,
    pytest.mark.parametrize("testbed", ["splice"], indirect=True),
]

PROXY, SERVER = "10.0.2.2", "10.0.3.2"
MB = 1 << 20
SIZE = 30 * MB
"""Each way: 60 MB in all, of which the proxy relays a few before it steps out."""


def proxy_argv(tb: Testbed, *extra: str) -> list[str]:
    script = str(ROOT / "examples" / "splice_proxy.py")
    mgmt = tb.plan.mgmt(tb.plan.host("proxy"))
    args = ["--listen", f"{PROXY}:9000", "--server", f"{SERVER}:9000", "--mgmt", mgmt, *extra]
    return tb.netns_argv("proxy", [sys.executable, script, *args])


def cpu_s(p: Process) -> float:
    """The process's CPU time (user + system), from /proc."""
    assert p.proc is not None
    fields = Path(f"/proc/{p.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def relayed(line: str) -> tuple[int, int]:
    m = re.search(r"up (\d+) down (\d+)", line)
    assert m, line
    return int(m.group(1)), int(m.group(2))


def transfer(tb: Testbed, tmp: Path, proxy: Process, splice: list[str] | None) -> None:
    """A duplex transfer through the proxy, spliced by the proxy itself (``splice`` None) or
    with ``dysco ctl splice`` ARGS; checks everything the module docstring promises."""
    server = Process(peer(tb, "server", "duplex-server", 9000), tmp / "server.log", "listening")
    with (
        server,
        Process(
            peer(tb, "client", "duplex-client", PROXY, 9000, SIZE, SIZE), tmp / "client.log", "connected"
        ) as client,
    ):
        accepted = proxy.wait_for("accepted", WAIT_S)
        if splice is not None:
            client.wait_for("progress 2", WAIT_S)
            m = re.search(r"accepted \d+ (\S+) -> (\S+) \(via (\S+)\)", accepted)
            assert m, accepted
            inbound, outbound = f"{m.group(1)}-{PROXY}:9000", f"{m.group(3)}-{m.group(2)}"
            mgmt = tb.plan.mgmt(tb.plan.host("proxy"))
            argv = [*splice, "--in", inbound, "--out", outbound, "--mgmt", mgmt]
            out = subprocess.run(
                tb.netns_argv("proxy", argv), capture_output=True, text=True, timeout=WAIT_S, check=False
            )
            assert out.returncode == 0, out.stdout + out.stderr
            assert ": spliced: " in out.stdout, out.stdout
            at_splice = relayed(_stats(proxy))
        else:
            line = proxy.wait_for("spliced", WAIT_S)
            at_splice = relayed(line)
        cpu_then, rx_then = cpu_s(proxy), rx_bytes(tb, "proxy")
        assert not any("client sent" in line for line in client.drain()), (
            "the transfer ended before the splice"
        )
        client.wait_for("progress", WAIT_S)  # it goes on after the splice
        got = client.wait_for("client sent", WAIT_S).split()
        sent = server.wait_for("server got", WAIT_S).split()
        assert got[2] == sent[2], "the server received other bytes than the client sent"
        assert got[4] == sent[4], "the client received other bytes than the server sent"
        assert sent[5] == PROXY, "the server still sees the proxy's address"
        assert client.wait_for("eof", WAIT_S).strip() == "eof"
        assert server.wait_for("eof", WAIT_S).strip() == "eof"
    at_end = relayed(_stats(proxy))
    assert at_end == at_splice, "the proxy relayed bytes after the splice"
    assert sum(at_end) < 2 * SIZE // 4, f"the proxy relayed {sum(at_end)} of {2 * SIZE} bytes"
    cpu = cpu_s(proxy) - cpu_then
    assert cpu < 0.5, f"the proxy used {cpu:.2f}s of CPU after the splice"
    rx = rx_bytes(tb, "proxy") - rx_then
    assert rx < MB, f"{rx} bytes still reached the proxy's host after the splice"
    for name in ("client", "server"):  # both sessions' state is gone at the anchors
        tb.agent_of(name).wait_for("session_closed: ", WAIT_S)
    for name in ("client", "server"):
        status = ctl(tb, name, "status")
        assert isinstance(status, dict) and status["sessions"] == 0, (name, status)
        assert {t: v["entries"] for t, v in status["tables"].items()} == {
            "session_out": 0,
            "subsession_in": 0,
        }
        assert status["errors"] == [], (name, status["errors"])
    status = ctl(tb, "proxy", "status")
    assert isinstance(status, dict) and status["sessions"] == 0
    assert status["core"]["splice.completed"] >= 1


def _stats(proxy: Process) -> str:
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGUSR2)
    return proxy.wait_for("stats", WAIT_S)


def test_the_proxy_splices_itself_out_after_n_bytes(testbed: Testbed, tmp_path: Path) -> None:
    with Process(
        proxy_argv(testbed, "--splice-after", str(4 * MB)), tmp_path / "proxy.log", "listening"
    ) as p:
        transfer(testbed, tmp_path, p, None)


def test_splice_by_hand_with_dysco_ctl(testbed: Testbed, tmp_path: Path) -> None:
    with Process(proxy_argv(testbed), tmp_path / "proxy.log", "listening") as p:
        transfer(testbed, tmp_path, p, [sys.executable, "-m", "dysco", "ctl", "splice"])
