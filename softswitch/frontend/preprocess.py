"""Run the C preprocessor over a P4 program, as p4c does, and keep a line map.

The output of ``cpp`` has line markers (``# 12 "file.p4"``); they are replaced by
blank lines so token positions in the preprocessed text map back to the original
files through :class:`SourceMap`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dysco.errors import SourceError, SourcePos, UserError

_MARKER = re.compile(r'^#\s*(?:line\s+)?(\d+)\s+"((?:[^"\\]|\\.)*)"')
_CPP_ERROR = re.compile(r"^(.*?):(\d+):(\d+): (?:fatal )?error: (.*)$", re.M)


def include_dir() -> Path:
    """The folder holding softswitch's own ``core.p4`` and ``v1model.p4``."""
    return Path(__file__).resolve().parent.parent / "p4include"


@dataclass(frozen=True)
class SourceMap:
    """Preprocessed text plus, per preprocessed line, the (file, line) it came from."""

    text: str
    lines: tuple[tuple[str, int], ...]

    def pos(self, line: int, column: int) -> SourcePos:
        if 1 <= line <= len(self.lines):
            file, orig = self.lines[line - 1]
            return SourcePos(file, orig, column)
        return SourcePos("<input>", line, column)

    def error(self, message: str, line: int, column: int) -> SourceError:
        pos = self.pos(line, column)
        pp_lines = self.text.splitlines()
        src = pp_lines[line - 1] if 1 <= line <= len(pp_lines) else ""
        return SourceError(message, pos, "\n" * (pos.line - 1) + src)


def strip_markers(output: str, default_file: str = "<input>") -> SourceMap:
    """Turn cpp output into a :class:`SourceMap` (markers become blank lines)."""
    out_lines: list[str] = []
    mapping: list[tuple[str, int]] = []
    file, line = default_file, 1
    for raw in output.split("\n"):
        m = _MARKER.match(raw)
        if m:
            out_lines.append("")
            mapping.append((file, line))
            line = int(m.group(1))
            file = m.group(2).replace('\\"', '"')
            continue
        out_lines.append(raw)
        mapping.append((file, line))
        line += 1
    return SourceMap("\n".join(out_lines), tuple(mapping))


def preprocess(
    path: str | os.PathLike[str], include_dirs: Sequence[str] = (), defines: Sequence[str] = ()
) -> SourceMap:
    """Preprocess ``path`` with cpp; raise :class:`SourceError` on a cpp error."""
    src = Path(path)
    if not src.is_file():
        raise UserError(f"{src}: no such P4 program")
    cpp = shutil.which("cpp")
    if cpp is None:
        raise UserError("the C preprocessor `cpp` is not installed (apt-get install cpp)")
    cmd = [cpp, "-undef", "-nostdinc", "-x", "assembler-with-cpp", "-I", str(include_dir())]
    for d in include_dirs:
        cmd += ["-I", str(d)]
    for d in defines:
        cmd += ["-D", d]
    cmd.append(str(src))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        m = _CPP_ERROR.search(proc.stderr)
        if m:
            file, line, col, msg = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            try:
                text: str | None = Path(file).read_text()
            except OSError:
                text = None
            raise SourceError(f"preprocessor: {msg}", SourcePos(file, line, col), text)
        raise UserError(f"{src}: preprocessor failed: {proc.stderr.strip()}")
    return strip_markers(proc.stdout, str(src))
