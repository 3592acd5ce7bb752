"""bench.profile_setup on a short run: a real chain on the namespace testbed, py-spy attached to
every agent and switch, connections set up through one middlebox; the stages are sorted and the
processes on the chain did the work (the agent of the middlebox off the chain did none).  And
the stage sorting itself on hand-written samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _pyspy
from bench.profile_setup import AGENT_STAGES, SWITCH_STAGES

ROOT = Path(__file__).resolve().parents[1]


def test_samples_go_to_the_first_stage_one_of_their_frames_marks() -> None:
    lines = [
        "BaseEventLoop._run_once (asyncio/base_events.py:1);AgentService._worker (x/_service.py:2);"
        "Agent.packet_in (x/runtime/core/_agent.py:3);Connection.table_update (x/_client.py:4) 7",
        "BaseEventLoop._run_once (asyncio/base_events.py:1);AgentService._write (x/_service.py:5);"
        "Connection.table_update (x/_client.py:4) 5",
        "BaseEventLoop._run_once (asyncio/base_events.py:1);Handle._run (asyncio/events.py:9) 3",
        "Thread.run (threading.py:1);Condition.wait (threading.py:2) 11",
        "not a sample line",
    ]
    got = _pyspy.breakdown(lines, AGENT_STAGES)
    assert got["core"] == 7  # the core ranks first: an update it builds is core work
    assert got["encode_entries"] == 5
    assert got["event_loop"] == 3
    assert got[_pyspy.WAITING] == 11
    assert sum(got.values()) == 26
    assert list(got)[: len(AGENT_STAGES)] == [name for name, _ in AGENT_STAGES]
    assert set(_pyspy.breakdown([], SWITCH_STAGES)) == {n for n, _ in SWITCH_STAGES} | {"other", "waiting"}


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if _pyspy.py_spy() is None:
        return "needs py-spy (make setup installs it)"
    return None


@pytest.mark.skipif(_why_not() is not None, reason=f"profile_setup run: {_why_not()}")
def test_a_short_profile_of_setup_through_one_middlebox(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.profile_setup", "--connects", "40", "--middleboxes", "1",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["connect_median_ms"] > 0
    cpu = result["cpu_share_of_wall"]
    on_chain = ("agent client", "agent m1", "agent server", "switch client", "switch m1", "switch server")
    assert all(cpu[name] > 0 for name in on_chain), cpu
    assert cpu["agent m4"] < min(cpu[name] for name in on_chain), cpu  # m4 is not on the chain
    client = result["processes"]["agent client"]
    assert set(client["samples"]) == {n for n, _ in AGENT_STAGES} | {"other", "waiting"}
    assert sum(client["samples"].values()) > 0
    for name in on_chain:
        assert (tmp_path / f"{name.replace(' ', '-')}.txt").exists()
