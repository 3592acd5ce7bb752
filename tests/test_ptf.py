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


def test_a_controller_with_no_switch_behind_its_address_says_so() -> None:
    import socket

    from ptf_tests.dysco_ptf import P4Runtime

    with socket.socket() as s:  # a port nothing listens on (kept bound, never listening)
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(
            AssertionError, match=r"the stream ended before the arbitration answer: .*UNAVAILABLE"
        ):
            P4Runtime(addr, 0)


def test_a_switch_that_never_answers_the_arbitration_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from ptf_tests import dysco_ptf

    monkeypatch.setattr(dysco_ptf, "ARBITRATION_S", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as s:  # takes the connection, never speaks HTTP/2
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(AssertionError, match=r": no arbitration answer in 0\.5s$"):
            dysco_ptf.P4Runtime(addr, 0)
