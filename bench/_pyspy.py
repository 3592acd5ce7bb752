"""Where a ``dysco switch`` spends a Write, from py-spy's samples of it.

:func:`record` runs ``py-spy record --format raw`` on a process until told to stop; its output
is one line per distinct stack, ``frame;frame;...;frame COUNT`` (outermost first).
:func:`breakdown` puts every sample in the first stage, in :data:`STAGES` order, that one of its
frames belongs to, so a protobuf getter called while converting an entry counts as conversion,
and a map update under the device's bookkeeping counts as the system call.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "map_update_syscalls",
        ("BpfMap.update_batch (", "BpfMap.delete_batch (", "BpfMap.update (", "BpfMap.delete ("),
    ),
    ("idle_sweep", ("EbpfSwitch.expired_entries (", "SwitchCore.poll_idle_timeouts (")),
    ("device_bookkeeping", ("EbpfSwitch.write_entries (",)),
    ("convert_and_validate", ("plain_table_write (", "write_update (")),
    ("core_other", ("SwitchCore.write (",)),
    ("protobuf_decode", ("deserialize (grpc/_common.py",)),
    ("grpc_other", ("grpc/_server.py", "grpc/_channel.py")),
)
"""Stage name and the frame texts that mark it (py-spy writes a frame as ``function (file:line)``)."""
OTHER = "other"
WAITING = "waiting"
WAITS = ("Condition.wait (", "Event.wait (", "EpollSelector.select (", "Queue.get (", "Thread.join (")
"""Leaf frames of a thread that waits (py-spy may catch one before the kernel marks it idle):
their samples are not work of any stage."""


Stages = tuple[tuple[str, tuple[str, ...]], ...]


def breakdown(lines: Iterable[str], stages: Stages = STAGES) -> dict[str, int]:
    """Samples per stage (every stage listed, in order, then ``other`` and ``waiting``)."""
    out = {name: 0 for name, _ in stages}
    out[OTHER] = out[WAITING] = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].startswith(WAITS):
            out[WAITING] += int(count)
            continue
        stage = next(
            (name for name, marks in stages if any(m in f for f in frames for m in marks)),
            OTHER,
        )
        out[stage] += int(count)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def py_spy() -> str | None:
    """The py-spy executable (beside this Python's, or on PATH), or None."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Recording:
    """``py-spy record`` of process ``pid`` into ``out`` until :meth:`stop`."""

    def __init__(
        self,
        pid: int,
        out: Path,
        rate: int = 250,
        stages: Stages = STAGES,
        *,
        gil: bool = False,
        nonblocking: bool = False,
    ) -> None:
        """``gil``: only the samples of a thread that holds the GIL (Python work; a thread
        blocked in C, such as gRPC's polling threads, would otherwise look busy).
        ``nonblocking``: do not pause the process to sample it (py-spy does by default, which
        stretches the latency of a process that waits on others)."""
        exe = py_spy()
        if exe is None:
            raise RuntimeError("--profile needs py-spy (.venv/bin/pip install py-spy)")
        self.out, self.stages = out, stages
        argv = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            *(["--gil"] if gil else []),
            *(["--nonblocking"] if nonblocking else []),
        ]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> dict[str, int]:
        """Stop sampling; the samples per stage."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        _, err = self._proc.communicate(timeout=60)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no samples: {err.strip()[-500:]}")
        return breakdown(self.out.read_text().splitlines(), self.stages)
