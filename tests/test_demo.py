"""``dysco demo``: the whole story in the simulation (what `make demo` runs without root), the
numbers its summary is made of, its traffic peers on real loopback TCP, and its refusals."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dysco import cli
from dysco.testbed import Process
from dysco.testbed._demo_story import MB, ProxyUse, Splice, Story, Transfer, splice_points

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (fails for anything that is not a PNG)."""
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_outcome(summary: str, out: Path, sessions: int) -> None:
    """What every demo run must show: all sessions verified and spliced, reconfiguration times,
    goodput on both sides of the splices, and two drawn images (shared with tests/e2e)."""
    n = sessions
    assert f"{n} of {n} complete, {n} of {n} verified" in summary, summary
    assert re.search(rf"spliced +{n} of {n} sessions", summary), summary
    m = re.search(r"reconfiguration +min (\d+) ms, median (\d+) ms, max (\d+) ms", summary)
    assert m and 0 < int(m[1]) <= int(m[2]) <= int(m[3]), summary
    for side in ("before", "after"):
        assert re.search(rf"goodput {side} +\d+\.\d Mbit/s", summary), summary
    assert re.search(r"proxy after +relayed 0 B", summary), "the proxy relayed bytes after the last splice"
    rows = [ln.split() for ln in summary.splitlines() if re.match(r"\d+ +\d", ln)]
    assert [r[0] for r in rows] == [str(i) for i in range(1, n + 1)]
    assert all(r[5] == "yes" and r[-1] == "ms" for r in rows), rows
    for name in ("goodput.png", "reconfig_cdf.png"):
        width, height = png_size(out / name)
        assert width >= 400 and height >= 300
    assert (out / "summary.txt").read_text() in summary + "\n"


def test_the_simulated_story_runs_start_to_finish(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "dysco", "demo", "--sim", "--out", str(tmp_path), "--sessions", "3"]
    out = subprocess.run([*argv, "--size", "0.4"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "dysco demo: --sim: the story runs in the in-process simulation"
    # live progress, splice events in time order, then the summary
    events = [ln for ln in lines if "splice requested" in ln or ": spliced in" in ln]
    assert len(events) == 6
    times = [float(ln.split()[0]) for ln in events]
    assert times == sorted(times)
    assert any(re.match(r" +\d+\.\d\d s  goodput +\d", ln) for ln in lines)
    summary = out.stdout[out.stdout.index("summary (simulation") :]
    check_outcome(summary, tmp_path, 3)


def test_without_root_it_says_so_and_simulates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert cli.main(["demo", "--out", str(tmp_path), "--sessions", "1", "--size", "0.6"]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first == (
        "dysco demo: not root, so no network namespaces: the same story runs in the in-process simulation"
    )
    check_outcome(text[text.index("summary (") :], tmp_path, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sessions", "0"], "--sessions 0: give 1 to 32"),
        (["--sessions", "33"], "--sessions 33: give 1 to 32"),
        (["--sim", "--size", "0"], "--size 0: give more than 0 and at most 32 MB here"),
        (["--sim", "--size", "-1"], "--size -1: give more than 0 and at most 32 MB here"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli.main(["demo", "--out", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.strip() == f"dysco demo: {message}"
    assert not (tmp_path / "goodput.png").exists()


# ---- the numbers ------------------------------------------------------------------------------


def test_splice_points_are_a_wave_inside_the_transfer() -> None:
    points = splice_points(4, 1000)
    assert points == sorted(points) and len(set(points)) == 4
    assert points[0] > 0 and points[-1] <= 1000 // 2
    assert splice_points(1, 1000) == [200]


def _story(transfers: list[Transfer], splices: list[Splice]) -> Story:
    st = Story("here", "test", "time: made up", 2, 100, 100, transfers, splices)
    # 10 bytes per 0.1 s each way until 2 s, then 20 per 0.1 s (faster after the splices)
    t, up = 0.0, 0
    while t < 4.0:
        t = round(t + 0.1, 1)
        up += 10 if t <= 2.0 else 20
        st.samples.append((t, up, up))
    return st


def test_goodput_before_and_after_and_the_verdict() -> None:
    good = [Transfer(n, "a", "a", "b", "b", 100, 100, 4.0) for n in (1, 2)]
    splices = [Splice(1, 1.0, 1.5, "spliced", 0.5), Splice(2, 1.5, 2.0, "spliced", 0.25)]
    st = _story(good, splices)
    assert st.windows() == ((0.0, 1.0), (2.0, 4.0))
    assert st.rate(0.0, 1.0) == pytest.approx(2 * 100 * 8 / 1e6)
    assert st.rate(2.0, 4.0) == pytest.approx(2 * 200 * 8 / 1e6)
    assert st.reconfig_times == [0.5, 0.25] and st.ok
    text = st.summary()
    assert "2 of 2 complete, 2 of 2 verified" in text and "min 250 ms, median 375 ms, max 500 ms" in text
    series = st.goodput()
    assert series["both directions"][0] == (0.5, pytest.approx(2 * 100 * 8 / 1e6))


def test_a_corrupted_or_unspliced_session_is_not_ok() -> None:
    bad = [Transfer(1, "a", "a", "b", "b", 100, 100, 4.0), Transfer(2, "a", "x", "b", "b", 100, 100, 4.0)]
    splices = [Splice(1, 1.0, 1.5, "spliced", 0.5), Splice(2, 1.5, 9.0, "splice_timeout", None)]
    st = _story(bad, splices)
    st.proxy_before = ProxyUse(5 * MB, 0.25, 1.0)
    text = st.summary()
    assert "2 of 2 complete, 1 of 2 verified" in text
    assert re.search(r"spliced +1 of 2 sessions", text)
    assert re.search(r"^2 .* NO .* splice_timeout$", text, re.M)
    assert "relayed 5.0 MB, 0.25 s CPU in 1.0 s until the first splice" in text
    assert not st.ok


# ---- the testbed's traffic, on loopback ----------------------------------------------------------


def test_the_peers_verify_both_directions_on_real_tcp(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    peer = [sys.executable, "-m", "dysco.testbed._demo_peer"]
    with (
        Process([*peer, "server", str(port), "2"], tmp_path / "server.log", "listening") as server,
        Process([*peer, "client", "127.0.0.1", str(port), "2"], tmp_path / "client.log", "started") as client,
    ):
        client.wait_for("connected", 60)
        client.wait_for("connected", 60)
        while not all(int(b) > 1 << 20 for b in client.wait_for("p ", 60).split()[2:]):
            pass  # both sessions have carried a MB back: time to stop
        client.send_line("stop")
        got = sorted(client.wait_for("done", 60).split() for _ in range(2))
        sent = sorted(server.wait_for("done", 60).split() for _ in range(2))
        client.wait_for("all done", 60)
    for c, s in zip(got, sent, strict=True):
        assert c[1] == s[1]
        assert (c[3], c[4]) == (s[3], s[4]), "the server got other bytes than the client sent"
        assert (c[6], c[7]) == (s[6], s[7]), "the client got other bytes than the server sent"
        assert int(c[7]) > 1 << 20 and int(c[4]) > 0
    assert got[0][3] != got[1][3], "both sessions sent the same stream"
