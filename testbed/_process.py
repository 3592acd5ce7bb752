"""The processes a testbed starts (``dysco switch``, ``dysco agent``): output logged and waited
for line by line, stopped with SIGTERM (then SIGKILL) on exit; and :func:`run` for one command."""

from __future__ import annotations

import queue
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dysco.errors import UserError

SWITCH_READY = "softswitch: P4Runtime server listening on"
AGENT_READY = "dysco agent: ready"
START_S = 60.0
STOP_S = 10.0
TAIL_LINES = 15
"""Lines of its log a failed wait quotes."""


def run(cmd: str) -> None:
    proc = subprocess.run(shlex.split(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"{cmd}: {proc.stderr.strip() or proc.stdout.strip()}")


ExitHook = Callable[["Process"], None]
"""Called from the process's reader thread once it has exited and been reaped."""


class Process:
    """A ``dysco`` process whose output is logged to ``log`` and whose lines can be waited for."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        ready: str,
        *,
        name: str = "",
        on_exit: ExitHook | None = None,
        append: bool = False,
    ) -> None:
        self.argv = argv
        self.log_path = log
        self.ready = ready
        self.name = name or " ".join(argv[:3])
        self.on_exit = on_exit
        self._append = append
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.ready_line = ""
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Process:
        self._log = self.log_path.open("a" if self._append else "w")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        self._thread = threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True)
        self._thread.start()
        try:
            self.ready_line = self.wait_for(self.ready, START_S)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _watch(self) -> None:
        """Log and queue every output line; at the end of the output, reap the process (no
        zombie is left) and tell ``on_exit``."""
        proc, log = self.proc, self._log
        assert proc is not None and proc.stdout is not None and log is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            self.lines.put(line)
        self.lines.put(None)  # end of output: the process is gone
        proc.wait()
        if self.on_exit is not None:
            self.on_exit(self)

    def wait_for(self, text: str, timeout: float) -> str:
        """The next output line containing ``text``; raises UserError after ``timeout`` seconds."""
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if line is None:
                    self.lines.put(None)  # for the next wait
                    raise UserError(
                        f"{' '.join(self.argv[:3])}: ended without a line with {text!r}; see {self.log_path}"
                        + self._tail()
                    )
                if text in line:
                    return line
        except queue.Empty:
            raise UserError(
                f"{' '.join(self.argv[:3])}: no line with {text!r} in {timeout}s; see {self.log_path}"
                + self._tail()
            ) from None

    def _tail(self) -> str:
        """The log's last lines, for an error that is read where the log is not (a CI report)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
        except OSError:
            return ""
        return "".join(f"\n  | {line}" for line in lines)

    def drain(self) -> list[str]:
        """The lines printed so far and not yet waited for (does not wait)."""
        lines: list[str] = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return lines
            if line is None:
                self.lines.put(None)
                return lines
            lines.append(line)

    def send_line(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=STOP_S)
        if self._log is not None:
            self._log.close()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode


class SwitchProcess(Process):
    """``dysco switch --no-p4`` on ``address``, optionally with interfaces."""

    def __init__(self, address: str, *, log: Path, interfaces: tuple[str, ...] = ()) -> None:
        argv = [sys.executable, "-m", "dysco", "-v", "switch", "--no-p4"]
        for i, iface in enumerate(interfaces, start=1):
            argv += ["-i", f"{i}@{iface}"]
        super().__init__([*argv, "--", "--cpu-port", "255", "--grpc-server-addr", address], log, SWITCH_READY)
        self.address = address
