"""`make demo` as root: ``dysco demo`` on the namespace testbed of examples/splice.toml, real
Linux TCP, real ``dysco switch`` NICs and agents, the proxy spliced out of every session with
``dysco ctl splice``.  The summary must say what the sim test checks (every byte verified, every
session spliced, reconfiguration times, goodput before and after, the proxy idle after), the two
PNGs must be drawn, and nothing of the testbed may be left, also after a Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dysco.testbed import Process

from ..test_demo import check_outcome
from .conftest import ROOT, needs_root

pytestmark = pytest.mark.root


def prefix() -> str:
    return f"d{os.getpid() % 100000}"


def leftovers(p: str) -> list[str]:
    """Namespaces and links of the demo's testbed that still exist."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = [ln.split()[0] for ln in ns.splitlines()] + [
        ln.split(":")[1].strip() for ln in links.splitlines()
    ]
    return [n for n in names if n.startswith(f"{p}-")]


def demo_argv(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dysco", "demo", "--out", str(out), "--prefix", prefix(), *extra]


def test_make_demo_as_root(tmp_path: Path) -> None:
    needs_root()
    argv = demo_argv(tmp_path, "--sessions", "2", "--size", "4")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "testbed up: client, proxy, server" in text
    assert "not root" not in text and "simulation" not in text
    assert text.count("splice requested (dysco ctl splice)") == 2
    summary = text[text.index("summary (testbed") :]
    check_outcome(summary, tmp_path, 2)
    assert "(ctl --json)" in summary  # says what the reconfiguration time is
    assert leftovers(prefix()) == []
    assert (tmp_path / "logs" / "agent-proxy.log").exists()


def test_ctrl_c_takes_everything_down(tmp_path: Path) -> None:
    needs_root()
    # Ctrl-C reaches a program in the foreground, whose SIGINT is not ignored; a shell that ran
    # the tests in the background ignored it for them (and for the demo, which then ran to its
    # end and exited 0): the demo starts with Python's own SIGINT handler, as from a terminal
    start = "import signal, sys, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
    start += "sys.argv[0] = 'dysco'; runpy.run_module('dysco', run_name='__main__')"
    argv = [sys.executable, "-c", start, *demo_argv(tmp_path, "--sessions", "2", "--size", "64")[3:]]
    with Process(argv, tmp_path / "demo.log", "goodput") as demo:  # the transfer is under way
        assert demo.proc is not None
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(timeout=60) == 130
    assert leftovers(prefix()) == []
    assert not (tmp_path / "goodput.png").exists()
