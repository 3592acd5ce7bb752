"""The PTF suite (ptf_tests/) on both back ends of the softswitch, as `make ptf` runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.root
@pytest.mark.parametrize("backend", ["ebpf", "python"])
def test_ptf_suite_passes_on_both_backends(backend: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth pairs, raw sockets)")
    if backend == "ebpf":
        from dysco.softswitch.targets.ebpf import unavailable

        why = unavailable()
        if why is not None:
            pytest.skip(why)
    classes = re.findall(
        r"^class (\w+)\(SessionTest\)", (ROOT / "ptf_tests" / "test_dysco.py").read_text(), re.M
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ptf_tests.run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "DYSCO_TARGET": "softswitch", "DYSCO_BACKEND": backend},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    ran = re.search(r"Ran (\d+) tests", out)
    assert ran is not None and int(ran.group(1)) == len(classes) >= 9, out[-2000:]
    assert re.search(r"^OK$", out, re.M), out[-2000:]
