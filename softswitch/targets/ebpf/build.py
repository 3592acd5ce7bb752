"""Build generated C into a BPF object with clang (``-target bpf``)."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

from dysco.errors import UserError

CLANGS = ("clang-16", "clang")


class BuildError(UserError):
    """clang is missing or failed on the generated C (a bug of the C generator, or a missing header)."""


def find_clang() -> str | None:
    for name in CLANGS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _multiarch_include() -> list[str]:
    arch = sysconfig.get_config_var("MULTIARCH")
    inc = Path("/usr/include") / str(arch) if arch else None
    return [f"-I{inc}"] if inc is not None and inc.is_dir() else []


def build(source: str, workdir: Path, name: str = "dysco") -> Path:
    """Write ``NAME.c`` under ``workdir`` and compile it to ``NAME.o``; return the object's path."""
    clang = find_clang()
    if clang is None:
        raise BuildError("the ebpf backend needs clang (apt-get install clang-16 libbpf-dev)")
    workdir.mkdir(parents=True, exist_ok=True)
    c_file, o_file = workdir / f"{name}.c", workdir / f"{name}.o"
    if o_file.exists() and c_file.exists() and c_file.read_text() == source:
        return o_file  # the same program again (a reload): clang takes seconds, loading does not
    o_file.unlink(missing_ok=True)
    c_file.write_text(source)
    cmd = [
        clang,
        "-O2",
        "-g",
        "-target",
        "bpf",
        *_multiarch_include(),
        "-Wall",
        "-Wno-unused-label",
        "-Wno-unused-variable",
        "-Wno-unused-function",
        "-c",
        str(c_file),
        "-o",
        str(o_file),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BuildError(f"clang failed on the generated C ({c_file}):\n{tail}")
    return o_file
