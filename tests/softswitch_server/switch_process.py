"""``dysco switch`` as a child process for tests: started, waited for, always ended."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

DYSCO = Path(sys.executable).parent / "dysco"
READY = re.compile(r"softswitch: P4Runtime server listening on \S+ \(port (\d+)\)")
START_S = 60.0
WAIT_S = 10.0


def _lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


@contextlib.contextmanager
def running_switch(args: Sequence[str], log: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``dysco -v switch ARGS`` with its stderr in ``log``: the process and its P4Runtime port,
    once it says it listens. Killed on the way out if it is still running."""
    stderr = log.open("w")
    argv = [str(DYSCO), "-v", "switch", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_lines, args=(proc.stdout, lines), name="switch-stdout", daemon=True).start()
    try:
        try:
            line = lines.get(timeout=START_S)
        except queue.Empty:
            pytest.fail(f"dysco switch did not get ready in {START_S}s: {log.read_text()}")
        match = READY.match(line)
        assert match, f"unexpected first line {line!r}; log: {log.read_text()}"
        yield proc, int(match.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)
        stderr.close()
