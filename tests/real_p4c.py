"""The real p4c (bmv2 back end) for tests: where it is, whether it runs, and P4Info comparison.

p4c exists only where the folder ``shared/`` sits beside the repository (our machines and CI);
tests that need it skip with the one line :func:`p4c_unusable` gives.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import text_format

from dysco.proto.p4.config.v1 import p4info_pb2

ROOT = Path(__file__).resolve().parents[1]
P4C = ROOT.parent / "shared" / "tools" / "p4c" / "bin" / "p4c-bm2-ss"

# The repeated top-level P4Info fields that hold named entities (each has a preamble).
ENTITIES = (
    "tables",
    "actions",
    "action_profiles",
    "counters",
    "direct_counters",
    "meters",
    "direct_meters",
    "controller_packet_metadata",
    "value_sets",
    "registers",
    "digests",
    "externs",
)
ORDERED = ("tables", "meters")  # p4c lists these in declaration order


def p4c_unusable() -> str:
    """Why the real p4c cannot run here, or "" if it can."""
    if not P4C.exists():
        return f"real p4c not found at {P4C}"
    try:
        r = subprocess.run([P4C, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        return f"real p4c at {P4C} does not start: {e}"
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[0]
        return f"real p4c does not run (runtime libraries missing? see its README.md): {first}"
    return ""


def run_p4c(
    p4c: Path, program: Path, out: Path, include_dirs: Sequence[Path] = ()
) -> tuple[int, str, p4info_pb2.P4Info]:
    """Compile with p4c; return its exit status, its messages and the P4Info it wrote."""
    info_path = out / f"{program.stem}.p4info.txtpb"
    cmd = [str(p4c), "--arch", "v1model", "--std", "p4-16"]
    cmd += [f"-I{d}" for d in include_dirs]
    cmd += ["-o", str(out / f"{program.stem}.json"), "--p4runtime-files", str(info_path), str(program)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    info = p4info_pb2.P4Info()
    if info_path.exists():
        text_format.Parse(info_path.read_text(), info)
    return r.returncode, (r.stdout + r.stderr).strip(), info


def p4info_differences(ours: p4info_pb2.P4Info, theirs: p4info_pb2.P4Info) -> list[str]:
    """What differs between two P4Infos, entity by entity (matched by name); [] if they are equal."""
    out: list[str] = []
    for field in ENTITIES:
        mine = {m.preamble.name: m for m in getattr(ours, field)}
        ref = {m.preamble.name: m for m in getattr(theirs, field)}
        for name in sorted(ref.keys() - mine.keys()):
            out.append(f"{field}: {name} only in p4c's P4Info")
        for name in sorted(mine.keys() - ref.keys()):
            out.append(f"{field}: {name} only in ours")
        for name in sorted(ref.keys() & mine.keys()):
            if mine[name] != ref[name]:
                out.append(
                    f"{field}: {name} differs\n--- ours\n{text_format.MessageToString(mine[name])}"
                    f"--- p4c\n{text_format.MessageToString(ref[name])}"
                )
        if field in ORDERED and list(mine) != list(ref):
            out.append(f"{field}: order {list(mine)} (ours) != {list(ref)} (p4c)")
    for field in ("pkg_info", "type_info"):
        if getattr(ours, field) != getattr(theirs, field):
            out.append(
                f"{field} differs\n--- ours\n{text_format.MessageToString(getattr(ours, field))}"
                f"--- p4c\n{text_format.MessageToString(getattr(theirs, field))}"
            )
    return out
