"""bench.session_table: a small run end to end (a real ``dysco switch`` on ebpf, entries over
P4Runtime, memory from bpftool, entries read back from the map), its clean-up after a run and
after Ctrl-C, and the py-spy breakdown's stage rules."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench._pyspy import WAITING, breakdown
from dysco.softswitch.targets.ebpf import unavailable

ROOT = Path(__file__).resolve().parents[1]
WHY = unavailable()
needs_ebpf = pytest.mark.skipif(WHY is not None, reason=WHY or "")
BENCH = [sys.executable, "-m", "bench.session_table"]
RUN_S = 300


def leftovers(bench_pid: int, switch_pid: int | None) -> list[str]:
    """What a run of bench process ``bench_pid`` may have left: its namespace, the switch."""
    out = []
    if Path(f"/run/netns/dyebpfst{bench_pid}").exists():
        out.append(f"namespace dyebpfst{bench_pid}")
    if switch_pid is not None and Path(f"/proc/{switch_pid}").exists():
        out.append(f"dysco switch pid {switch_pid}")
    return out


@needs_ebpf
@pytest.mark.root
def test_a_small_run_reports_rates_memory_and_read_back() -> None:
    proc = subprocess.Popen(
        [*BENCH, "--entries", "2000", "--batch", "500", "--sample", "50"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate(timeout=RUN_S)
    assert proc.returncode == 0, err
    switch = re.search(r"dysco switch pid (\d+)", err)
    assert switch is not None, err
    assert leftovers(proc.pid, int(switch.group(1))) == []
    result = json.loads(out)
    assert result["entries"] == 2000 and result["writes"] == 4
    assert result["read_back"] == {"sampled": 50, "found_as_written": 50}
    assert result["entries_per_s"]["median_write"] > 0
    assert len(result["seconds"]) == 3 and result["server_cpu_us_per_entry"] > 0
    mem = result["kernel_memory"]
    assert mem["max_entries"] == 1 << 20 and mem["map_flags"] & 1  # BPF_F_NO_PREALLOC
    assert mem["memlock_empty_bytes"] < 32 << 20
    assert 100 < mem["bytes_per_entry_over_empty"] < 512
    assert set(result["targets"]) >= {"entries_per_s_met", "bytes_per_session_met"}


@needs_ebpf
@pytest.mark.root
def test_ctrl_c_removes_the_switch_and_its_namespace() -> None:
    proc = subprocess.Popen(
        [*BENCH, "--entries", "1000000", "--batch", "1000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    switch_pid = None
    seen = []
    for line in proc.stderr:  # wait for the first Write's progress line, then interrupt
        seen.append(line)
        if m := re.search(r"dysco switch pid (\d+)", line):
            switch_pid = int(m.group(1))
        if "entries, last Write" in line:
            break
    assert switch_pid is not None, "".join(seen)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert leftovers(proc.pid, switch_pid) == []


def test_samples_go_to_the_first_stage_one_of_their_frames_belongs_to() -> None:
    base = "Thread.run (threading.py:982);_unary_response_in_pool (grpc/_server.py:788)"
    write = f"{base};P4RuntimeServicer.Write (dysco/softswitch/server/_grpc.py:42);SwitchCore.write (x.py:1)"
    lines = [
        f"{write};plain_table_write (e.py:2);getter (google/protobuf/internal/python_message.py:688) 7",
        f"{write};EbpfSwitch.write_entries (d.py:3);HashTable.write (h.py:4);BpfMap.update_batch (l.py:5) 5",
        f"{write};EbpfSwitch.write_entries (d.py:3);HashTable.key (h.py:9) 3",
        f"{base};_receive_message (grpc/_server.py:1);deserialize (grpc/_common.py:2);FromString (p.py:3) 11",
        f"{base};Condition.wait (threading.py:320) 4",
        "Thread.run (threading.py:982);RawSocketPorts._run (p.py:1);handle (p.py:2) 2",
        "garbage without a count",
    ]
    got = breakdown(lines)
    assert got == {
        "map_update_syscalls": 5,
        "idle_sweep": 0,
        "device_bookkeeping": 3,
        "convert_and_validate": 7,
        "core_other": 0,
        "protobuf_decode": 11,
        "grpc_other": 0,
        "other": 2,
        WAITING: 4,
    }
